//! Samples of the ClusterIP scenario turned into the report's comparisons:
//! one per metric × service count, every subject with one sample per round.

use std::collections::BTreeMap;
use std::time::Duration;

use super::measure::CipRun;
use super::subject::{ALL, OURS, Subject};
use crate::l4::results::Metric;
use crate::stats::median;
use crate::{Better, Comparison, Measurement, Report};

/// One subject's rounds at one service count.
#[derive(Default)]
struct Rounds {
    runs: Vec<CipRun>,
    setup_s: Vec<f64>,
}

/// Everything measured, by service count and subject.
#[derive(Default)]
pub struct Results {
    subjects: BTreeMap<(usize, &'static str), Rounds>,
}

const METRICS: &[Metric<CipRun>] = &[
    Metric {
        id: "tcp_cps",
        title: "TCP connections/s from a pod to a ClusterIP (connect, 64-byte echo, close)",
        unit: "connections/s",
        better: Better::Higher,
        value: |r| r.cps,
    },
    Metric {
        id: "tcp_rr_p50_us",
        title: "TCP request/response latency from a pod to a ClusterIP, kept-alive connections, p50",
        unit: "µs",
        better: Better::Lower,
        value: |r| r.rr_p50_us,
    },
    Metric {
        id: "tcp_rr_p99_us",
        title: "TCP request/response latency from a pod to a ClusterIP, kept-alive connections, p99",
        unit: "µs",
        better: Better::Lower,
        value: |r| r.rr_p99_us,
    },
    Metric {
        id: "tcp_rr_p999_us",
        title: "TCP request/response latency from a pod to a ClusterIP, kept-alive connections, p99.9",
        unit: "µs",
        better: Better::Lower,
        value: |r| r.rr_p999_us,
    },
    Metric {
        id: "cpu_us_per_connection",
        title: "CPU per short connection from a pod to a ClusterIP, whole bed at a fixed rate",
        unit: "µs/connection",
        better: Better::Lower,
        value: |r| r.cpu.bed_us,
    },
];

impl Results {
    pub fn push(&mut self, services: usize, subject: Subject, run: CipRun, setup: Duration) {
        let rounds = self.subjects.entry((services, subject.name())).or_default();
        rounds.runs.push(run);
        rounds.setup_s.push(setup.as_secs_f64());
    }

    /// Adds one comparison per metric and service count to `report`.
    pub fn fill(&self, report: &mut Report, service_counts: &[usize]) {
        for metric in METRICS {
            for &n in service_counts {
                let mut c =
                    Comparison::new(metric.id, metric.title, metric.unit, metric.better, OURS).scenario("services", n);
                for subject in ALL {
                    if let Some(rounds) = self.subjects.get(&(n, subject.name())) {
                        let samples = rounds.runs.iter().map(metric.value).collect();
                        let m = Measurement::new(subject.name(), samples);
                        c.push(self.extras(metric, n, rounds, m));
                    }
                }
                report.push(c);
            }
        }
    }

