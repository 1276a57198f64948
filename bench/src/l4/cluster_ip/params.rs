//! What one run of the ClusterIP scenario does, per profile (everything
//! lands in the report's params).

use std::time::Duration;

use serde::Serialize;

use crate::Profile;
use crate::l4::tcp::TcpLoad;

#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// Idle background Services present (the measured one comes on top).
    pub service_counts: Vec<usize>,
    /// Rounds per service count; each round measures every subject once.
    pub rounds: usize,
    pub cps_threads: usize,
    pub cps_duration_s: f64,
    pub rr_threads: usize,
    pub rr_connections_per_thread: usize,
    pub rr_duration_s: f64,
    /// Offered rate of the CPU measurement (well below every subject's limit).
    pub cpu_rate_cps: f64,
    pub cpu_threads: usize,
    pub cpu_duration_s: f64,
    pub tcp_request_bytes: usize,
    pub maglev_table_size: u32,
    /// Pause between a subject's setup and its first measurement, and after
    /// each measurement.
    pub settle_ms: u64,
}

impl Params {
    pub fn for_profile(p: Profile) -> Self {
        Self {
            // Not 10,000 by default: nft alone takes ~45 s to load that many
            // here, at every round (`--services 10000` asks for it). Quick
            // takes one count, so that all of `l4 --quick` stays near 5 minutes.
            service_counts: p.pick(vec![1], vec![1_000], vec![1, 1_000]),
            rounds: p.pick(1, 1, 4),
            cps_threads: 4,
            cps_duration_s: p.pick(0.5, 1.0, 1.5),
            rr_threads: 1,
            rr_connections_per_thread: 8,
            rr_duration_s: p.pick(0.5, 1.0, 1.5),
            cpu_rate_cps: p.pick(500.0, 2_000.0, 2_000.0),
            cpu_threads: 2,
            cpu_duration_s: p.pick(0.5, 1.0, 1.5),
            tcp_request_bytes: 64,
            maglev_table_size: 1021,
            settle_ms: p.pick(100, 200, 300),
        }
    }

    /// lb's `--max-services` for `background` idle Services (plus ours).
    pub fn max_services(&self, background: usize) -> usize {
        (background + 64).max(1024)
    }

    /// Echo threads per pod: every client connection may land on one pod.
    pub fn acceptors_per_pod(&self) -> usize {
        self.cps_threads.max(self.rr_threads * self.rr_connections_per_thread).max(self.cpu_threads)
    }

    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }

    /// Short connections as fast as they go.
    pub fn cps_load(&self) -> TcpLoad {
        TcpLoad {
            threads: self.cps_threads,
            duration: Duration::from_secs_f64(self.cps_duration_s),
            request_bytes: self.tcp_request_bytes,
            rate: None,
        }
    }

    /// Request/response on kept-alive connections.
    pub fn rr_load(&self) -> TcpLoad {
        TcpLoad {
            threads: self.rr_threads,
            duration: Duration::from_secs_f64(self.rr_duration_s),
            request_bytes: self.tcp_request_bytes,
            rate: None,
        }
    }

    /// Short connections at the fixed rate of the CPU measurement.
    pub fn paced_load(&self) -> TcpLoad {
        TcpLoad {
            threads: self.cpu_threads,
            duration: Duration::from_secs_f64(self.cpu_duration_s),
            request_bytes: self.tcp_request_bytes,
            rate: Some(self.cpu_rate_cps),
        }
    }
}
