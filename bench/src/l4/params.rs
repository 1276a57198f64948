//! What one `lb-bench l4` run does, per profile (everything lands in the
//! report's params).

use std::time::Duration;

use serde::Serialize;

use super::udp::Flood;
use crate::Profile;

#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// Idle background Services present (the two measured ones come on top).
    pub service_counts: Vec<usize>,
    /// Rounds per service count; each round measures every subject once.
    pub rounds: usize,
    pub udp_threads: usize,
    pub udp_flows_per_thread: usize,
    pub udp_payload_bytes: usize,
    pub udp_batch: usize,
    pub udp_duration_s: f64,
    /// Offered rate of the CPU measurement (well below every subject's limit).
    pub cpu_rate_pps: f64,
    pub cpu_duration_s: f64,
    pub cps_threads: usize,
    pub cps_duration_s: f64,
    pub rr_threads: usize,
    pub rr_connections_per_thread: usize,
    pub rr_duration_s: f64,
    pub tcp_request_bytes: usize,
    pub maglev_table_size: u32,
    /// Pause between a subject's setup and its first measurement, and after
    /// each measurement (queues drain, background work of the setup ends).
    pub settle_ms: u64,
}

impl Params {
    pub fn for_profile(p: Profile) -> Self {
        Self {
            service_counts: p.pick(vec![1], vec![1, 1_000], vec![1, 1_000, 10_000]),
            rounds: p.pick(1, 2, 3),
            udp_threads: 2,
            udp_flows_per_thread: 8,
            udp_payload_bytes: 64,
            udp_batch: 64,
            udp_duration_s: p.pick(0.5, 2.0, 3.0),
            cpu_rate_pps: p.pick(20_000.0, 50_000.0, 50_000.0),
            cpu_duration_s: p.pick(0.5, 2.0, 3.0),
            cps_threads: 4,
            cps_duration_s: p.pick(0.5, 2.0, 3.0),
            rr_threads: 1,
            rr_connections_per_thread: 8,
            rr_duration_s: p.pick(0.5, 2.0, 3.0),
            tcp_request_bytes: 64,
            maglev_table_size: 1021,
            settle_ms: p.pick(100, 300, 500),
        }
    }

    /// lb's `--max-services` for `background` idle Services (plus ours).
    pub fn max_services(&self, background: usize) -> usize {
        (background + 64).max(1024)
    }

    /// Echo threads per pod: every client connection may land on one pod.
    pub fn acceptors_per_pod(&self) -> usize {
        self.cps_threads.max(self.rr_threads * self.rr_connections_per_thread)
    }

    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }

    /// The unpaced generator of the packet-rate measurement.
    pub fn flood(&self) -> Flood {
        Flood {
            threads: self.udp_threads,
            flows_per_thread: self.udp_flows_per_thread,
            payload_bytes: self.udp_payload_bytes,
            batch: self.udp_batch,
            duration: Duration::from_secs_f64(self.udp_duration_s),
            rate: None,
        }
    }

    /// The paced generator of the CPU measurement (one thread suffices).
    pub fn paced(&self) -> Flood {
        Flood {
            threads: 1,
            flows_per_thread: self.udp_threads * self.udp_flows_per_thread,
            payload_bytes: self.udp_payload_bytes,
            batch: 16,
            duration: Duration::from_secs_f64(self.cpu_duration_s),
            rate: Some(self.cpu_rate_pps),
        }
    }
}
