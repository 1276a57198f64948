//! Project automation: `cargo xtask setup | build-ebpf | test | demo | bench | fuzz`.

mod cmd;
mod ebpf;
mod fuzz;
mod setup;

use std::ffi::OsString;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::cmd::{Step, fmt_duration};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, test and demo automation for the lb project")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this machine lacks (Debian packages, rust-src, bpf-linker); skips what is there.
    Setup,
    /// Build the kernel crate lb-ebpf (nightly, bpfel-unknown-none) and print the object's path.
    BuildEbpf {
        /// Debug build instead of --release.
        #[arg(long)]
        debug: bool,
    },
    /// Full check as CI runs it: setup, build-ebpf, fmt, clippy, build, all tests (needs root).
    Test {
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(last = true)]
        cargo_test_args: Vec<OsString>,
    },
    /// Build everything and run the netns demo (target/debug/lb-demo) with the given arguments.
    Demo {
        /// Arguments for lb-demo, after `--` (e.g. `-- --keep`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        demo_args: Vec<OsString>,
    },
    /// Build release binaries and run a benchmark against its peers
    /// (results under bench/results/, BENCHMARKS.md updated by full runs).
    Bench {
        /// `l4` (XDP vs kube-proxy iptables/nftables), `l7` (vs nginx, HAProxy) or
        /// `control` (time to apply a change, map memory, Maglev builds).
        #[arg(value_parser = ["l4", "l7", "control", "soak"])]
        bench: String,
        /// The short run (under 5 minutes) instead of the full one.
        #[arg(long)]
        quick: bool,
        /// More arguments for lb-bench, after `--` (e.g. `-- --out DIR`).
        #[arg(last = true)]
        bench_args: Vec<OsString>,
    },
    /// Long fuzz runs (needs root): the kernel programs through BPF_PROG_TEST_RUN (new outcomes
    /// recorded as fixtures), then the `cargo fuzz` targets of the parsers of what users write.
    Fuzz {
        /// Frames per pipeline of the kernel programs.
        #[arg(long, default_value_t = 10_000_000)]
        count: u64,
        /// Seed of the frame mutations (default: the test's fixed one).
        #[arg(long)]
        seed: Option<u64>,
        /// How long each parser target runs under libFuzzer.
        #[arg(long, default_value_t = 60)]
        parser_seconds: u64,
        /// Only the kernel programs.
        #[arg(long)]
        skip_parsers: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => setup::setup(),
        Task::BuildEbpf { debug } => build_ebpf(!debug).map(|_| ()),
        Task::Test { cargo_test_args } => test(&cargo_test_args),
        Task::Demo { demo_args } => demo(&demo_args),
        Task::Bench { bench, quick, bench_args } => run_bench(&bench, quick, &bench_args),
        Task::Fuzz { count, seed, parser_seconds, skip_parsers } => {
            fuzz::fuzz(&fuzz::FuzzOptions { count, seed, parser_seconds, skip_parsers })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\n[xtask] error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_ebpf(release: bool) -> Result<std::path::PathBuf> {
    let step = Step::start(if release { "build-ebpf (release)" } else { "build-ebpf (debug)" });
    let mut build = ebpf::EbpfBuild::new(&cmd::workspace_root());
    build.release = release;
    let object = build
        .run_with(|c| {
            cmd::echo(c);
            c.status()
        })
        .context("building the eBPF crate lb-ebpf")?;
    println!("{}", object.display());
    step.done();
    Ok(object)
}

/// A named step of `cargo xtask test`.
type StepFn<'a> = Box<dyn FnOnce() -> Result<()> + 'a>;

fn test(cargo_test_args: &[OsString]) -> Result<()> {
    if !cmd::is_root() {
        bail!(
            "`cargo xtask test` must run as root: the integration tests create network \
             namespaces, veths and bridges and attach XDP programs (CAP_NET_ADMIN, CAP_SYS_ADMIN, \
             CAP_BPF). Re-run as root, e.g. `sudo -E cargo xtask test`. Not skipping them."
        );
    }
    let started = Instant::now();
    let steps: Vec<(&str, StepFn)> = vec![
        ("setup", Box::new(setup::setup)),
        ("build-ebpf", Box::new(|| build_ebpf(true).map(|_| ()))),
        ("fmt", Box::new(|| cargo_step("fmt", &["fmt", "--all", "--", "--check"], &[]))),
        (
            "clippy",
            Box::new(|| cargo_step("clippy", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])),
        ),
        ("build", Box::new(|| cargo_step("build", &["build", "--workspace", "--bins"], &[]))),
        ("test", Box::new(|| cargo_step("test", &["test", "--workspace", "--"], cargo_test_args))),
    ];
    let total = steps.len();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    for (i, (name, run)) in steps.into_iter().enumerate() {
        eprintln!("\n[xtask] step {}/{total}: {name}", i + 1);
        let t = Instant::now();
        if let Err(e) = run() {
            eprintln!(
                "\n[xtask] test: FAILED at step {}/{total} `{name}` after {} ({} passed before it)",
                i + 1,
                fmt_duration(started.elapsed()),
                i
            );
            return Err(e);
        }
        timings.push((name, t.elapsed()));
    }
    let detail: Vec<String> = timings.iter().map(|(n, d)| format!("{n} {}", fmt_duration(*d))).collect();
    eprintln!(
        "\n[xtask] test: all {total} steps passed in {} ({})",
        fmt_duration(started.elapsed()),
        detail.join(", ")
    );
    Ok(())
}

/// Runs a host `cargo` command as one step. `extra` goes after the args
/// (for `cargo test`, the args end with `--`: extra are the test binary's args).
fn cargo_step(name: &str, args: &[&str], extra: &[OsString]) -> Result<()> {
    let step = Step::start(&format!("cargo {name}"));
    let mut c = cmd::host_cargo();
    let (cargo_args, test_args) = split_test_args(args, extra);
    c.args(cargo_args);
    if !test_args.is_empty() {
        c.arg("--").args(test_args);
    }
    cmd::run(&mut c)?;
    step.done();
    Ok(())
}

/// `cargo test --workspace -- X`: extra args given by the user before their
/// own `--` are cargo args (e.g. `-p lb-testbed`), after it test-binary args.
fn split_test_args(args: &[&str], extra: &[OsString]) -> (Vec<OsString>, Vec<OsString>) {
    let mut cargo_args: Vec<OsString> = args.iter().take_while(|a| **a != "--").map(OsString::from).collect();
    let mut test_args: Vec<OsString> = Vec::new();
    if args.contains(&"--") {
        match extra.iter().position(|a| a == "--") {
            Some(pos) => {
                cargo_args.extend(extra[..pos].iter().cloned());
                test_args.extend(extra[pos + 1..].iter().cloned());
            }
            None => cargo_args.extend(extra.iter().cloned()),
        }
    } else {
        cargo_args.extend(extra.iter().cloned());
    }
    (cargo_args, test_args)
}

fn demo(demo_args: &[OsString]) -> Result<()> {
    setup::setup()?;
    build_ebpf(true)?;
    cargo_step("build", &["build", "--workspace", "--bins"], &[])?;
    let bin = cmd::target_dir().join("debug").join("lb-demo");
    if !bin.is_file() {
        bail!("{} was not built", bin.display());
    }
    let mut c = Command::new(&bin);
    c.args(demo_args);
    let status = cmd::status(&mut c)?;
    if !status.success() {
        bail!("lb-demo failed ({status})");
    }
    Ok(())
}

fn run_bench(bench: &str, quick: bool, bench_args: &[OsString]) -> Result<()> {
    if !cmd::is_root() {
        bail!(
            "`cargo xtask bench` must run as root: it builds network namespaces, loads XDP programs \
             and installs iptables/nftables rule sets inside them. Re-run as root."
        );
    }
    setup::setup()?;
    build_ebpf(true)?;
    // Release builds of lb, lb-echo and lb-bench: a debug proxy would measure the compiler.
    cargo_step("build --release", &["build", "--release", "--workspace", "--bins"], &[])?;
    // The agent as it ships (the `dist` profile: whole-program LTO), so the
    // bench measures what users run.
    cargo_step("build --profile dist", &["build", "--profile", "dist", "-p", "lb-userspace", "--bin", "lb"], &[])?;
    let bin = cmd::target_dir().join("release").join("lb-bench");
    let lb = cmd::target_dir().join("dist").join("lb");
    for built in [&bin, &lb] {
        if !built.is_file() {
            bail!("{} was not built", built.display());
        }
    }
    let mut c = Command::new(&bin);
    c.env("LB_BIN", &lb);
    c.arg(bench).args(["--profile", if quick { "quick" } else { "full" }]).args(bench_args);
    let status = cmd::status(&mut c)?;
    if !status.success() {
        bail!("lb-bench {bench} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_args_split_between_cargo_and_test_binary() {
        let extra: Vec<OsString> = ["-p", "lb-testbed", "--", "--nocapture"].iter().map(OsString::from).collect();
        let (c, t) = split_test_args(&["test", "--workspace", "--"], &extra);
        assert_eq!(c, ["test", "--workspace", "-p", "lb-testbed"]);
        assert_eq!(t, ["--nocapture"]);
        let (c, t) = split_test_args(&["test", "--workspace", "--"], &[OsString::from("bed")]);
        assert_eq!(c, ["test", "--workspace", "bed"]);
        assert!(t.is_empty());
    }
}
