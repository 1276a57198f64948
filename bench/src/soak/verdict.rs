//! The soak's pass criteria, as pure functions over what was recorded.
//!
//! **Flat** (the rule BENCHMARKS.md states): the samples after the warm-up
//! are cut by time into thirds; the last third's highest value may exceed
//! the first third's highest value by at most a fixed slack (fds: a count;
//! RSS: a fraction of the first third's). Highest values, not averages,
//! because a leak raises the ceiling; the first third after the warm-up,
//! not the warm-up, because pools, caches and allocator arenas fill during
//! the first seconds of load. Each third needs at least
//! [`MIN_SAMPLES_PER_THIRD`] samples, else the series cannot be judged and
//! fails.

use serde::{Deserialize, Serialize};

/// Fewer samples than this in a third: not judged (fails).
pub const MIN_SAMPLES_PER_THIRD: usize = 3;

/// How much the last third may exceed the first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Allowance {
    /// At most this much more (fds).
    Absolute(f64),
    /// At most this fraction more (RSS).
    Fraction(f64),
}

impl Allowance {
    fn limit(self, first_max: f64) -> f64 {
        match self {
            Allowance::Absolute(slack) => first_max + slack,
            Allowance::Fraction(f) => first_max * (1.0 + f),
        }
    }
}

/// One agent's series judged for flatness.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flatness {
    /// Whose series (`node2`: the agent that is never restarted).
    pub agent: String,
    /// `fds` or `rss_mib`.
    pub metric: String,
    /// The judged window, seconds from the start of the load.
    pub from_s: f64,
    pub to_s: f64,
    pub first_third_max: f64,
    pub last_third_max: f64,
    /// The highest the last third may go.
    pub limit: f64,
    pub samples: usize,
    pub pass: bool,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Judges `series` (time in seconds, value) between `warm_up_s` and `end_s`.
pub fn flatness(
    agent: &str,
    metric: &str,
    series: &[(f64, f64)],
    warm_up_s: f64,
    end_s: f64,
    allow: Allowance,
) -> Flatness {
    let third = (end_s - warm_up_s).max(0.0) / 3.0;
    let in_window = |from: f64, to: f64| series.iter().filter(move |(t, _)| *t >= from && *t <= to).map(|(_, v)| *v);
    let first: Vec<f64> = in_window(warm_up_s, warm_up_s + third).collect();
    let last: Vec<f64> = in_window(end_s - third, end_s).collect();
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    let (first_max, last_max) = (max(&first), max(&last));
    let limit = allow.limit(first_max);
    let mut out = Flatness {
        agent: agent.to_string(),
        metric: metric.to_string(),
        from_s: warm_up_s,
        to_s: end_s,
        first_third_max: first_max,
        last_third_max: last_max,
        limit,
        samples: in_window(warm_up_s, end_s).count(),
        pass: false,
        reason: String::new(),
    };
    if first.len() < MIN_SAMPLES_PER_THIRD || last.len() < MIN_SAMPLES_PER_THIRD {
        out.reason = format!(
            "too few samples to judge ({} in the first third, {} in the last; {MIN_SAMPLES_PER_THIRD} needed)",
            first.len(),
            last.len()
        );
    } else if last_max > limit {
        out.reason = format!("grew: the last third reached {last_max:.1}, above the limit {limit:.1}");
    } else {
        out.pass = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..=120).map(|t| (f64::from(t), values(f64::from(t)))).collect()
    }

    #[test]
    fn a_level_series_with_noise_is_flat() {
        let s = series(|t| 40.0 + (t * 7.0) % 5.0);
        let f = flatness("node2", "fds", &s, 30.0, 120.0, Allowance::Absolute(8.0));
        assert!(f.pass, "{f:?}");
        assert_eq!((f.first_third_max, f.last_third_max, f.limit), (44.0, 44.0, 52.0));
        assert_eq!(f.samples, 91);
    }

    #[test]
    fn the_warm_up_is_not_judged() {
        // Fills to 100 during the first 60 s, then stays.
        let s = series(|t| if t < 60.0 { t * 100.0 / 60.0 } else { 100.0 });
        assert!(flatness("node2", "rss_mib", &s, 60.0, 120.0, Allowance::Fraction(0.10)).pass);
        assert!(!flatness("node2", "rss_mib", &s, 0.0, 120.0, Allowance::Fraction(0.10)).pass);
    }

    #[test]
    fn a_slow_leak_fails() {
        // One fd every 3 s: the last third's peak is 20 above the first's.
        let s = series(|t| 40.0 + (t / 3.0).floor());
        let f = flatness("node2", "fds", &s, 30.0, 120.0, Allowance::Absolute(16.0));
        assert!(!f.pass);
        assert!(f.reason.contains("grew"), "{}", f.reason);
        // 17% more memory fails a 10% allowance, 2% passes it.
        let s = series(|t| 100.0 + t / 3.0);
        assert!(!flatness("node2", "rss_mib", &s, 30.0, 120.0, Allowance::Fraction(0.10)).pass);
        let s = series(|t| 100.0 + t / 24.0);
        assert!(flatness("node2", "rss_mib", &s, 30.0, 120.0, Allowance::Fraction(0.10)).pass);
    }

    #[test]
    fn too_few_samples_fail() {
        let s = vec![(31.0, 1.0), (119.0, 1.0)];
        let f = flatness("node2", "fds", &s, 30.0, 120.0, Allowance::Absolute(16.0));
        assert!(!f.pass && f.reason.contains("too few"), "{f:?}");
    }
}
