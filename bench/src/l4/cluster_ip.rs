//! `lb-bench l4 --only cluster-ip` (and the second part of every
//! `lb-bench l4`): east-west traffic, a pod on node1 connecting to a
//! ClusterIP Service whose endpoints are on both nodes, served by lb's
//! socket programs, by kube-proxy's iptables layout and its nftables layout
//! (DNAT in node1's PREROUTING), and by nothing (the generator connecting to
//! the pods' own addresses, the baseline), with 1 and 1,000 idle Services
//! present. Rounds interleave the subjects. Its report is
//! `l4-cluster-ip` (its own files and section of BENCHMARKS.md).
//!
//! - [`bed`]: the pods (four endpoints and the client pod), the Service,
//!   joining node1's cgroup.
//! - [`subject`]: starting and stopping each subject.
//! - [`measure`]: one subject's measurements; [`results`]: samples →
//!   comparisons.

pub mod bed;
pub mod measure;
mod notes;
pub mod params;
pub mod results;
pub mod subject;

use std::time::Duration;

use anyhow::{Context, Result};

use self::bed::{CipBed, InCgroup};
use self::params::Params;
use self::results::Results;
use self::subject::{ALL, Subject};
use super::subject::LbOptions;
use crate::cluster::Cluster;
use crate::{Report, RunOptions};

/// The report's name (`bench/results/*/l4-cluster-ip.json`, the
/// `l4-cluster-ip` section of BENCHMARKS.md).
pub const REPORT: &str = "l4-cluster-ip";

pub fn run(opts: &RunOptions) -> Result<Report> {
    lb_testbed::require_root()?;
    super::subject::require_tools()?;
    let mut params = Params::for_profile(opts.profile);
    if let Some(services) = &opts.services {
        params.service_counts.clone_from(services);
    }
    let meta = super::meta()?;
    let bed = CipBed::start(params.acceptors_per_pod())?;
    let mut results = Results::default();
    for &n in &params.service_counts {
        measure_cluster(&bed, &params, n, &mut results).with_context(|| format!("ClusterIP with {n} services"))?;
    }
    drop(bed);
    let mut report = Report::new(REPORT, opts.profile, meta, notes::params_json(&params));
    results.fill(&mut report, &params.service_counts);
    notes::add(&mut report, &params, &results);
    Ok(report)
}

/// Every round: each subject once, the order rotating from round to round.
fn measure_cluster(bed: &CipBed, params: &Params, n: usize, results: &mut Results) -> Result<()> {
    let cluster = bed::cluster(n);
    let lb = LbOptions {
        max_services: params.max_services(n),
        maglev_table_size: params.maglev_table_size,
        ready_timeout: super::LB_READY_TIMEOUT,
    };
    for round in 0..params.rounds {
        for i in 0..ALL.len() {
            let subject = ALL[(i + round) % ALL.len()];
            let (run, setup) = measure_subject(bed, params, subject, &cluster, &lb)
                .with_context(|| format!("round {round}, {}", subject.name()))?;
            eprintln!(
                "[l4] cluster-ip services={n} round {round}: {:<27} setup {:.1}s, {:.0} conn/s ({} failed, {} pods), \
                 rr p50/p99/p999 {:.0}/{:.0}/{:.0} µs, cpu {:.1} µs/conn ({:.0} conn/s)",
                subject.name(),
                setup.as_secs_f64(),
                run.cps,
                run.cps_failed,
                run.pods_reached,
                run.rr_p50_us,
                run.rr_p99_us,
                run.rr_p999_us,
                run.cpu.bed_us,
                run.cpu.completed_cps()
            );
            if !run.cps_errors.is_empty() {
                eprintln!("[l4]   failed connections: {:?}", run.cps_errors);
            }
            results.push(n, subject, run, setup);
        }
    }
    Ok(())
}

fn measure_subject(
    bed: &CipBed,
    params: &Params,
    subject: Subject,
    cluster: &Cluster,
    lb: &LbOptions,
) -> Result<(measure::CipRun, Duration)> {
    let (serving, setup) = subject::start(bed, subject, cluster, lb)?;
    std::thread::sleep(params.settle());
    super::wait_until_quiet(&format!("starting {}", subject.name()));
    let run = in_node_cgroup(bed, || {
        let targets = subject.targets(bed);
        subject::probe(bed, &targets).with_context(|| format!("{} does not serve", subject.name()))?;
        measure::subject(bed, params, &targets, serving.pid())
    });
    // Stop it also when the measurement failed.
    serving.stop(bed).with_context(|| format!("stopping {}", subject.name()))?;
    super::wait_until_quiet(&format!("stopping {}", subject.name()));
    Ok((run?, setup))
}

/// Runs `f` with lb-bench in node1's pods' cgroup, as the client pod's
/// processes would be.
fn in_node_cgroup<T>(bed: &CipBed, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _member = InCgroup::join(bed.node_cgroup()?).context("joining node1's pods' cgroup")?;
    f()
}
