//! Maglev row build time: `lb_common::maglev::build_table` — what lb's
//! compiler runs for every service port on every snapshot — for table sizes
//! M and backend counts. No peer: kube-proxy has no consistent hashing.

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use lb_common::maglev::{MaglevBackend, build_table};

use super::Plan;
use crate::report::{Better, Comparison, Measurement, Report};

/// The subject: lb's Maglev builder.
const SUBJECT: &str = "lb (Maglev row)";

pub fn measure(plan: &Plan, report: &mut Report) -> Result<()> {
    for &size in &plan.maglev_sizes {
        for &count in &plan.maglev_backends {
            let samples = build_times(size, count, plan.maglev_builds)?;
            let mut c = Comparison::new("maglev_build_ms", "Building one Maglev row", "ms", Better::Lower, SUBJECT)
                .scenario("M", size)
                .scenario("backends", count);
            c.push(Measurement::new(SUBJECT, samples));
            report.push(c);
        }
    }
    Ok(())
}

/// Milliseconds of `builds` builds of a row of `size` slots over `count`
/// backends named like endpoints (`10.x.y.z:8080`).
fn build_times(size: u32, count: usize, builds: usize) -> Result<Vec<f64>> {
    let names: Vec<String> = (0..count)
        .map(|i| {
            let [_, b, c, d] = (u32::from(std::net::Ipv4Addr::new(10, 244, 0, 2)) + i as u32).to_be_bytes();
            format!("10.{b}.{c}.{d}:8080")
        })
        .collect();
    let backends: Vec<MaglevBackend<'_>> =
        names.iter().map(|n| MaglevBackend { name: n.as_bytes(), weight: 1 }).collect();
    let mut samples = Vec::with_capacity(builds);
    for _ in 0..builds {
        let started = Instant::now();
        let row = build_table(black_box(&backends), size).with_context(|| format!("M = {size}, {count} backends"))?;
        let took = started.elapsed();
        ensure!(row.len() == size as usize, "a row of {} slots, not {size}", row.len());
        black_box(row);
        samples.push(took.as_secs_f64() * 1e3);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_are_timed() {
        let samples = build_times(1021, 10, 2).unwrap();
        assert_eq!(samples.len(), 2);
        assert!(samples.iter().all(|&s| s > 0.0));
    }
}
