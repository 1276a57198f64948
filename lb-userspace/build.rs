//! Builds the kernel programs (`lb-ebpf`, nightly + bpf-linker) with the same
//! code as `cargo xtask build-ebpf`, and puts the object where
//! `src/dataplane/object.rs` embeds it. `cargo xtask setup` installs the
//! toolchain this needs. Set `LB_EBPF_OBJECT` to use a prebuilt object.

#[path = "../xtask/src/ebpf.rs"]
mod ebpf;

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let build = ebpf::EbpfBuild::new(&manifest_dir.join(".."));
    for input in build.inputs() {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    println!("cargo:rerun-if-changed=../lb-common/src");
    println!("cargo:rerun-if-changed=../lb-common/Cargo.toml");
    println!("cargo:rerun-if-env-changed=LB_EBPF_OBJECT");

    let object = match env::var_os("LB_EBPF_OBJECT") {
        Some(path) => PathBuf::from(path),
        None => build.run().unwrap_or_else(|e| panic!("{e}")),
    };
    std::fs::copy(&object, out_dir.join("lb-ebpf.o"))
        .unwrap_or_else(|e| panic!("copying {} into OUT_DIR: {e}", object.display()));
}
