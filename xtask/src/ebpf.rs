//! Building the kernel-side crate `lb-ebpf` (its own Cargo workspace, nightly,
//! `bpfel-unknown-none`, `-Z build-std=core`).
//!
//! This module uses `std` only, so a build script can reuse it verbatim:
//!
//! ```ignore
//! #[path = "../xtask/src/ebpf.rs"]
//! mod ebpf;
//! let object = ebpf::EbpfBuild::new(workspace_root).run()?;
//! ```
//!
//! The child cargo must not see the variables the outer cargo (the one running
//! `cargo xtask` or a build script) exports: `RUSTC`, the wrappers,
//! `RUSTUP_TOOLCHAIN` (it would pin the stable toolchain under
//! `rustup run nightly`), the encoded rustflags of the host target, the
//! `CARGO_*` build variables... otherwise the BPF build uses the wrong
//! compiler or host flags. aya-build removes the same set.

#![allow(dead_code)] // shared with build scripts: not every item is used by xtask

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Target triple of the kernel programs.
pub const EBPF_TARGET: &str = "bpfel-unknown-none";
/// Directory of the kernel crate, relative to the workspace root.
pub const EBPF_CRATE_DIR: &str = "lb-ebpf";
/// Name of the binary (ELF object) the kernel crate produces.
pub const EBPF_BINARY: &str = "lb-ebpf";
/// Toolchain used for the kernel crate.
pub const EBPF_TOOLCHAIN: &str = "nightly";

/// Variables a cargo or rustup parent exports that must not reach the child
/// cargo, matched exactly.
const LEAKED_EXACT: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "RUSTDOC",
    "RUSTUP_TOOLCHAIN",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "MAKEFLAGS",
    "MFLAGS",
];

/// `CARGO_*` variables that are user configuration (registry, network,
/// terminal, home) and are kept; every other `CARGO_*` is a build variable of
/// the outer cargo and is removed.
const KEPT_CARGO_PREFIXES: &[&str] =
    &["CARGO_HOME", "CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTRY_", "CARGO_REGISTRIES_", "CARGO_TERM_"];

/// Whether `name` is a variable leaking from an outer cargo/rustup that a
/// nested cargo build for another toolchain/target must not inherit.
pub fn is_leaked_build_var(name: &str) -> bool {
    if LEAKED_EXACT.contains(&name) {
        return true;
    }
    if name.starts_with("CARGO_") {
        return !KEPT_CARGO_PREFIXES
            .iter()
            .any(|kept| name == *kept || (kept.ends_with('_') && name.starts_with(kept)));
    }
    false
}

/// Removes from `cmd`'s environment every variable of the current process
/// that [`is_leaked_build_var`]. With `keep_toolchain`, `RUSTUP_TOOLCHAIN` is
/// kept (useful for nested host cargo commands).
pub fn scrub_cargo_env(cmd: &mut Command, keep_toolchain: bool) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if keep_toolchain && name == "RUSTUP_TOOLCHAIN" {
            continue;
        }
        if is_leaked_build_var(name) {
            cmd.env_remove(name);
        }
    }
}

/// One build of the kernel crate.
#[derive(Debug, Clone)]
pub struct EbpfBuild {
    /// Directory holding the kernel crate's `Cargo.toml`.
    pub crate_dir: PathBuf,
    /// `--release` (the default) or a debug build.
    pub release: bool,
    /// rustup toolchain name (`nightly`).
    pub toolchain: String,
    /// RUSTFLAGS to give the child explicitly (none by default: the outer
    /// ones are for the host target and are removed).
    pub rustflags: Option<String>,
}

/// Why the kernel crate did not build.
#[derive(Debug)]
pub enum EbpfBuildError {
    /// `lb-ebpf/Cargo.toml` is not there.
    MissingCrate(PathBuf),
    /// rustup/cargo could not be started.
    Spawn(io::Error),
    /// cargo ran and failed.
    Failed(ExitStatus),
    /// cargo succeeded but the object is not where expected.
    MissingOutput(PathBuf),
}

