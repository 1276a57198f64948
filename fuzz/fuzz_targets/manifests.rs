//! A manifests file through everything that reads it
//! (`lb_userspace::fuzzing::manifests_file`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_userspace::fuzzing::manifests_file(data));
