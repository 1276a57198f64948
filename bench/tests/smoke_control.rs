//! `lb-bench control --profile smoke`: the control-plane bench runs end to
//! end (real BPF maps, iptables-restore and nft in its own namespaces) and
//! writes a report that has every subject's change time. Needs root: fails,
//! never skips, without it.

use std::process::Command;

use lb_bench::Report;
use lb_bench::control::{IPTABLES, NFT, OURS};

#[test]
fn control_bench_smoke_run_writes_a_full_report() {
    lb_testbed::require_root().expect("the control bench needs root");
    let out = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb-bench"))
        .args(["control", "--profile", "smoke", "--out"])
        .arg(out.path())
        .spawn()
        .expect("starting lb-bench");
    let namespace_prefix = format!("lbbench-kp-{}-", child.id());
    let status = child.wait().expect("waiting for lb-bench");
    assert!(status.success(), "lb-bench control --profile smoke failed: {status}");

    let report = Report::read(&out.path().join("control.json")).expect("reading the report");
    report.validate().expect("a usable report");
    assert_eq!(report.bench, "control");
    let changes: Vec<_> = report.of_metric("apply_change_ms").collect();
    assert!(!changes.is_empty(), "no apply_change_ms comparison");
    for c in &changes {
        for subject in [OURS, IPTABLES, NFT] {
            let m = c.get(subject).unwrap_or_else(|| panic!("{} has no {subject}", c.scenario_label()));
            assert!(m.value > 0.0 && m.samples.iter().all(|&s| s > 0.0), "{subject}: {:?}", m.samples);
        }
        assert_eq!(c.ratios.len(), 2, "lb against both peers");
    }
    for metric in ["initial_sync_s", "map_bytes_per_service", "map_bytes_per_backend", "maglev_build_ms"] {
        assert!(report.of_metric(metric).next().is_some(), "no {metric} comparison");
    }
    for metric in report.metrics() {
        let svg = out.path().join(report.chart_file(metric));
        assert!(svg.is_file(), "{} was not written", svg.display());
    }
    let leftover = std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&namespace_prefix)))
        .unwrap_or(false);
    assert!(!leftover, "the bench left a network namespace behind");
}
