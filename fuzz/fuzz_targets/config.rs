//! The agent's `--config` file (`lb_userspace::fuzzing::config_file`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_userspace::fuzzing::config_file(data));
