//! The ingress-nginx controller families its own Grafana dashboard reads
//! besides the request ones: `config_hash` (its template variables list
//! the controllers from it), `success` (reloads; a counter named without
//! `_total`, as ingress-nginx names it) and the `nginx_process_*`
//! resource families, here the agent's process.

use std::fmt::Write as _;

use lb_proxy::metrics::label_pairs;

use super::ControllerLabels;
use super::process::Stat;

const PREFIX: &str = "nginx_ingress_controller_";

/// The families, in the Prometheus text format or OpenMetrics (without
/// `# EOF`; there the counters named without `_total` are typed
/// `unknown`, which keeps their names).
pub fn encode(out: &mut String, controller: &ControllerLabels, config_hash: u64, reloads: u64, open_metrics: bool) {
    let labels = labels(controller);
    let counter = if open_metrics { "unknown" } else { "counter" };
    let mut family = |name: &str, help: &str, kind: &str, value: String| {
        let _ = writeln!(out, "# HELP {PREFIX}{name} {help}\n# TYPE {PREFIX}{name} {kind}");
        let _ = writeln!(out, "{PREFIX}{name}{{{labels}}} {value}");
    };
    // A float, as ingress-nginx exports its 64-bit hash.
    family("config_hash", "Running configuration hash actually running", "gauge", (config_hash as f64).to_string());
    family("success", "Cumulative number of Ingress controller reload operations", counter, reloads.to_string());
    if let Some(stat) = Stat::read() {
        family("nginx_process_cpu_seconds_total", "Cpu usage in seconds", counter, stat.cpu_seconds.to_string());
        family(
            "nginx_process_resident_memory_bytes",
            "number of bytes of memory in use",
            "gauge",
            stat.resident_bytes.to_string(),
        );
        family(
            "nginx_process_virtual_memory_bytes",
            "number of bytes of memory in use",
            "gauge",
            stat.virtual_bytes.to_string(),
        );
        family("nginx_process_num_procs", "number of processes", "gauge", "1".into());
    }
}

fn labels(c: &ControllerLabels) -> String {
    label_pairs(&[
        ("controller_class", &c.controller_class),
        ("controller_namespace", &c.controller_namespace),
        ("controller_pod", &c.controller_pod),
    ])
}
