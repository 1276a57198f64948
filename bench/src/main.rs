//! `lb-bench l4|l7|control [--profile smoke|quick|full] [--out DIR]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use lb_bench::{Profile, RunOptions, default_out_dir, markdown};

#[derive(Parser)]
#[command(name = "lb-bench", about = "Benchmarks of lb against kube-proxy's rule sets, nginx and HAProxy (needs root)")]
struct Cli {
    /// Which bench.
    bench: Bench,
    /// `smoke` (seconds: the test suite's check), `quick` (under 5 minutes), `full`.
    #[arg(long, value_enum, default_value_t = Profile::Full)]
    profile: Profile,
    /// Where to write the report (default: bench/results/PROFILE).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also replace this bench's generated section of BENCHMARKS.md
    /// (default: on for full runs into the default directory).
    #[arg(long)]
    update_doc: Option<bool>,
    /// Measure nothing: read the report already in the output directory and
    /// write its tables and charts again (after a change to how they are drawn).
    #[arg(long)]
    rerender: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Bench {
    L4,
    L7,
    Control,
}

impl Bench {
    fn name(self) -> &'static str {
        match self {
            Bench::L4 => "l4",
            Bench::L7 => "l7",
            Bench::Control => "control",
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[lb-bench] error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    lb_testbed::require_root()?;
    let default_dir = cli.out.is_none();
    let out_dir = cli.out.unwrap_or_else(|| default_out_dir(cli.profile));
    let opts = RunOptions { profile: cli.profile, out_dir: out_dir.clone() };
    let report = if cli.rerender {
        let name = format!("{}.json", cli.bench.name());
        lb_bench::Report::read(&out_dir.join(name))?
    } else {
        let started = Instant::now();
        let mut report = match cli.bench {
            Bench::L4 => lb_bench::l4::run(&opts),
            Bench::L7 => lb_bench::l7::run(&opts),
            Bench::Control => lb_bench::control::run(&opts),
        }?;
        report.meta.duration_s = started.elapsed().as_secs_f64();
        report
    };
    let files = report.write(&out_dir)?;
    for f in &files {
        println!("[lb-bench] wrote {}", f.display());
    }
    print!("{}", markdown::tables(&report, ""));
    if cli.update_doc.unwrap_or(default_dir && cli.profile == Profile::Full) {
        let root = lb_testbed::repo_root();
        let doc = root.join("BENCHMARKS.md");
        let rel = out_dir.strip_prefix(&root).unwrap_or(&out_dir);
        markdown::update_benchmarks_md(&doc, &report, &format!("{}/", rel.display()))
            .context("updating BENCHMARKS.md")?;
        println!("[lb-bench] updated {}", doc.display());
    }
    Ok(())
}