impl fmt::Display for EbpfBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingCrate(p) => write!(f, "kernel crate manifest {} not found", p.display()),
            Self::Spawn(e) => write!(
                f,
                "could not start `rustup run {EBPF_TOOLCHAIN} cargo` ({e}); is rustup installed \
                 and the {EBPF_TOOLCHAIN} toolchain present? (`cargo xtask setup`)"
            ),
            Self::Failed(status) => write!(
                f,
                "eBPF build failed ({status}); see cargo's output above (needs the {EBPF_TOOLCHAIN} \
                 toolchain with rust-src and bpf-linker: `cargo xtask setup`)"
            ),
            Self::MissingOutput(p) => {
                write!(f, "eBPF build succeeded but {} is missing", p.display())
            }
        }
    }
}

impl std::error::Error for EbpfBuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

impl EbpfBuild {
    /// A release build of `<workspace_root>/lb-ebpf` with the nightly toolchain.
    pub fn new(workspace_root: &Path) -> Self {
        Self {
            crate_dir: workspace_root.join(EBPF_CRATE_DIR),
            release: true,
            toolchain: EBPF_TOOLCHAIN.to_string(),
            rustflags: None,
        }
    }

    /// Where the object lands: `lb-ebpf/target/bpfel-unknown-none/{release,debug}/lb-ebpf`.
    pub fn output_path(&self) -> PathBuf {
        let profile = if self.release { "release" } else { "debug" };
        self.crate_dir.join("target").join(EBPF_TARGET).join(profile).join(EBPF_BINARY)
    }

    /// The command, environment already cleaned, not yet run.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("rustup");
        cmd.args(["run", &self.toolchain, "cargo", "build"]);
        if self.release {
            cmd.arg("--release");
        }
        cmd.args(["--target", EBPF_TARGET, "-Z", "build-std=core"]);
        cmd.current_dir(&self.crate_dir);
        scrub_cargo_env(&mut cmd, false);
        if let Some(flags) = &self.rustflags {
            cmd.env("RUSTFLAGS", flags);
        }
        cmd
    }

    /// Runs the build (output goes to the parent's stdout/stderr) and returns
    /// the object's path.
    pub fn run(&self) -> Result<PathBuf, EbpfBuildError> {
        self.run_with(|cmd| cmd.status())
    }

    /// Like [`run`](Self::run) but lets the caller run the command (to echo
    /// it first, or to capture output in a build script).
    pub fn run_with(
        &self,
        runner: impl FnOnce(&mut Command) -> io::Result<ExitStatus>,
    ) -> Result<PathBuf, EbpfBuildError> {
        let manifest = self.crate_dir.join("Cargo.toml");
        if !manifest.is_file() {
            return Err(EbpfBuildError::MissingCrate(manifest));
        }
        let mut cmd = self.command();
        let status = runner(&mut cmd).map_err(EbpfBuildError::Spawn)?;
        if !status.success() {
            return Err(EbpfBuildError::Failed(status));
        }
        let out = self.output_path();
        if !out.is_file() {
            return Err(EbpfBuildError::MissingOutput(out));
        }
        Ok(out)
    }

    /// Files whose change should trigger a rebuild (for `cargo:rerun-if-changed`).
    pub fn inputs(&self) -> Vec<PathBuf> {
        ["src", "Cargo.toml", "Cargo.lock", ".cargo"]
            .iter()
            .map(|p| self.crate_dir.join(p))
            .filter(|p| p.exists() || p.file_name() == Some(OsStr::new("src")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaked_vars_are_recognised() {
        for v in [
            "RUSTC",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTUP_TOOLCHAIN",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_CFG_TARGET_ARCH",
            "CARGO_MAKEFLAGS",
        ] {
            assert!(is_leaked_build_var(v), "{v}");
        }
        for v in
            ["PATH", "HOME", "CARGO_HOME", "CARGO_NET_OFFLINE", "CARGO_REGISTRIES_CRATES_IO_PROTOCOL", "RUSTUP_HOME"]
        {
            assert!(!is_leaked_build_var(v), "{v}");
        }
    }

    #[test]
    fn output_path_follows_profile() {
        let mut b = EbpfBuild::new(Path::new("/ws"));
        assert_eq!(b.output_path(), Path::new("/ws/lb-ebpf/target/bpfel-unknown-none/release/lb-ebpf"));
        b.release = false;
        assert_eq!(b.output_path(), Path::new("/ws/lb-ebpf/target/bpfel-unknown-none/debug/lb-ebpf"));
    }
}
