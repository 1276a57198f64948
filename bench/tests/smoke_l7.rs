//! `lb-bench l7 --profile smoke`: lb, nginx and HAProxy each measured once
//! of every kind, so the bench's code paths cannot rot. Needs root (the
//! bench refuses to run otherwise) and fails loudly without it.

use std::process::Command;

use lb_bench::Report;

#[test]
fn l7_smoke_measures_all_three_subjects() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "lb-bench needs root: run the bench smoke tests as root (e.g. `sudo -E cargo test -p lb-bench`)"
    );
    let out = tempfile::tempdir().expect("temporary directory");
    let status = Command::new(env!("CARGO_BIN_EXE_lb-bench"))
        .args(["l7", "--profile", "smoke", "--out"])
        .arg(out.path())
        .status()
        .expect("running lb-bench");
    assert!(status.success(), "lb-bench l7 --profile smoke failed: {status}");

    let report = Report::read(&out.path().join("l7.json")).expect("reading l7.json");
    report.validate().expect("a usable report");
    assert_eq!(report.bench, "l7");
    let metrics = report.metrics();
    for metric in [
        "max_rps",
        "rps_per_cpu_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "reload_failed_requests",
        "reload_closed_websockets",
        "upgrade_failed_requests",
        "memory_mib",
    ] {
        assert!(metrics.contains(&metric), "{metric} missing from {metrics:?}");
        assert!(out.path().join(report.chart_file(metric)).is_file(), "no chart for {metric}");
    }
    let max: Vec<_> = report.of_metric("max_rps").collect();
    assert!(!max.is_empty());
    for c in max {
        for subject in ["lb", "nginx", "HAProxy"] {
            let m = c.get(subject).unwrap_or_else(|| panic!("max_rps [{}]: no {subject}", c.scenario_label()));
            assert!(m.value > 0.0, "max_rps [{}]: {subject} measured {}", c.scenario_label(), m.value);
        }
    }
    // Every max-rate run has its requests per CPU-second, with the proxy's
    // CPU use beside it, beside its req/s.
    for c in report.of_metric("rps_per_cpu_s") {
        for subject in ["lb", "nginx", "HAProxy"] {
            let m = c.get(subject).unwrap_or_else(|| panic!("rps_per_cpu_s [{}]: no {subject}", c.scenario_label()));
            let cpu = m.extra.get("proxy_cpu").copied().unwrap_or(0.0);
            assert!(
                m.value > 0.0 && cpu > 0.0,
                "rps_per_cpu_s [{}]: {subject} {} at {cpu} CPU",
                c.scenario_label(),
                m.value
            );
        }
    }
    assert_eq!(report.of_metric("rps_per_cpu_s").count(), report.of_metric("max_rps").count());
    assert!(report.notes.iter().any(|n| n.contains("straight to the static backend")), "{:#?}", report.notes);
    for c in report.of_metric("memory_mib") {
        for m in &c.measurements {
            assert!(m.value > 1.0, "memory of {} is {} MiB", m.subject, m.value);
        }
    }
    assert!(out.path().join("l7.md").is_file());
}