    /// What else a reader needs next to the figure: failures, how the
    /// connections spread over the pods, the baseline's figure.
    fn extras(&self, metric: &Metric<CipRun>, n: usize, rounds: &Rounds, m: Measurement) -> Measurement {
        let runs = &rounds.runs;
        let med = |f: fn(&CipRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let sum = |f: fn(&CipRun) -> f64| runs.iter().map(f).sum::<f64>();
        let min = |f: fn(&CipRun) -> f64| runs.iter().map(f).fold(f64::MAX, f64::min);
        let direct = self.subjects.get(&(n, Subject::Direct.name())).map(|r| {
            let values: Vec<f64> = r.runs.iter().map(metric.value).collect();
            median(&values)
        });
        let m = match direct {
            Some(d) if m.subject != Subject::Direct.name() => {
                let value = m.value;
                m.with_extra("direct_to_pods", d).with_extra("over_direct", value / d)
            }
            _ => m,
        };
        match metric.id {
            "tcp_cps" => m
                .with_extra("completed_connections", sum(|r| r.cps_completed as f64))
                .with_extra("failed_connections", sum(|r| r.cps_failed as f64))
                .with_extra("pods_reached_min", min(|r| r.pods_reached as f64))
                .with_extra("min_pod_share", min(|r| r.min_pod_share))
                .with_extra("setup_s", median(&rounds.setup_s)),
            "tcp_rr_p50_us" | "tcp_rr_p99_us" | "tcp_rr_p999_us" => m
                .with_extra("round_trips", sum(|r| r.rr_count as f64))
                .with_extra("failed_connections", sum(|r| r.rr_failed as f64)),
            "cpu_us_per_connection" => {
                let m = m
                    .with_extra("offered_cps", med(|r| r.cpu.offered_cps))
                    .with_extra("completed_cps", med(|r| r.cpu.completed_cps()))
                    .with_extra("failed_connections", sum(|r| r.cpu.failed as f64));
                match runs.iter().all(|r| r.cpu.agent_us.is_some()) {
                    true => m.with_extra("lb_agent_us", med(|r| r.cpu.agent_us.unwrap_or_default())),
                    false => m,
                }
            }
            _ => m,
        }
    }

    /// One line per subject and service count that had failed connections
    /// (with why) or left a backend without connections.
    pub fn troubles(&self) -> Vec<String> {
        let mut out = Vec::new();
        for ((n, subject), rounds) in &self.subjects {
            out.extend(crate::l4::results::failed_short_connections(
                *n,
                subject,
                rounds.runs.iter().map(|r| &r.cps_errors),
            ));
            let failed: u64 = rounds.runs.iter().map(|r| r.rr_failed + r.cpu.failed).sum();
            if failed > 0 {
                out.push(format!("{subject} at {n} services: {failed} failures in the latency and CPU runs"));
            }
            let reached = rounds.runs.iter().map(|r| r.pods_reached).min().unwrap_or(0);
            let backends = super::bed::backends().len();
            if reached < backends {
                out.push(format!("{subject} at {n} services: only {reached} of {backends} pods got connections"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Profile;
    use crate::l4::cluster_ip::measure::ConnCost;
    use crate::meta::Meta;

    fn run(cps: f64, p50: f64, cpu_us: f64) -> CipRun {
        CipRun {
            cps,
            cps_completed: cps as u64,
            cps_failed: 0,
            cps_errors: BTreeMap::new(),
            pods_reached: 4,
            min_pod_share: 0.2,
            rr_p50_us: p50,
            rr_p99_us: p50 * 3.0,
            rr_p999_us: p50 * 6.0,
            rr_count: 1000,
            rr_failed: 0,
            cpu: ConnCost {
                offered_cps: 1000.0,
                completed: 1000,
                failed: 0,
                elapsed: Duration::from_secs(1),
                bed_us: cpu_us,
                agent_us: None,
            },
        }
    }

    #[test]
    fn every_metric_compares_lb_with_each_peer_and_the_baseline() {
        let mut results = Results::default();
        for (subject, cps) in [
            (Subject::Lb, 9000.0),
            (Subject::LbGeneric, 9500.0),
            (Subject::Iptables, 6000.0),
            (Subject::Nftables, 7500.0),
            (Subject::Direct, 9000.0),
        ] {
            results.push(1, subject, run(cps, 40.0, 200.0), Duration::from_millis(300));
        }
        let mut report = Report::new("l4-cluster-ip", Profile::Smoke, Meta::for_tests(), serde_json::json!({}));
        results.fill(&mut report, &[1]);
        report.validate().unwrap();
        assert_eq!(report.metrics().len(), METRICS.len());
        let cps = report.of_metric("tcp_cps").next().unwrap();
        assert_eq!(cps.ratios.len(), ALL.len() - 1, "{:?}", cps.ratios);
        let vs_iptables = cps.ratios.iter().find(|r| r.peer == "iptables").unwrap();
        assert!((vs_iptables.times_better - 1.5).abs() < 1e-9);
        let iptables = cps.get("iptables").unwrap();
        assert_eq!(iptables.extra["direct_to_pods"], 9000.0);
        assert!((iptables.extra["over_direct"] - 6000.0 / 9000.0).abs() < 1e-9);
        assert!(!cps.get(Subject::Direct.name()).unwrap().extra.contains_key("over_direct"));
        assert!(results.troubles().is_empty());
    }
}
