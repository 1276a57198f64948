//! The histograms of the request families: fixed buckets, atomics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::PREFIX;

/// A histogram with `N` finite buckets, updated with atomics.
#[derive(Debug)]
pub(super) struct Histogram<const N: usize> {
    /// Observations per bucket (not cumulative), `+Inf` last.
    buckets: [AtomicU64; N],
    over: AtomicU64,
    /// An `f64`'s bits.
    sum: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Self { buckets: std::array::from_fn(|_| AtomicU64::new(0)), over: AtomicU64::new(0), sum: AtomicU64::new(0) }
    }
}

impl<const N: usize> Histogram<N> {
    pub(super) fn observe(&self, bounds: &[f64; N], value: f64) {
        match bounds.iter().position(|bound| value <= *bound) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let mut current = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match self.sum.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
    }

    /// `_bucket` (cumulative), `_sum` and `_count` lines.
    pub(super) fn encode(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64; N]) {
        let mut cumulative = 0;
        for (bucket, bound) in self.buckets.iter().zip(bounds) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{PREFIX}{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.over.load(Ordering::Relaxed);
        let _ = writeln!(out, "{PREFIX}{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{PREFIX}{name}_sum{{{labels}}} {}", f64::from_bits(self.sum.load(Ordering::Relaxed)));
        let _ = writeln!(out, "{PREFIX}{name}_count{{{labels}}} {cumulative}");
    }
}
