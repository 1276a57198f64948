//! What a benchmark run produces: one [`Report`] per bench, made of
//! [`Comparison`]s — one metric in one scenario, measured for lb and for
//! every peer in the same run — written as JSON, a Markdown table per
//! metric and an SVG chart per metric.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::meta::Meta;
use crate::profile::Profile;
use crate::stats;

/// Whether a larger value is better (throughput) or a smaller one (latency, time, memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// One subject's measurement: every sample, and the median that is reported.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    /// Who was measured: `"lb (XDP)"`, `"iptables"`, `"nginx"`, …
    pub subject: String,
    /// The median of `samples`.
    pub value: f64,
    pub min: f64,
    pub max: f64,
    /// One value per round (rounds interleave the subjects).
    pub samples: Vec<f64>,
    /// What else was seen (errors, generator rate, CPU), free-form numbers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

impl Measurement {
    pub fn new(subject: &str, samples: Vec<f64>) -> Self {
        let value = stats::median(&samples);
        let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Self { subject: subject.to_string(), value, min, max, samples, extra: BTreeMap::new() }
    }

    pub fn with_extra(mut self, key: &str, value: f64) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

/// lb against one peer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ratio {
    pub peer: String,
    /// lb's value divided by the peer's.
    pub ours_over_peer: f64,
    /// How many times better lb is (> 1: lb is better, < 1: lb is worse),
    /// whichever direction is better for this metric.
    pub times_better: f64,
}

/// One metric in one scenario, for lb and its peers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// Metric id, the same across the scenarios of a chart: `udp_pps`.
    pub metric: String,
    /// Human title of the metric: `UDP packets/s forwarded`.
    pub title: String,
    pub unit: String,
    pub better: Better,
    /// What varies between comparisons of one metric, e.g. `services = 1000`.
    /// Its values label the chart's groups and the table's rows.
    pub scenario: BTreeMap<String, String>,
    /// The subject that is us; every other one is a peer.
    pub ours: String,
    pub measurements: Vec<Measurement>,
    /// Filled by [`Comparison::finish`].
    #[serde(default)]
    pub ratios: Vec<Ratio>,
}

impl Comparison {
    pub fn new(metric: &str, title: &str, unit: &str, better: Better, ours: &str) -> Self {
        Self {
            metric: metric.to_string(),
            title: title.to_string(),
            unit: unit.to_string(),
            better,
            scenario: BTreeMap::new(),
            ours: ours.to_string(),
            measurements: Vec::new(),
            ratios: Vec::new(),
        }
    }

    pub fn scenario(mut self, key: &str, value: impl ToString) -> Self {
        self.scenario.insert(key.to_string(), value.to_string());
        self
    }

    pub fn push(&mut self, m: Measurement) {
        self.measurements.push(m);
    }

    /// `services=1000, proto=udp` (empty when there is one scenario).
    pub fn scenario_label(&self) -> String {
        self.scenario.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    }

    pub fn get(&self, subject: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.subject == subject)
    }

    /// Computes the ratios of lb to every peer. A ratio that is not a
    /// finite number (a count of 0 on either side) is left out: the table
    /// shows "—" and the absolute values say what happened.
    pub fn finish(&mut self) {
        self.ratios.clear();
        let Some(ours) = self.get(&self.ours).map(|m| m.value) else { return };
        let ratios: Vec<Ratio> = self
            .measurements
            .iter()
            .filter(|m| m.subject != self.ours)
            .map(|peer| {
                let ours_over_peer = ours / peer.value;
                let times_better = match self.better {
                    Better::Higher => ours_over_peer,
                    Better::Lower => peer.value / ours,
                };
                Ratio { peer: peer.subject.clone(), ours_over_peer, times_better }
            })
            .filter(|r| r.ours_over_peer.is_finite() && r.times_better.is_finite() && r.times_better > 0.0)
            .collect();
        self.ratios = ratios;
    }
}

