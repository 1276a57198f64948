//! What a soak run recorded, and how it is written: `soak.json` (every
//! parameter, every sample and failure), `soak.md` (the tables) and
//! `soak-agents.svg` (fds, RSS and conntrack over time).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::agents::{ConntrackSample, LONG_LIVED, Restart, Sample};
use super::load::{Failure, LoadTally};
use super::verdict::Flatness;
use crate::Profile;
use crate::markdown::fmt_value;
use crate::meta::Meta;

/// The report's name: `soak.json`, the `soak` section of BENCHMARKS.md.
pub const NAME: &str = "soak";
/// The chart's file.
pub const CHART: &str = "soak-agents.svg";
/// Failures listed in the Markdown (all are in the JSON, up to its cap).
const LISTED_FAILURES: usize = 20;

/// Everything one soak run saw.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SoakReport {
    pub profile: Profile,
    pub meta: Meta,
    pub params: serde_json::Value,
    /// Seconds the load ran.
    pub load_s: f64,
    pub loads: Vec<LoadTally>,
    /// Every failure (up to a cap), with its time.
    pub failures: Vec<Failure>,
    /// Files written into the manifests directory (four per step).
    pub changes: u64,
    pub change_steps: u64,
    pub restarts: Vec<Restart>,
    pub samples: Vec<Sample>,
    pub conntrack: Vec<ConntrackSample>,
    pub flatness: Vec<Flatness>,
    /// Whether every criterion held.
    pub pass: bool,
    /// Why it did not (empty when it passed).
    pub failed_criteria: Vec<String>,
    pub notes: Vec<String>,
}

impl SoakReport {
    pub fn attempts(&self) -> u64 {
        self.loads.iter().map(|l| l.attempts).sum()
    }

    pub fn failed(&self) -> u64 {
        self.loads.iter().map(|l| l.failed).sum()
    }

    /// Writes `DIR/soak.json`, `DIR/soak.md` and the chart; the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join(format!("{NAME}.json"));
        std::fs::write(&json, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
        let svg = dir.join(CHART);
        super::chart::draw(self, &svg).with_context(|| format!("drawing {}", svg.display()))?;
        let md = dir.join(format!("{NAME}.md"));
        let text =
            format!("_{} run of `lb-bench soak`: {}._\n\n{}", self.profile, self.meta.summary(), self.tables(""));
        std::fs::write(&md, text).with_context(|| format!("writing {}", md.display()))?;
        Ok(vec![json, svg, md])
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The verdict line.
    pub fn verdict(&self) -> String {
        let mut out = format!(
            "**{}**: {} of {} connections, exchanges and requests failed",
            if self.pass { "PASS" } else { "FAIL" },
            self.failed(),
            fmt_count(self.attempts())
        );
        for f in &self.flatness {
            let _ = write!(
                out,
                "; {} {} {} → {} (limit {}){}",
                f.agent,
                f.metric,
                fmt_value(f.first_third_max),
                fmt_value(f.last_third_max),
                fmt_value(f.limit),
                if f.pass { "" } else { " NOT FLAT" }
            );
        }
        out.push('.');
        for c in &self.failed_criteria {
            let _ = write!(out, "\n- {c}");
        }
        out
    }

    /// The Markdown body: verdict, tables, chart (`chart_prefix` + file),
    /// failures, notes.
    pub fn tables(&self, chart_prefix: &str) -> String {
        let mut out = format!("{}\n\n", self.verdict());
        out.push_str(
            "| load | layer | rate/s | attempts | failed | retried | reopened |\n|---|---|---|---|---|---|---|\n",
        );
        for l in &self.loads {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                l.name,
                l.layer,
                fmt_value(l.rate),
                fmt_count(l.attempts),
                l.failed,
                l.retried,
                l.reopened
            );
        }
        let _ = writeln!(out, "| **all** | | | {} | {} | | |\n", fmt_count(self.attempts()), self.failed());
        let _ = writeln!(
            out,
            "{} changes in {} steps (an EndpointSlice file, a Service, an Ingress and a Secret each step); {} \
             restarts of node1's agent:\n",
            fmt_count(self.changes),
            self.change_steps,
            self.restarts.len()
        );
        out.push_str(
            "| at (s) | PID old → new | new agent ready after (s) | old agent's drain (s) | data path taken over after SIGTERM (s) | old agent ended |\n|---|---|---|---|---|---|\n",
        );
        for r in &self.restarts {
            let _ = writeln!(
                out,
                "| {:.0} | {} → {} | {:.2} | {:.2} | {:.2} | {} |",
                r.t_s, r.old_pid, r.new_pid, r.ready_s, r.stop_s, r.takeover_s, r.old_exit
            );
        }
        out.push_str("\nFlatness after the warm-up (last third's highest against the first third's):\n\n");
        out.push_str("| agent | metric | judged (s) | first third's highest | last third's highest | limit | flat |\n|---|---|---|---|---|---|---|\n");
        for f in &self.flatness {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0}–{:.0} | {} | {} | {} | {} |",
                f.agent,
                f.metric,
                f.from_s,
                f.to_s,
                fmt_value(f.first_third_max),
                fmt_value(f.last_third_max),
                fmt_value(f.limit),
                if f.pass { "yes".to_string() } else { format!("**no**: {}", f.reason) }
            );
        }
        out.push_str("\nEach agent's process (node1: one row per agent generation):\n\n");
        out.push_str(
            "| node | PID | from–to (s) | fds lowest–highest | RSS lowest–highest (MiB) |\n|---|---|---|---|---|\n",
        );
        for g in generations(&self.samples) {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0}–{:.0} | {}–{} | {:.1}–{:.1} |",
                g.node,
                g.pid,
                g.from_s,
                g.to_s,
                g.fds.0,
                g.fds.1,
                g.rss_kib.0 as f64 / 1024.0,
                g.rss_kib.1 as f64 / 1024.0
            );
        }
        out.push_str("\nConntrack fill (`lb_conntrack_entries` of each node's agent):\n\n");
        out.push_str(
            "| node | first | last | highest | capacity | highest fill | packets of flows whose backend had left (`flow_backend_gone`) |\n|---|---|---|---|---|---|---|\n",
        );
        for node in super::agents::NODES {
            let series: Vec<&ConntrackSample> = self.conntrack.iter().filter(|c| c.node == node).collect();
            let (Some(first), Some(last)) = (series.first(), series.last()) else { continue };
            let max = series.iter().map(|c| c.entries).max().unwrap_or(0);
            let _ = writeln!(
                out,
                "| {node} | {} | {} | {} | {} | {:.1}% | {} |",
                fmt_count(first.entries),
                fmt_count(last.entries),
                fmt_count(max),
                fmt_count(last.capacity),
                100.0 * max as f64 / last.capacity.max(1) as f64,
                last.backend_gone.saturating_sub(first.backend_gone)
            );
        }
        let _ = writeln!(out, "\n![The agents' fds, RSS and conntrack over the run]({chart_prefix}{CHART})\n");
        if !self.failures.is_empty() {
            let _ = writeln!(out, "Failures (the first {LISTED_FAILURES}; all in the JSON):\n");
            out.push_str("| t (s) | load | error | just before |\n|---|---|---|---|\n");
            for f in self.failures.iter().take(LISTED_FAILURES) {
                let error = f.error.replace('|', "\\|").replace('\n', " ");
                let _ = writeln!(out, "| {:.2} | {} | {error} | {} |", f.t_s, f.load, f.context);
            }
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push_str("Notes from the run:\n\n");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
            out.push('\n');
        }
        out
    }
}

