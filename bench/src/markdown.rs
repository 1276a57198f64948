//! Markdown for a report: a table per metric (absolute values and the
//! ratio of lb to every peer), and the generated section of BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::report::{Better, Report};

/// The whole report as Markdown, charts linked beside it.
pub fn report(r: &Report) -> String {
    let mut out = String::new();
    // A report of one part of a bench is named `{bench}-{part}`.
    let command = match r.bench.split_once('-') {
        Some((bench, part)) => format!("{bench} --only {part}"),
        None => r.bench.clone(),
    };
    let _ = writeln!(out, "_{} run of `lb-bench {command}`: {}._\n", r.profile, r.meta.summary());
    out.push_str(&tables(r, ""));
    out
}

/// One table per metric, each followed by its chart (`chart_prefix` +
/// file name), then the run's notes.
pub fn tables(r: &Report, chart_prefix: &str) -> String {
    let mut out = String::new();
    for metric in r.metrics() {
        let comparisons: Vec<_> = r.of_metric(metric).collect();
        let first = comparisons[0];
        let direction = match first.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        };
        let _ = writeln!(out, "#### {} ({}, {direction})\n", first.title, first.unit);
        let subjects = subjects(&comparisons);
        let peers: Vec<&String> = subjects.iter().filter(|s| **s != first.ours).collect();
        let mut header = vec!["scenario".to_string()];
        header.extend(subjects.iter().cloned());
        header.extend(peers.iter().map(|p| format!("{} vs {p}", first.ours)));
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for c in &comparisons {
            let mut row = vec![if c.scenario.is_empty() { "—".to_string() } else { c.scenario_label() }];
            for s in &subjects {
                row.push(c.get(s).map(|m| fmt_value(m.value)).unwrap_or_else(|| "—".into()));
            }
            for p in &peers {
                row.push(
                    c.ratios
                        .iter()
                        .find(|x| &&x.peer == p)
                        .map(|x| fmt_times(x.times_better))
                        .unwrap_or_else(|| "—".into()),
                );
            }
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        let _ = writeln!(out, "\n![{}]({chart_prefix}{})\n", first.title, r.chart_file(metric));
    }
    if !r.notes.is_empty() {
        out.push_str("Notes from the run:\n\n");
        for n in &r.notes {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }
    out
}

/// Subjects in first-seen order across the comparisons, ours first.
pub(crate) fn subjects(comparisons: &[&crate::report::Comparison]) -> Vec<String> {
    let mut out = vec![comparisons[0].ours.clone()];
    for c in comparisons {
        for m in &c.measurements {
            if !out.contains(&m.subject) {
                out.push(m.subject.clone());
            }
        }
    }
    out
}

/// `×3.2 better` / `×0.8 (worse)`.
pub fn fmt_times(t: f64) -> String {
    if !t.is_finite() {
        "—".into()
    } else if t >= 1.0 {
        format!("{:.2}× better", t)
    } else {
        format!("{:.2}× (worse)", t)
    }
}

/// Three significant digits, thousands separated.
pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let digits = a.log10().floor() as i32 + 1;
        let keep = 10f64.powi(digits - 3);
        group_thousands(((v / keep).round() * keep) as i64)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{v:.3}")
    }
}

fn group_thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

const BEGIN: &str = "<!-- BEGIN generated: ";
const END: &str = "<!-- END generated: ";

/// Replaces the generated section of `bench` in BENCHMARKS.md (between
/// `<!-- BEGIN generated: l4 -->` and `<!-- END generated: l4 -->`) with the
/// report's tables, charts linked from `chart_dir` (relative to the file).
pub fn update_benchmarks_md(path: &Path, r: &Report, chart_dir: &str) -> Result<()> {
    let mut body = format!("\n_{} run: {}._\n\n", r.profile, r.meta.summary());
    body.push_str(&tables(r, chart_dir));
    replace_generated(path, &r.bench, &body)
}

/// Replaces what lies between `<!-- BEGIN generated: NAME -->` and
/// `<!-- END generated: NAME -->` in the file at `path` with `body`.
pub fn replace_generated(path: &Path, name: &str, body: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let begin = format!("{BEGIN}{name} -->");
    let end = format!("{END}{name} -->");
    let (Some(b), Some(e)) = (text.find(&begin), text.find(&end)) else {
        bail!("{} has no `{begin}` … `{end}` section", path.display());
    };
    if e < b {
        bail!("{}: `{end}` comes before `{begin}`", path.display());
    }
    let new = format!("{}{begin}{body}{}", &text[..b], &text[e..]);
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Meta;
    use crate::profile::Profile;
    use crate::report::{Comparison, Measurement};

    #[test]
    fn values_are_readable() {
        assert_eq!(fmt_value(1_234_567.0), "1,230,000");
        assert_eq!(fmt_value(45_678.0), "45,700");
        assert_eq!(fmt_value(123.4), "123");
        assert_eq!(fmt_value(12.34), "12.3");
        assert_eq!(fmt_value(0.01234), "0.012");
        assert_eq!(fmt_times(2.5), "2.50× better");
        assert_eq!(fmt_times(0.5), "0.50× (worse)");
    }

    #[test]
    fn the_generated_section_is_replaced_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("B.md");
        std::fs::write(&md, "intro\n<!-- BEGIN generated: l4 -->\nold\n<!-- END generated: l4 -->\noutro\n").unwrap();
        let mut r = Report::new("l4", Profile::Full, Meta::for_tests(), serde_json::json!({}));
        let mut c = Comparison::new("pps", "Packets", "packets/s", Better::Higher, "lb").scenario("services", 1);
        c.push(Measurement::new("lb", vec![2000.0]));
        c.push(Measurement::new("iptables", vec![1000.0]));
        r.push(c);
        update_benchmarks_md(&md, &r, "bench/results/full/").unwrap();
        let text = std::fs::read_to_string(&md).unwrap();
        assert!(text.starts_with("intro\n<!-- BEGIN generated: l4 -->"), "{text}");
        assert!(text.ends_with("<!-- END generated: l4 -->\noutro\n"), "{text}");
        assert!(!text.contains("old"));
        assert!(text.contains("| services=1 | 2,000 | 1,000 | 2.00× better |"), "{text}");
        assert!(text.contains("](bench/results/full/l4-pps.svg)"), "{text}");
    }
}
