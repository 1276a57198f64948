//! What each profile measures, and how long: every number of the run, so
//! the report's params show it.

use std::time::Duration;

use serde::Serialize;

use super::load::{Proto, Shape};
use super::{reload, upgrade};
use crate::Profile;

/// `few` (the seeds' shape) or `Many(n)` hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SetSize {
    Few,
    Many(usize),
}

/// Upgrades under load (the `few` set).
#[derive(Clone, Debug, Serialize)]
pub struct UpgradeRun {
    pub rounds: usize,
    pub spec: upgrade::Spec,
}

/// Changes under load on one set.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadRun {
    pub set: SetSize,
    pub rounds: usize,
    pub spec: reload::Spec,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Rounds of the throughput and latency runs (subjects interleaved,
    /// their order rotated every round).
    pub rounds: usize,
    pub sets: Vec<SetSize>,
    /// `(protocol, tls)` of the max-rate runs.
    pub max_scenarios: Vec<(Proto, bool)>,
    /// `(protocol, tls)` of the fixed-rate latency runs.
    pub latency_scenarios: Vec<(Proto, bool)>,
    pub max_h1: Shape,
    pub max_h2: Shape,
    /// Offered rate of the latency runs, requests/s (all clients together).
    pub latency_rps: u32,
    pub latency_h1: Shape,
    pub latency_h2: Shape,
    /// The reload tests: which set, how many changes, how many rounds.
    pub reloads: Vec<ReloadRun>,
    /// The upgrade test: a new process takes the ports over, N times.
    pub upgrade: UpgradeRun,
    /// Ingress counts of the memory runs (`SetSize::Many`).
    pub memory_ingresses: Vec<usize>,
    pub memory_rounds: usize,
    /// Echo pods behind every Service (each Service has two of them).
    pub pods: usize,
    /// Which parts run: `traffic`, `reload`, `upgrade`, `memory` (env
    /// `LB_BENCH_L7_PARTS=memory,reload`, default all), to repeat one part.
    pub parts: Vec<String>,
}

impl Plan {
    pub fn new(p: Profile) -> Self {
        // h2 over TLS only: ingress-nginx serves no h2c on its plain port
        // (nginx 1.22 cannot serve HTTP/1.1 and h2c on one port), and
        // browsers speak h2 only over TLS.
        let all = vec![(Proto::H1, false), (Proto::H1, true), (Proto::H2, true)];
        let smoke_pairs = vec![(Proto::H1, false), (Proto::H2, true)];
        let secs = |s: u64| Duration::from_secs(s);
        let run = p.pick(secs(1), secs(2), secs(4));
        let lat_run = p.pick(secs(1), secs(2), secs(4));
        let warm_up = p.pick(Duration::from_millis(500), secs(1), secs(1));
        let latency_rps = 2000;
        let reload = |changes| reload::Spec {
            changes,
            connections: p.pick(2, 8, 8),
            rps_per_connection: 100,
            websockets: p.pick(2, 16, 16),
            ws_interval: Duration::from_millis(100),
            pause: Duration::from_millis(p.pick(50, 100, 100)),
            change_timeout: secs(30),
        };
        let shape =
            |clients, streams, duration, rps| Shape { clients, streams, duration, warm_up, rps_per_client: rps };
        Self {
            rounds: p.pick(1, 1, 3),
            sets: p.pick(
                vec![SetSize::Few],
                vec![SetSize::Few, SetSize::Many(1000)],
                vec![SetSize::Few, SetSize::Many(1000)],
            ),
            max_scenarios: p.pick(smoke_pairs.clone(), all.clone(), all.clone()),
            latency_scenarios: p.pick(vec![(Proto::H1, false)], all.clone(), all),
            max_h1: shape(64, 1, run, None),
            max_h2: shape(16, 4, run, None),
            latency_rps,
            latency_h1: shape(16, 1, lat_run, Some(latency_rps / 16)),
            latency_h2: shape(16, 4, lat_run, Some(latency_rps / 16)),
            reloads: vec![
                ReloadRun { set: SetSize::Few, rounds: p.pick(1, 1, 3), spec: reload(p.pick(3, 30, 100)) },
                // Every change of N hosts costs nginx a reload of N servers
                // and lb a compile of N Ingresses: seconds each, so fewer.
                ReloadRun { set: SetSize::Many(1000), rounds: 1, spec: reload(p.pick(0, 3, 10)) },
            ]
            .into_iter()
            .filter(|r| r.spec.changes > 0)
            .collect(),
            upgrade: UpgradeRun {
                rounds: p.pick(1, 1, 3),
                spec: upgrade::Spec {
                    upgrades: p.pick(1, 3, 10),
                    migrate_req: p.pick(vec![1], vec![0, 1], vec![0, 1]),
                    keep_alive: p.pick(2, 8, 8),
                    rps_per_connection: 100,
                    new_connection: p.pick(2, 4, 4),
                    new_connection_rps: 200,
                    settle: Duration::from_millis(p.pick(300, 500, 500)),
                    timeout: secs(60),
                },
            },
            // 10,000 hosts take nginx minutes to load (an SSL context per
            // server): only in full runs. Memory varies little between
            // rounds: one round.
            memory_ingresses: p.pick(vec![100], vec![1000], vec![1000, 10_000]),
            memory_rounds: 1,
            pods: 4,
            parts: parts(),
        }
    }

    pub fn runs(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }

    pub fn max_shape(&self, proto: Proto) -> &Shape {
        match proto {
            Proto::H1 => &self.max_h1,
            Proto::H2 => &self.max_h2,
        }
    }

    pub fn latency_shape(&self, proto: Proto) -> &Shape {
        match proto {
            Proto::H1 => &self.latency_h1,
            Proto::H2 => &self.latency_h2,
        }
    }
}

/// The parts env `LB_BENCH_L7_PARTS` asks for (all by default).
fn parts() -> Vec<String> {
    let all = ["traffic", "reload", "upgrade", "memory"];
    match std::env::var("LB_BENCH_L7_PARTS") {
        Ok(v) if !v.trim().is_empty() => {
            v.split(',').map(|p| p.trim().to_string()).filter(|p| all.contains(&p.as_str())).collect()
        }
        _ => all.iter().map(|p| p.to_string()).collect(),
    }
}
