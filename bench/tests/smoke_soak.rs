//! `lb-bench soak --profile smoke` end to end (40 s of load): the bed, both
//! agents, every load, a change every second, one replacement of node1's
//! agent; then the soak's own criteria — no connection, exchange or request
//! failed, node2's agent's fds and RSS flat after the warm-up — and what
//! the report must hold for those criteria to mean anything. Needs root
//! (fails, never skips, without).

use std::collections::BTreeSet;
use std::process::Command;

use lb_bench::soak::SoakReport;
use lb_bench::soak::agents::NODES;

#[test]
fn soak_smoke_passes_its_criteria() {
    lb_testbed::require_root().expect("the soak needs root");
    let out = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb-bench"))
        .args(["soak", "--profile", "smoke", "--out"])
        .arg(out.path())
        .spawn()
        .expect("running lb-bench");
    let namespaces = format!("{}{}-", lb_testbed::NAMESPACE_SCHEME_PREFIX, child.id());
    let status = child.wait().expect("waiting for lb-bench");
    let report = SoakReport::read(&out.path().join("soak.json"))
        .unwrap_or_else(|e| panic!("lb-bench soak --profile smoke ({status}) wrote no report: {e:#}"));
    let summary = report.tables("");
    let after_terminating = report.failures.iter().filter(|f| f.context.contains("turned terminating")).count();
    assert!(
        after_terminating == 0,
        "{after_terminating} of {} failures came right after a pod turned terminating: the open \
         flows to a terminating pod must finish on it (its backend stays in BACKENDS, draining), \
         as kube-proxy lets them (BENCHMARKS.md, Soak)\n{summary}",
        report.failures.len()
    );
    assert!(status.success(), "lb-bench soak --profile smoke failed ({status}):\n{summary}");
    assert!(report.pass && report.failed_criteria.is_empty(), "{summary}");

    // Every load ran, about at its rate, and none failed.
    assert_eq!(report.loads.len(), 10, "{summary}");
    for l in &report.loads {
        let expected = l.rate * report.load_s;
        assert!(l.attempts as f64 >= 0.8 * expected, "{}: {} attempts, {expected:.0} expected", l.name, l.attempts);
        assert_eq!(l.failed, 0, "{}: {summary}", l.name);
    }
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // A change every second, and node1's agent replaced once, by a new process.
    assert!(report.change_steps as f64 >= report.load_s - 3.0, "{} change steps", report.change_steps);
    assert_eq!(report.changes, 4 * report.change_steps);
    assert_eq!(report.restarts.len(), 1, "{summary}");
    let restart = &report.restarts[0];
    assert_ne!(restart.old_pid, restart.new_pid);
    assert_eq!(restart.old_exit, "exit status: 0", "the old agent ended by itself after SIGTERM");
    // Every second, both agents read; node1's series follows the new PID.
    for node in NODES {
        let samples: Vec<_> = report.samples.iter().filter(|s| s.node == node).collect();
        assert!(samples.len() as f64 >= report.load_s - 3.0, "{node}: {} samples", samples.len());
        assert!(samples.iter().all(|s| s.fds > 0 && s.rss_kib > 0), "{node}");
        let conntrack: Vec<_> = report.conntrack.iter().filter(|c| c.node == node).collect();
        assert!(conntrack.len() >= 4 && conntrack.iter().all(|c| c.capacity > 0), "{node}: {conntrack:?}");
        assert!(conntrack.last().is_some_and(|c| c.entries > 0), "{node}'s conntrack holds the load's flows");
    }
    let node1_pids: BTreeSet<u32> = report.samples.iter().filter(|s| s.node == NODES[0]).map(|s| s.pid).collect();
    assert_eq!(node1_pids, BTreeSet::from([restart.old_pid, restart.new_pid]));
    // Both criteria judged node2 on enough samples.
    assert_eq!(report.flatness.len(), 2);
    assert!(report.flatness.iter().all(|f| f.pass && f.samples >= 20), "{:?}", report.flatness);
    let svg = std::fs::read_to_string(out.path().join(lb_bench::soak::record::CHART)).expect("the chart");
    assert!(svg.contains("<svg") && svg.contains("never restarted"), "the chart names the agents");
    let leftover = std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&namespaces)))
        .unwrap_or(false);
    assert!(!leftover, "the soak left a network namespace behind");
}