/// Everything one `lb-bench BENCH` run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// `l4`, `l7` or `control`.
    pub bench: String,
    pub profile: Profile,
    pub meta: Meta,
    /// Every parameter of the run (durations, sizes, concurrency, configs).
    pub params: serde_json::Value,
    pub comparisons: Vec<Comparison>,
    /// Caveats the run wants a reader to know (generator limits, skipped peers).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(bench: &str, profile: Profile, meta: Meta, params: serde_json::Value) -> Self {
        Self { bench: bench.to_string(), profile, meta, params, comparisons: Vec::new(), notes: Vec::new() }
    }

    pub fn push(&mut self, mut c: Comparison) {
        c.finish();
        self.comparisons.push(c);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Metric ids in first-seen order.
    pub fn metrics(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for c in &self.comparisons {
            if !out.contains(&c.metric.as_str()) {
                out.push(&c.metric);
            }
        }
        out
    }

    pub fn of_metric<'a>(&'a self, metric: &'a str) -> impl Iterator<Item = &'a Comparison> + 'a {
        self.comparisons.iter().filter(move |c| c.metric == metric)
    }

    /// Checks that the report is usable: every comparison has lb's value,
    /// at least one comparison has a peer (a few figures, such as Maglev
    /// build times, have none to compare with), and every value is a finite
    /// number. The smoke tests and the writer call it, so a bench that
    /// silently measured nothing fails.
    pub fn validate(&self) -> Result<()> {
        if self.comparisons.is_empty() {
            bail!("{} report has no comparisons", self.bench);
        }
        if self.comparisons.iter().all(|c| c.measurements.len() < 2) {
            bail!("{} report compares with no peer", self.bench);
        }
        for c in &self.comparisons {
            let label = format!("{} [{}]", c.metric, c.scenario_label());
            if c.get(&c.ours).is_none() {
                bail!("{label}: no measurement of {}", c.ours);
            }
            for m in &c.measurements {
                if m.samples.is_empty() || !m.value.is_finite() || m.value < 0.0 {
                    bail!("{label}: {} has no usable value ({:?})", m.subject, m.samples);
                }
            }
        }
        Ok(())
    }

    /// Writes `DIR/{bench}.json`, `DIR/{bench}.md` and one
    /// `DIR/{bench}-{metric}.svg` per metric; returns the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.validate()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files = Vec::new();
        let json = dir.join(format!("{}.json", self.bench));
        std::fs::write(&json, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
        files.push(json);
        for metric in self.metrics() {
            let svg = dir.join(self.chart_file(metric));
            crate::chart::bar_chart(self, metric, &svg).with_context(|| format!("drawing {}", svg.display()))?;
            files.push(svg);
        }
        let md = dir.join(format!("{}.md", self.bench));
        std::fs::write(&md, crate::markdown::report(self)).with_context(|| format!("writing {}", md.display()))?;
        files.push(md);
        Ok(files)
    }

    /// `{bench}-{metric}.svg`.
    pub fn chart_file(&self, metric: &str) -> String {
        format!("{}-{metric}.svg", self.bench)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comparison(better: Better) -> Comparison {
        let mut c = Comparison::new("m", "M", "x/s", better, "lb").scenario("services", 1);
        c.push(Measurement::new("lb", vec![10.0, 30.0, 20.0]));
        c.push(Measurement::new("peer", vec![5.0]));
        c.finish();
        c
    }

    #[test]
    fn ratios_say_which_way_is_better() {
        let c = comparison(Better::Higher);
        assert_eq!(c.get("lb").unwrap().value, 20.0);
        assert_eq!(c.ratios[0].ours_over_peer, 4.0);
        assert_eq!(c.ratios[0].times_better, 4.0);
        let c = comparison(Better::Lower);
        assert_eq!(c.ratios[0].ours_over_peer, 4.0);
        assert_eq!(c.ratios[0].times_better, 0.25);
    }

    #[test]
    fn zero_counts_give_no_ratio_and_the_report_reads_back() {
        let mut c = Comparison::new("failed", "Failed", "requests", Better::Lower, "lb");
        c.push(Measurement::new("lb", vec![0.0]));
        c.push(Measurement::new("nginx", vec![32.0]));
        c.push(Measurement::new("haproxy", vec![0.0]));
        let mut r = Report::new("l7", Profile::Smoke, Meta::for_tests(), serde_json::json!({}));
        r.push(c);
        assert!(r.comparisons[0].ratios.is_empty(), "{:?}", r.comparisons[0].ratios);
        let dir = tempfile::tempdir().unwrap();
        r.write(dir.path()).unwrap();
        let back = Report::read(&dir.path().join("l7.json")).unwrap();
        back.validate().unwrap();
    }

    #[test]
    fn a_report_without_peers_or_values_is_refused() {
        let meta = Meta::for_tests();
        let mut r = Report::new("x", Profile::Smoke, meta.clone(), serde_json::json!({}));
        assert!(r.validate().is_err());
        let mut c = Comparison::new("m", "M", "x/s", Better::Higher, "lb");
        c.push(Measurement::new("lb", vec![1.0]));
        r.push(c);
        assert!(r.validate().is_err(), "no peer anywhere");
        let mut r = Report::new("x", Profile::Smoke, meta, serde_json::json!({}));
        r.push(comparison(Better::Higher));
        r.validate().unwrap();
        r.comparisons[0].measurements[1].samples.clear();
        assert!(r.validate().is_err(), "a peer without samples");
    }
}
