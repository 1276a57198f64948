//! `lb-bench l4|l7|control|soak [--profile smoke|quick|full] [--out DIR]`
//! (`l4 --only nodeport|cluster-ip` for one part of the l4 bench).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
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
    /// l4 only: run one part — `nodeport` (report `l4`) or `cluster-ip`
    /// (report `l4-cluster-ip`) — instead of both.
    #[arg(long, value_enum)]
    only: Option<L4Part>,
    /// l4 only: the idle Service counts to measure at (e.g. `1,1000,10000`)
    /// instead of the profile's.
    #[arg(long, value_delimiter = ',')]
    services: Option<Vec<usize>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum L4Part {
    /// Client → node1's NodePorts (XDP against kube-proxy's rules).
    Nodeport,
    /// A pod → a ClusterIP (socket LB against kube-proxy's DNAT).
    ClusterIp,
}

/// Runs one bench (or one part of one) and returns its report.
type BenchFn = fn(&RunOptions) -> Result<lb_bench::Report>;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Bench {
    L4,
    L7,
    Control,
    /// lb alone under load, changes and agent restarts (its own report).
    Soak,
}

impl Bench {
    /// The reports this bench writes (its parts, `only` picking one of
    /// l4's), each with the function that measures it.
    fn parts(self, only: Option<L4Part>) -> Result<Vec<(&'static str, BenchFn)>> {
        let nodeport: (&str, BenchFn) = ("l4", lb_bench::l4::run);
        let cluster_ip: (&str, BenchFn) = (lb_bench::l4::cluster_ip::REPORT, lb_bench::l4::cluster_ip::run);
        Ok(match (self, only) {
            (Bench::L4, None) => vec![nodeport, cluster_ip],
            (Bench::L4, Some(L4Part::Nodeport)) => vec![nodeport],
            (Bench::L4, Some(L4Part::ClusterIp)) => vec![cluster_ip],
            (_, Some(_)) => bail!("--only is for the l4 bench"),
            (Bench::L7, None) => vec![("l7", lb_bench::l7::run)],
            (Bench::Control, None) => vec![("control", lb_bench::control::run)],
            (Bench::Soak, None) => bail!("the soak writes a report of its own"),
        })
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
    if cli.services.is_some() && !matches!(cli.bench, Bench::L4) {
        bail!("--services is for the l4 bench");
    }
    let opts = RunOptions { profile: cli.profile, out_dir: out_dir.clone(), services: cli.services.clone() };
    let update_doc = cli.update_doc.unwrap_or(default_dir && cli.profile == Profile::Full);
    if matches!(cli.bench, Bench::Soak) {
        if cli.only.is_some() {
            bail!("--only is for the l4 bench");
        }
        return soak(&opts, cli.rerender, update_doc);
    }
    // Each part's report is written as soon as it is measured.
    for (name, measure) in cli.bench.parts(cli.only)? {
        let report = if cli.rerender {
            lb_bench::Report::read(&out_dir.join(format!("{name}.json")))?
        } else {
            let started = Instant::now();
            let mut report = measure(&opts)?;
            report.meta.duration_s = started.elapsed().as_secs_f64();
            report
        };
        write(&report, &out_dir, update_doc)?;
    }
    Ok(())
}

/// Runs the soak (or reads its last report), writes its files and, if
/// asked, its section of BENCHMARKS.md; fails when it failed its criteria.
fn soak(opts: &RunOptions, rerender: bool, update_doc: bool) -> Result<()> {
    use lb_bench::soak::{SoakReport, record};
    let report = if rerender {
        SoakReport::read(&opts.out_dir.join(format!("{}.json", record::NAME)))?
    } else {
        let started = Instant::now();
        let mut report = lb_bench::soak::run(opts)?;
        report.meta.duration_s = started.elapsed().as_secs_f64();
        report
    };
    for f in report.write(&opts.out_dir)? {
        println!("[lb-bench] wrote {}", f.display());
    }
    print!("{}", report.tables(""));
    if update_doc {
        let root = lb_testbed::repo_root();
        let doc = root.join("BENCHMARKS.md");
        let rel = opts.out_dir.strip_prefix(&root).unwrap_or(&opts.out_dir);
        let body = format!(
            "\n_{} run: {}._\n\n{}",
            report.profile,
            report.meta.summary(),
            report.tables(&format!("{}/", rel.display()))
        );
        markdown::replace_generated(&doc, record::NAME, &body).context("updating BENCHMARKS.md")?;
        println!("[lb-bench] updated {}", doc.display());
    }
    if !report.pass {
        bail!("the soak failed: {}", report.failed_criteria.join("; "));
    }
    Ok(())
}

/// Writes `report`'s files into `out_dir`, prints its tables and, if asked,
/// replaces its section of BENCHMARKS.md.
fn write(report: &lb_bench::Report, out_dir: &std::path::Path, update_doc: bool) -> Result<()> {
    let files = report.write(out_dir)?;
    for f in &files {
        println!("[lb-bench] wrote {}", f.display());
    }
    print!("{}", markdown::tables(report, ""));
    if update_doc {
        let root = lb_testbed::repo_root();
        let doc = root.join("BENCHMARKS.md");
        let rel = out_dir.strip_prefix(&root).unwrap_or(out_dir);
        markdown::update_benchmarks_md(&doc, report, &format!("{}/", rel.display()))
            .context("updating BENCHMARKS.md")?;
        println!("[lb-bench] updated {}", doc.display());
    }
    Ok(())
}
