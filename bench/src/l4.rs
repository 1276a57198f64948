//! `lb-bench l4`: node1 of the netns bed forwarding NodePort traffic from
//! the client to four pods (two on node1, two on node2) through lb's XDP
//! data path (as it runs on a veth by default, and two other ways of
//! finishing frames), kube-proxy's iptables layout and its nftables layout, with
//! 1, 1,000 and 10,000 idle Services present. Rounds interleave the
//! subjects; every subject serves the same [`Cluster`](crate::cluster::Cluster).
//! Then [`cluster_ip`]: east-west, a pod connecting to a ClusterIP (its own
//! bed and report; `--only nodeport|cluster-ip` runs one part).
//!
//! - [`bed`]: the topology, the pods' servers, the measured Services.
//! - [`subject`]: starting and stopping each subject on node1.
//! - [`udp`], [`tcp`]: the generators and the pods' sinks and echo servers.
//! - [`cpu`]: CPU accounting; [`measure`]: one subject's measurements.
//! - [`results`]: samples → comparisons.

pub mod bed;
pub mod cluster_ip;
pub mod cpu;
pub mod measure;
mod notes;
pub mod params;
pub mod results;
pub mod subject;
pub(crate) mod sys;
pub mod tcp;
pub mod udp;

use std::time::Duration;

use anyhow::{Context, Result};

use self::bed::L4Bed;
use self::params::Params;
use self::results::Results;
use self::subject::{ALL, LbOptions, Subject};
use crate::meta::Meta;
use crate::{Report, RunOptions};

/// How long lb may take to fill its maps with 10,000 Services.
const LB_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest wait for a quiet machine around each subject's measurement
/// (see [`cpu::wait_until_quiet`]).
const QUIET_LIMIT: Duration = Duration::from_secs(120);

pub fn run(opts: &RunOptions) -> Result<Report> {
    lb_testbed::require_root()?;
    subject::require_tools()?;
    let mut params = Params::for_profile(opts.profile);
    if let Some(services) = &opts.services {
        params.service_counts.clone_from(services);
    }
    let meta = meta()?;
    let bed = L4Bed::start(params.acceptors_per_pod())?;
    measure::warm_up(&bed, &params)?;
    let mut results = Results::default();
    for &n in &params.service_counts {
        measure_cluster(&bed, &params, n, &mut results).with_context(|| format!("with {n} services"))?;
    }
    drop(bed);
    let mut report = Report::new("l4", opts.profile, meta, notes::params_json(&params));
    results.fill(&mut report, &params.service_counts);
    notes::add(&mut report, &params, &results);
    Ok(report)
}

fn meta() -> Result<Meta> {
    let mut meta = Meta::collect();
    meta.tool("iptables", "iptables", &["--version"]);
    meta.tool("nft", "nft", &["--version"]);
    let lb = lb_testbed::lb_bin()?;
    meta.tool("lb", &lb.to_string_lossy(), &["--version"]);
    Ok(meta)
}

/// Every round: the routed reference, then each subject (the order rotates
/// from round to round, so no subject always runs first or last).
fn measure_cluster(bed: &L4Bed, params: &Params, n: usize, results: &mut Results) -> Result<()> {
    let cluster = bed::cluster(n);
    let lb = LbOptions {
        max_services: params.max_services(n),
        maglev_table_size: params.maglev_table_size,
        ready_timeout: LB_READY_TIMEOUT,
    };
    for round in 0..params.rounds {
        let (udp, cpu) = measure::reference(bed, params).context("the routed reference")?;
        eprintln!(
            "[l4] services={n} round {round}: routed reference {:.0} pps ({:.0} sent), {:.0} ns/packet",
            udp.received_pps(),
            udp.sent_pps(),
            cpu.bed_ns
        );
        results.push_reference(n, udp, cpu);
        for i in 0..ALL.len() {
            let subject = ALL[(i + round) % ALL.len()];
            let (run, setup) = measure_subject(bed, params, subject, &cluster, &lb)
                .with_context(|| format!("round {round}, {}", subject.name()))?;
            log_run(n, round, subject, &run, setup);
            results.push(n, subject, run, setup);
        }
    }
    Ok(())
}

fn log_run(n: usize, round: usize, subject: Subject, run: &measure::SubjectRun, setup: Duration) {
    eprintln!(
        "[l4] services={n} round {round}: {:<9} setup {:.1}s, udp {:.0} pps ({:.0} sent), cpu {:.0} ns/packet, \
         {:.0} conn/s ({} failed), rr p50/p99/p999 {:.0}/{:.0}/{:.0} µs",
        subject.name(),
        setup.as_secs_f64(),
        run.udp.received_pps(),
        run.udp.sent_pps(),
        run.cpu.bed_ns,
        run.cps,
        run.cps_failed,
        run.rr_p50_us,
        run.rr_p99_us,
        run.rr_p999_us
    );
    if !run.cps_errors.is_empty() {
        eprintln!("[l4]   failed connections: {:?}", run.cps_errors);
    }
}

fn measure_subject(
    bed: &L4Bed,
    params: &Params,
    subject: Subject,
    cluster: &crate::cluster::Cluster,
    lb: &LbOptions,
) -> Result<(measure::SubjectRun, Duration)> {
    let (serving, setup) = subject::start(bed, subject, cluster, lb)?;
    std::thread::sleep(params.settle());
    wait_until_quiet(&format!("starting {}", subject.name()));
    let run = measure::subject(bed, params, serving.pid());
    // Stop it also when the measurement failed (the bed would on drop, but
    // the error should name what failed, not a leftover).
    serving.stop(bed).with_context(|| format!("stopping {}", subject.name()))?;
    wait_until_quiet(&format!("stopping {}", subject.name()));
    Ok((run?, setup))
}

/// [`cpu::wait_until_quiet`] after `what`, logging waits over 2 s.
fn wait_until_quiet(what: &str) {
    let waited = cpu::wait_until_quiet(QUIET_LIMIT);
    if waited > Duration::from_secs(2) {
        eprintln!("[l4]   waited {waited:.1?} after {what} for the machine to be quiet");
    }
}
