//! One subject's measurements from the client pod, once it serves:
//! connections per second, round-trip latency on kept-alive connections,
//! CPU per connection at a fixed rate.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};

use super::bed::CipBed;
use super::params::Params;
use crate::l4::cpu::{CpuSnapshot, process_cpu};
use crate::stats::percentile;

/// Everything measured for one subject in one round.
#[derive(Clone, Debug)]
pub struct CipRun {
    pub cps: f64,
    pub cps_completed: u64,
    pub cps_failed: u64,
    /// Why connections failed (stage and error → count).
    pub cps_errors: BTreeMap<String, u64>,
    /// How many of the backends accepted connections of the rate run.
    pub pods_reached: usize,
    /// The smallest share of the rate run's connections one backend got.
    pub min_pod_share: f64,
    pub rr_p50_us: f64,
    pub rr_p99_us: f64,
    pub rr_p999_us: f64,
    pub rr_count: usize,
    pub rr_failed: u64,
    pub cpu: ConnCost,
}

/// CPU per completed connection at a fixed offered rate.
#[derive(Clone, Copy, Debug)]
pub struct ConnCost {
    pub offered_cps: f64,
    pub completed: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// The bed's CPU (this process, ksoftirqd, lb) per completed connection.
    pub bed_us: f64,
    /// Of which the lb agent's own process, when there is one (user and
    /// system time; the kernel's work in its programs is charged to the
    /// tasks whose sockets ran them).
    pub agent_us: Option<f64>,
}

impl ConnCost {
    pub fn completed_cps(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }
}

/// The three measurements of a serving subject whose generator connects to
/// `targets`.
pub fn subject(bed: &CipBed, params: &Params, targets: &[SocketAddr], lb_pid: Option<u32>) -> Result<CipRun> {
    let ns = bed.client_ns()?;
    let before = bed.servers.accepted();
    let conns = params.cps_load().connections(ns, targets)?;
    let per_pod: Vec<u64> = bed.servers.accepted().iter().zip(&before).map(|(a, b)| a - b).collect();
    if conns.completed == 0 {
        bail!("no TCP connection completed through {targets:?} ({conns:?})");
    }
    let accepted: u64 = per_pod.iter().sum();
    let min_pod_share = per_pod.iter().min().map_or(0.0, |m| *m as f64 / accepted.max(1) as f64);
    std::thread::sleep(params.settle());

    let rr = params.rr_load().round_trips(ns, targets, params.rr_connections_per_thread)?;
    if rr.micros.is_empty() {
        bail!("no TCP round trip completed through {targets:?} ({} failed)", rr.failed);
    }
    std::thread::sleep(params.settle());

    let cpu = cpu_cost(bed, params, targets, lb_pid)?;
    Ok(CipRun {
        cps: conns.per_second(),
        cps_completed: conns.completed,
        cps_failed: conns.failed,
        cps_errors: conns.errors,
        pods_reached: per_pod.iter().filter(|n| **n > 0).count(),
        min_pod_share,
        rr_p50_us: percentile(&rr.micros, 50.0),
        rr_p99_us: percentile(&rr.micros, 99.0),
        rr_p999_us: percentile(&rr.micros, 99.9),
        rr_count: rr.micros.len(),
        rr_failed: rr.failed,
        cpu,
    })
}

/// The paced short connections, with the bed's CPU counted over them.
fn cpu_cost(bed: &CipBed, params: &Params, targets: &[SocketAddr], lb_pid: Option<u32>) -> Result<ConnCost> {
    let pids: Vec<u32> = lb_pid.into_iter().collect();
    let agent = || lb_pid.and_then(process_cpu).unwrap_or_default();
    let (start, agent_start) = (CpuSnapshot::take(&pids), agent());
    let conns = params.paced_load().connections(bed.client_ns()?, targets)?;
    let (spent, agent_spent) = (start.until(&CpuSnapshot::take(&pids)), agent().saturating_sub(agent_start));
    if conns.completed == 0 {
        bail!("no connection completed during the CPU measurement ({conns:?})");
    }
    let per = |d: Duration| d.as_nanos() as f64 / 1000.0 / conns.completed as f64;
    Ok(ConnCost {
        offered_cps: params.cpu_rate_cps,
        completed: conns.completed,
        failed: conns.failed,
        elapsed: conns.elapsed,
        bed_us: per(spent.bed),
        agent_us: lb_pid.map(|_| per(agent_spent)),
    })
}
