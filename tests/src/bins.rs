//! Finding the project's binaries and files. (`lb run` command lines are
//! built by [`LbRun`](crate::LbRun).)

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The repository root (parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate lives inside the repository").to_path_buf()
}

/// `manifests/examples` of the repository: the users' Services.
pub fn example_manifests_dir() -> PathBuf {
    repo_root().join("manifests").join("examples")
}

/// The directory holding our binaries (`target/debug`), derived from the
/// running executable: tests run from `target/debug/deps`, binaries from
/// `target/debug`.
pub fn target_bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

fn find_bin(name: &str, env_override: &str, package: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_override) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{env_override}={} does not exist", path.display());
        }
        return Ok(path);
    }
    let path = target_bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "{} not found: build it first (`cargo build -p {package} --bins` or \
             `cargo build --workspace --bins`), or point {env_override} at it",
            path.display()
        );
    }
    Ok(path)
}

/// The `lb` agent binary (`target/debug/lb`, or env `LB_BIN`).
pub fn lb_bin() -> Result<PathBuf> {
    find_bin("lb", "LB_BIN", "lb-userspace")
}

/// The echo pod binary (`target/debug/lb-echo`, or env `LB_ECHO_BIN`).
pub fn lb_echo_bin() -> Result<PathBuf> {
    find_bin("lb-echo", "LB_ECHO_BIN", "lb-testbed")
}

/// The in-pod client (`target/debug/lb-probe`, or env `LB_PROBE_BIN`).
pub fn lb_probe_bin() -> Result<PathBuf> {
    find_bin("lb-probe", "LB_PROBE_BIN", "lb-testbed")
}

/// Arguments of `lb` to run the data path on a bed node: it is told only its
/// uplink (`run --manifests DIR --interface eth0`) and finds the rest itself.
/// Shorthand for [`LbRun::on_bed_node`](crate::LbRun::on_bed_node); use the
/// builder to add flags.
pub fn lb_run_args(manifests: &Path) -> Vec<OsString> {
    crate::LbRun::on_bed_node(manifests).into_args()
}

/// A temporary copy of the example manifests (`*.yaml` of
/// [`example_manifests_dir`]), for tests that add or change files.
pub fn copy_example_manifests() -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for entry in std::fs::read_dir(example_manifests_dir())? {
        let path = entry?.path();
        if let (Some(name), true) = (path.file_name(), path.extension().is_some_and(|e| e == "yaml")) {
            std::fs::copy(&path, dir.path().join(name))?;
        }
    }
    Ok(dir)
}
