//! One subject's measurements on the bed, once it serves: packet rate,
//! CPU per packet at a fixed rate, connections per second, round-trip
//! latency. The routed reference (the client sending straight to the pods'
//! addresses, no Service, no NAT) takes the first two.

use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{Result, bail};

use super::bed::L4Bed;
use super::cpu::CpuSnapshot;
use super::params::Params;
use super::tcp::TcpLoad;
use super::udp::Flood;
use crate::stats::percentile;

/// Datagrams sent and received in one UDP run.
#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    pub sent: u64,
    pub received: u64,
    pub send_errors: u64,
    pub elapsed: Duration,
    /// How many pods received anything.
    pub pods_reached: usize,
}

impl Delivery {
    pub fn received_pps(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64()
    }

    pub fn sent_pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }

    pub fn loss(&self) -> f64 {
        if self.sent == 0 { 0.0 } else { 1.0 - self.received as f64 / self.sent as f64 }
    }
}

/// CPU per delivered datagram at a fixed offered rate.
#[derive(Clone, Copy, Debug)]
pub struct CpuCost {
    pub delivery: Delivery,
    /// The bed's CPU (this process, ksoftirqd, lb) per delivered datagram.
    pub bed_ns: f64,
    /// Machine-wide busy CPU (/proc/stat) per delivered datagram.
    pub machine_ns: f64,
}

/// Everything measured for one subject in one round.
#[derive(Clone, Debug)]
pub struct SubjectRun {
    pub udp: Delivery,
    pub cpu: CpuCost,
    pub cps: f64,
    pub cps_failed: u64,
    /// Why connections failed (stage and error → count).
    pub cps_errors: std::collections::BTreeMap<String, u64>,
    pub rr_p50_us: f64,
    pub rr_p99_us: f64,
    pub rr_p999_us: f64,
    pub rr_count: usize,
    pub rr_failed: u64,
}

/// Sends `flood` from the client to `targets` and counts what the pods got.
pub fn deliver(bed: &L4Bed, params: &Params, flood: &Flood, targets: &[SocketAddrV4]) -> Result<Delivery> {
    let before = bed.sinks.counts();
    let first_port = bed.source_ports(flood.flows());
    let sent = flood.run(bed.client_ns(), bed.client_ip(), first_port, targets)?;
    // What is still in the queues arrives within the settle pause.
    std::thread::sleep(params.settle());
    let after = bed.sinks.counts();
    let per_pod: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    Ok(Delivery {
        sent: sent.packets,
        received: per_pod.iter().sum(),
        send_errors: sent.errors,
        elapsed: sent.elapsed,
        pods_reached: per_pod.iter().filter(|n| **n > 0).count(),
    })
}

/// The paced flood, with the bed's CPU counted over it.
pub fn cpu_cost(bed: &L4Bed, params: &Params, targets: &[SocketAddrV4], lb_pid: Option<u32>) -> Result<CpuCost> {
    let pids: Vec<u32> = lb_pid.into_iter().collect();
    let start = CpuSnapshot::take(&pids);
    let delivery = deliver(bed, params, &params.paced(), targets)?;
    let spent = start.until(&CpuSnapshot::take(&pids));
    if delivery.received == 0 {
        bail!("no datagram arrived during the CPU measurement ({delivery:?})");
    }
    let per = |d: Duration| d.as_nanos() as f64 / delivery.received as f64;
    Ok(CpuCost { delivery, bed_ns: per(spent.bed), machine_ns: per(spent.machine) })
}

/// All four measurements of a serving subject.
pub fn subject(bed: &L4Bed, params: &Params, lb_pid: Option<u32>) -> Result<SubjectRun> {
    let frontend = [bed.udp_frontend()];
    let udp = deliver(bed, params, &params.flood(), &frontend)?;
    if udp.received == 0 {
        bail!("no datagram reached a pod through {} ({udp:?})", frontend[0]);
    }
    let cpu = cpu_cost(bed, params, &frontend, lb_pid)?;

    let cps_load = TcpLoad {
        threads: params.cps_threads,
        duration: Duration::from_secs_f64(params.cps_duration_s),
        request_bytes: params.tcp_request_bytes,
        rate: None,
    };
    let conns = cps_load.connections(bed.client_ns(), &[bed.tcp_frontend()])?;
    if conns.completed == 0 {
        bail!("no TCP connection completed through {} ({conns:?})", bed.tcp_frontend());
    }
    std::thread::sleep(params.settle());

    let rr_load = TcpLoad {
        threads: params.rr_threads,
        duration: Duration::from_secs_f64(params.rr_duration_s),
        request_bytes: params.tcp_request_bytes,
        rate: None,
    };
    let rr = rr_load.round_trips(bed.client_ns(), &[bed.tcp_frontend()], params.rr_connections_per_thread)?;
    if rr.micros.is_empty() {
        bail!("no TCP round trip completed through {} ({} failed)", bed.tcp_frontend(), rr.failed);
    }
    Ok(SubjectRun {
        udp,
        cpu,
        cps: conns.per_second(),
        cps_failed: conns.failed,
        cps_errors: conns.errors.clone(),
        rr_p50_us: percentile(&rr.micros, 50.0),
        rr_p99_us: percentile(&rr.micros, 99.0),
        rr_p999_us: percentile(&rr.micros, 99.9),
        rr_count: rr.micros.len(),
        rr_failed: rr.failed,
    })
}

/// The routed reference: packet rate and CPU per packet straight to the pods.
pub fn reference(bed: &L4Bed, params: &Params) -> Result<(Delivery, CpuCost)> {
    let pods = bed.udp_pods();
    let udp = deliver(bed, params, &params.flood(), &pods)?;
    let cpu = cpu_cost(bed, params, &pods, None)?;
    Ok((udp, cpu))
}

/// A short paced flood straight to the pods before anything is measured:
/// resolves the neighbours on the way and checks that every pod is reachable.
pub fn warm_up(bed: &L4Bed, params: &Params) -> Result<()> {
    let flood = Flood { duration: Duration::from_millis(300), rate: Some(10_000.0), ..params.paced() };
    let pods = bed.udp_pods();
    let d = deliver(bed, params, &flood, &pods)?;
    if d.pods_reached != pods.len() {
        bail!("warm-up: only {} of {} pods received datagrams ({d:?})", d.pods_reached, pods.len());
    }
    Ok(())
}
