//! Samples gathered over the rounds, turned into the report's comparisons:
//! one per metric × service count, every subject with one sample per round.

use std::collections::BTreeMap;
use std::time::Duration;

use super::measure::{CpuCost, Delivery, SubjectRun};
use super::subject::{ALL, OURS, Subject};
use crate::stats::median;
use crate::{Better, Comparison, Measurement, Report};

/// One subject's rounds at one service count.
#[derive(Default)]
struct Rounds {
    runs: Vec<SubjectRun>,
    setup_s: Vec<f64>,
}

/// Everything measured, by service count.
#[derive(Default)]
pub struct Results {
    subjects: BTreeMap<(usize, &'static str), Rounds>,
    reference: BTreeMap<usize, Vec<(Delivery, CpuCost)>>,
}

/// A metric: id, title, unit, which way is better, the value of one run
/// (`R`: the run type of the part, NodePort or ClusterIP).
pub(super) struct Metric<R> {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub value: fn(&R) -> f64,
}

const METRICS: &[Metric<SubjectRun>] = &[
    Metric {
        id: "udp_pps",
        title: "UDP packets/s forwarded (counted at the pods)",
        unit: "packets/s",
        better: Better::Higher,
        value: |r| r.udp.received_pps(),
    },
    Metric {
        id: "tcp_cps",
        title: "TCP connections/s (connect, 64-byte echo, close)",
        unit: "connections/s",
        better: Better::Higher,
        value: |r| r.cps,
    },
    Metric {
        id: "tcp_rr_p50_us",
        title: "TCP request/response latency, p50",
        unit: "µs",
        better: Better::Lower,
        value: |r| r.rr_p50_us,
    },
    Metric {
        id: "tcp_rr_p99_us",
        title: "TCP request/response latency, p99",
        unit: "µs",
        better: Better::Lower,
        value: |r| r.rr_p99_us,
    },
    Metric {
        id: "tcp_rr_p999_us",
        title: "TCP request/response latency, p99.9",
        unit: "µs",
        better: Better::Lower,
        value: |r| r.rr_p999_us,
    },
    Metric {
        id: "cpu_ns_per_packet",
        title: "CPU per UDP packet forwarded, whole bed at a fixed rate",
        unit: "ns/packet",
        better: Better::Lower,
        value: |r| r.cpu.bed_ns,
    },
];

impl Results {
    pub fn push(&mut self, services: usize, subject: Subject, run: SubjectRun, setup: Duration) {
        let rounds = self.subjects.entry((services, subject.name())).or_default();
        rounds.runs.push(run);
        rounds.setup_s.push(setup.as_secs_f64());
    }

    pub fn push_reference(&mut self, services: usize, udp: Delivery, cpu: CpuCost) {
        self.reference.entry(services).or_default().push((udp, cpu));
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
                        c.push(self.extras(metric.id, n, rounds, m));
                    }
                }
                report.push(c);
            }
        }
    }

    /// What else a reader needs next to the figure: the generator's side,
    /// failures, the routed reference.
    fn extras(&self, metric: &str, n: usize, rounds: &Rounds, m: Measurement) -> Measurement {
        let runs = &rounds.runs;
        let med = |f: fn(&SubjectRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let sum = |f: fn(&SubjectRun) -> f64| runs.iter().map(f).sum::<f64>();
        let reference = self.reference.get(&n).map(Vec::as_slice).unwrap_or_default();
        let ref_med = |f: fn(&(Delivery, CpuCost)) -> f64| median(&reference.iter().map(f).collect::<Vec<_>>());
        match metric {
            "udp_pps" => m
                .with_extra("generator_sent_pps", med(|r| r.udp.sent_pps()))
                .with_extra("generator_sent_packets", sum(|r| r.udp.sent as f64))
                .with_extra("pods_received_packets", sum(|r| r.udp.received as f64))
                .with_extra("loss_fraction", med(|r| r.udp.loss()))
                .with_extra("send_errors", sum(|r| r.udp.send_errors as f64))
                .with_extra("pods_reached_min", runs.iter().map(|r| r.udp.pods_reached as f64).fold(f64::MAX, f64::min))
                .with_extra("routed_reference_pps", ref_med(|(u, _)| u.received_pps()))
                .with_extra("routed_reference_sent_pps", ref_med(|(u, _)| u.sent_pps()))
                .with_extra("setup_s", median(&rounds.setup_s)),
            "tcp_cps" => m.with_extra("failed_connections", sum(|r| r.cps_failed as f64)),
            "tcp_rr_p50_us" | "tcp_rr_p99_us" | "tcp_rr_p999_us" => m
                .with_extra("round_trips", sum(|r| r.rr_count as f64))
                .with_extra("failed_connections", sum(|r| r.rr_failed as f64)),
            "cpu_ns_per_packet" => {
                let reference_ns = ref_med(|(_, c)| c.bed_ns);
                let value = m.value;
                m.with_extra("machine_wide_ns", med(|r| r.cpu.machine_ns))
                    .with_extra("routed_reference_ns", reference_ns)
                    .with_extra("minus_routed_reference_ns", value - reference_ns)
                    .with_extra("offered_pps", med(|r| r.cpu.delivery.sent_pps()))
                    .with_extra("delivered_pps", med(|r| r.cpu.delivery.received_pps()))
                    .with_extra("loss_fraction", med(|r| r.cpu.delivery.loss()))
            }
            _ => m,
        }
    }

    /// One line per subject and service count that had failed connections
    /// (with why) or lost more than 0.5% of its datagrams at the unpaced rate.
    pub fn troubles(&self) -> Vec<String> {
        let mut out = Vec::new();
        for ((n, subject), rounds) in &self.subjects {
            out.extend(failed_short_connections(*n, subject, rounds.runs.iter().map(|r| &r.cps_errors)));
            let loss = median(&rounds.runs.iter().map(|r| r.udp.loss()).collect::<Vec<_>>());
            if loss > 0.005 {
                out.push(format!(
                    "{subject} at {n} services: {:.1}% of the unpaced UDP datagrams were lost on the way (median)",
                    loss * 100.0
                ));
            }
        }
        out
    }

    /// The routed reference's median packet rate at `n` services.
    pub fn reference_pps(&self, n: usize) -> Option<f64> {
        let r = self.reference.get(&n)?;
        Some(median(&r.iter().map(|(u, _)| u.received_pps()).collect::<Vec<_>>()))
    }
}

/// The line [`troubles`](Results::troubles) reports for a subject whose
/// short connections failed at `n` services: how many, by error, over
/// every round. Shared with the ClusterIP part.
pub(super) fn failed_short_connections<'a>(
    n: usize,
    subject: impl std::fmt::Display,
    rounds: impl Iterator<Item = &'a BTreeMap<String, u64>>,
) -> Option<String> {
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    for round in rounds {
        for (e, count) in round {
            *errors.entry(e).or_default() += count;
        }
    }
    let total: u64 = errors.values().sum();
    (total > 0).then(|| format!("{subject} at {n} services: {total} short connections failed ({errors:?})"))
}