/// One agent process's samples, summarised.
pub struct Generation {
    pub node: String,
    pub pid: u32,
    pub from_s: f64,
    pub to_s: f64,
    pub fds: (u64, u64),
    pub rss_kib: (u64, u64),
}

/// The samples grouped by agent process, node by node, in time order.
pub fn generations(samples: &[Sample]) -> Vec<Generation> {
    let mut out: Vec<Generation> = Vec::new();
    for node in super::agents::NODES {
        for s in samples.iter().filter(|s| s.node == node) {
            match out.last_mut() {
                Some(g) if g.node == s.node && g.pid == s.pid => {
                    g.to_s = s.t_s;
                    g.fds = (g.fds.0.min(s.fds), g.fds.1.max(s.fds));
                    g.rss_kib = (g.rss_kib.0.min(s.rss_kib), g.rss_kib.1.max(s.rss_kib));
                }
                _ => out.push(Generation {
                    node: s.node.clone(),
                    pid: s.pid,
                    from_s: s.t_s,
                    to_s: s.t_s,
                    fds: (s.fds, s.fds),
                    rss_kib: (s.rss_kib, s.rss_kib),
                }),
            }
        }
    }
    out
}

/// The long-lived agent's series of one metric: (seconds, value).
pub fn long_lived_series(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    samples.iter().filter(|s| s.node == LONG_LIVED).map(|s| (s.t_s, value(s))).collect()
}

/// A count with thousands separated (exact, unlike [`fmt_value`]).
fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, node: &str, pid: u32, fds: u64) -> Sample {
        Sample { t_s: t, node: node.into(), pid, fds, rss_kib: 1024 * fds }
    }

    #[test]
    fn samples_group_by_agent_process() {
        let samples = [
            sample(0.0, "node1", 10, 40),
            sample(0.0, "node2", 20, 41),
            sample(1.0, "node1", 10, 44),
            sample(1.0, "node2", 20, 39),
            sample(2.0, "node1", 11, 30),
        ];
        let g = generations(&samples);
        let rows: Vec<(&str, u32, (u64, u64))> = g.iter().map(|g| (g.node.as_str(), g.pid, g.fds)).collect();
        assert_eq!(rows, [("node1", 10, (40, 44)), ("node1", 11, (30, 30)), ("node2", 20, (39, 41))]);
        assert_eq!(long_lived_series(&samples, |s| s.fds as f64), [(0.0, 41.0), (1.0, 39.0)]);
        assert_eq!(fmt_count(1_234_567), "1,234,567");
        assert_eq!(fmt_count(12), "12");
    }
}
