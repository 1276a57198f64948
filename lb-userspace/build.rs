//! Builds the kernel programs (`lb-ebpf`, nightly + bpf-linker) and puts the
//! object where `src/dataplane/object.rs` embeds it. `cargo xtask setup`
//! installs the toolchain this needs. Set `LB_EBPF_OBJECT` to use a prebuilt
//! object instead.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let ebpf_dir = manifest_dir.join("../lb-ebpf");
    for watched in ["../lb-ebpf/src", "../lb-ebpf/Cargo.toml", "../lb-common/src", "../lb-common/Cargo.toml"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    println!("cargo:rerun-if-env-changed=LB_EBPF_OBJECT");

    let object = match env::var_os("LB_EBPF_OBJECT") {
        Some(path) => PathBuf::from(path),
        None => build_ebpf(&ebpf_dir),
    };
    std::fs::copy(&object, out_dir.join("lb-ebpf.o"))
        .unwrap_or_else(|e| panic!("copying {} into OUT_DIR: {e}", object.display()));
}

fn build_ebpf(ebpf_dir: &PathBuf) -> PathBuf {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .current_dir(ebpf_dir);
    // The outer cargo's variables would make the inner build use the
    // stable toolchain, clippy, or the host's flags.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let leaks = (key.starts_with("CARGO") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || matches!(key.as_str(), "RUSTUP_TOOLCHAIN" | "RUSTFLAGS" | "MAKEFLAGS" | "MFLAGS");
        if leaks {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run `rustup run nightly cargo` to build lb-ebpf ({e}); run `cargo xtask setup`")
    });
    if !status.success() {
        panic!("building lb-ebpf failed ({status}); run `cargo xtask setup` to install the eBPF toolchain");
    }
    ebpf_dir.join("target/bpfel-unknown-none/release/lb-ebpf")
}
