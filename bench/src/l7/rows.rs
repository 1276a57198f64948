//! Samples gathered over the rounds, per metric, scenario and subject,
//! turned into the report's comparisons at the end.

use std::collections::BTreeMap;

use super::proxy::Kind;
use crate::report::{Better, Comparison, Measurement, Report};
use crate::stats::median;

/// What a metric is.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub better: Better,
}

pub const MAX_RPS: Metric =
    Metric { id: "max_rps", title: "Requests/s at fixed concurrency", unit: "req/s", better: Better::Higher };
/// The max-rate runs' req/s over the subject's CPU-seconds per second in
/// the same window (all its processes and threads): what one CPU of the
/// proxy serves, whether or not the proxy was the run's bottleneck.
pub const RPS_PER_CPU: Metric = Metric {
    id: "rps_per_cpu_s",
    title: "Requests per CPU-second of the proxy",
    unit: "req per CPU-s",
    better: Better::Higher,
};
pub const P50: Metric =
    Metric { id: "latency_p50_ms", title: "Latency p50 at a fixed offered rate", unit: "ms", better: Better::Lower };
pub const P99: Metric =
    Metric { id: "latency_p99_ms", title: "Latency p99 at a fixed offered rate", unit: "ms", better: Better::Lower };
pub const RELOAD_FAILED: Metric = Metric {
    id: "reload_failed_requests",
    title: "Failed requests during config changes under load",
    unit: "requests",
    better: Better::Lower,
};
pub const RELOAD_WS: Metric = Metric {
    id: "reload_closed_websockets",
    title: "WebSockets closed during config changes",
    unit: "WebSockets",
    better: Better::Lower,
};
pub const RELOAD_VISIBLE: Metric = Metric {
    id: "reload_visible_ms",
    title: "Time from a config change to its first answer (median)",
    unit: "ms",
    better: Better::Lower,
};
pub const UPGRADE_FAILED: Metric = Metric {
    id: "upgrade_failed_requests",
    title: "Failed requests during upgrades under load",
    unit: "requests",
    better: Better::Lower,
};
pub const MEMORY: Metric =
    Metric { id: "memory_mib", title: "Proxy memory (RSS of all its processes)", unit: "MiB", better: Better::Lower };

/// One subject's samples, and its extra figures' samples.
type Samples = (Vec<f64>, BTreeMap<String, Vec<f64>>);

struct Row {
    metric: Metric,
    scenario: Vec<(String, String)>,
    /// Subject → samples, and extra figures → samples.
    samples: BTreeMap<&'static str, Samples>,
}

#[derive(Default)]
pub struct Rows {
    rows: Vec<Row>,
}

impl Rows {
    /// Adds one sample of `kind` (and its extra figures).
    pub fn add(&mut self, metric: Metric, scenario: &[(&str, String)], kind: Kind, value: f64, extra: &[(&str, f64)]) {
        let scenario: Vec<(String, String)> = scenario.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let i = match self.rows.iter().position(|r| r.metric.id == metric.id && r.scenario == scenario) {
            Some(i) => i,
            None => {
                self.rows.push(Row { metric, scenario, samples: BTreeMap::new() });
                self.rows.len() - 1
            }
        };
        let (values, extras) = self.rows[i].samples.entry(kind.subject()).or_default();
        values.push(value);
        for (k, v) in extra {
            extras.entry(k.to_string()).or_default().push(*v);
        }
    }

    /// Pushes one comparison per row into `report`, lb first.
    pub fn into_report(self, report: &mut Report) {
        for row in self.rows {
            let m = row.metric;
            let mut c = Comparison::new(m.id, m.title, m.unit, m.better, Kind::Lb.subject());
            for (k, v) in &row.scenario {
                c = c.scenario(k, v);
            }
            for kind in Kind::ALL.into_iter().chain([Kind::LbNoRequestMetrics]) {
                let Some((values, extras)) = row.samples.get(kind.subject()) else { continue };
                let mut measurement = Measurement::new(kind.subject(), values.clone());
                for (k, v) in extras {
                    measurement = measurement.with_extra(k, median(v));
                }
                c.push(measurement);
            }
            // A ratio with a count of 0 is left out by `Comparison::finish`.
            report.push(c);
        }
    }
}
