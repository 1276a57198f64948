//! `cargo xtask fuzz`: the long fuzz runs that `cargo xtask test` runs
//! briefly.
//!
//! 1. The kernel programs: `tests/tests/xdp_fuzz.rs` with `--count` frames
//!    per pipeline (default 10M), recording every new outcome as a fixture
//!    (`tests/fixtures/xdp_fuzz_verdicts.txt`).
//! 2. The parsers of what users write: the `cargo fuzz` targets in `fuzz/`
//!    (libFuzzer, nightly), each for `--parser-seconds`, from a corpus
//!    seeded with the example and install manifests. cargo-fuzz is
//!    installed first if it is missing. Crashes land in
//!    `fuzz/artifacts/<target>/` and fail the run.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::ebpf::EBPF_TOOLCHAIN;

pub struct FuzzOptions {
    pub count: u64,
    pub seed: Option<u64>,
    pub parser_seconds: u64,
    pub skip_parsers: bool,
}

/// The cargo-fuzz targets and the directories of YAML their corpus starts from.
const TARGETS: [(&str, &[&str]); 2] =
    [("manifests", &["manifests/examples", "manifests"]), ("config", &["fuzz/seeds"])];

pub fn fuzz(options: &FuzzOptions) -> Result<()> {
    if !cmd::is_root() {
        bail!("`cargo xtask fuzz` must run as root: the kernel programs are loaded and test-run (CAP_BPF)");
    }
    crate::setup::setup()?;
    crate::build_ebpf(true)?;
    kernel_programs(options)?;
    if !options.skip_parsers {
        parsers(options.parser_seconds)?;
    }
    Ok(())
}

fn kernel_programs(options: &FuzzOptions) -> Result<()> {
    let step = cmd::Step::start(&format!("fuzz the kernel programs ({} frames per pipeline)", options.count));
    let mut c = cmd::host_cargo();
    c.args(["test", "-p", "lb-testbed", "--test", "xdp_fuzz", "--", "--nocapture"]);
    c.env("LB_FUZZ_COUNT", options.count.to_string()).env("LB_FUZZ_RECORD", "1");
    if let Some(seed) = options.seed {
        c.env("LB_FUZZ_SEED", seed.to_string());
    }
    cmd::run(&mut c)?;
    step.done();
    Ok(())
}

fn parsers(seconds: u64) -> Result<()> {
    let root = cmd::workspace_root();
    let fuzz_dir = root.join("fuzz");
    let mut version = Command::new("cargo");
    version.args(["fuzz", "--version"]);
    if cmd::probe(&mut version).is_none() {
        let mut install = Command::new("cargo");
        install.args(["install", "cargo-fuzz", "--locked"]);
        cmd::run(&mut install).context("installing cargo-fuzz")?;
    }
    for (target, seeds) in TARGETS {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        for dir in seeds {
            seed_corpus(&root.join(dir), &corpus)?;
        }
        let step = cmd::Step::start(&format!("cargo fuzz run {target} ({seconds} s)"));
        let mut c = Command::new("cargo");
        crate::ebpf::scrub_cargo_env(&mut c, true);
        c.current_dir(&fuzz_dir);
        c.arg(format!("+{EBPF_TOOLCHAIN}")).args(["fuzz", "run", target]).arg(&corpus);
        c.args(["--", &format!("-max_total_time={seconds}")]);
        cmd::run(&mut c)
            .with_context(|| format!("the {target} fuzz target found a crash (see fuzz/artifacts/{target}/)"))?;
        step.done();
    }
    Ok(())
}

/// Copies the YAML files of `dir` into `corpus`.
fn seed_corpus(dir: &Path, corpus: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml")
            && let Some(name) = path.file_name()
        {
            std::fs::copy(&path, corpus.join(name)).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}
