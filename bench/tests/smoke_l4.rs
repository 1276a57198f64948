//! `lb-bench l4 --profile smoke` end to end: the bed, all five subjects,
//! every metric, the report files. Needs root (fails, never skips, without).

use std::path::Path;
use std::process::Command;

const SUBJECTS: [&str; 5] = ["lb", "lb XDP_TX (peer XDP)", "lb generic XDP", "iptables", "nftables"];
const METRICS: [&str; 6] =
    ["udp_pps", "tcp_cps", "tcp_rr_p50_us", "tcp_rr_p99_us", "tcp_rr_p999_us", "cpu_ns_per_packet"];

#[test]
fn l4_smoke_measures_every_metric_for_every_subject() {
    lb_testbed::require_root().expect("the l4 bench needs root");
    let out = tempfile::tempdir().expect("temp dir");
    let status = Command::new(env!("CARGO_BIN_EXE_lb-bench"))
        .args(["l4", "--profile", "smoke", "--out"])
        .arg(out.path())
        .status()
        .expect("running lb-bench");
    assert!(status.success(), "lb-bench l4 --profile smoke failed: {status}");

    let report = lb_bench::Report::read(&out.path().join("l4.json")).expect("l4.json");
    report.validate().expect("a valid report");
    assert_eq!(report.bench, "l4");
    for metric in METRICS {
        let comparisons: Vec<_> = report.of_metric(metric).collect();
        assert!(!comparisons.is_empty(), "no comparison for {metric}");
        for c in comparisons {
            assert_eq!(c.ours, "lb");
            for subject in SUBJECTS {
                let m = c.get(subject).unwrap_or_else(|| panic!("{metric}: no measurement of {subject}"));
                assert!(m.value > 0.0 && m.value.is_finite(), "{metric}: {subject} has {}", m.value);
            }
            assert_eq!(c.ratios.len(), 4, "{metric}: lb against its other modes and both peers");
        }
        let svg = out.path().join(report.chart_file(metric));
        assert!(is_svg(&svg), "{} is not an SVG chart", svg.display());
    }
    let udp = report.of_metric("udp_pps").next().unwrap();
    for m in &udp.measurements {
        let sent = m.extra.get("generator_sent_packets").copied().unwrap_or(0.0);
        let received = m.extra.get("pods_received_packets").copied().unwrap_or(0.0);
        assert!(sent > 0.0 && received > 0.0 && received <= sent, "{}: sent {sent}, received {received}", m.subject);
    }
    assert!(report.meta.tools.contains_key("iptables") && report.meta.tools.contains_key("nft"));
    assert!(out.path().join("l4.md").is_file());

    // The east-west part: a pod to a ClusterIP, lb's socket programs
    // against kube-proxy's layouts and the direct path.
    let report = lb_bench::Report::read(&out.path().join("l4-cluster-ip.json")).expect("l4-cluster-ip.json");
    report.validate().expect("a valid ClusterIP report");
    for metric in ["tcp_cps", "tcp_rr_p50_us"] {
        let comparisons: Vec<_> = report.of_metric(metric).collect();
        assert!(!comparisons.is_empty(), "ClusterIP: no comparison for {metric}");
        for c in comparisons {
            assert_eq!(c.ours, "lb");
            for subject in ["lb", "iptables", "nftables"] {
                let m = c.get(subject).unwrap_or_else(|| panic!("ClusterIP {metric}: no measurement of {subject}"));
                assert!(m.value > 0.0 && m.value.is_finite(), "ClusterIP {metric}: {subject} has {}", m.value);
            }
        }
    }
}

fn is_svg(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains("<svg"))
}
