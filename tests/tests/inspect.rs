//! `lb inspect` against a running `lb run --no-xdp`: the routes with
//! their annotations in effect and certificates, the rejected objects, and
//! the exact shape of `-o json` (scripts read it).

use lb_testbed::l7::annotations::NginxAnnotations;
use lb_testbed::l7::{Ingress, L7Bed, Rule, SERVICE_PORT, TestCa, docs, tls_secret};
use lb_testbed::lb_bin;

/// `lb inspect ARGS --admin-addr` the bed's agent; its stdout.
fn inspect(bed: &L7Bed, args: &[&str]) -> String {
    let out = std::process::Command::new(lb_bin().unwrap())
        .arg("inspect")
        .args(["--admin-addr", &bed.admin_addr().to_string()])
        .args(args)
        .output()
        .expect("lb inspect runs");
    assert!(out.status.success(), "lb inspect {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_diagnostics_as_tables_and_json() {
    let mut bed = L7Bed::new().unwrap();
    let ca = TestCa::new().unwrap();
    let cert = ca.issue(&["a.com"]).unwrap();
    let pod = bed.echo("web").unwrap();
    bed.service("web", &[&pod]).unwrap();
    bed.write("secrets.yaml", &docs(&[tls_secret("a-tls", &cert)])).unwrap();
    let shop = Ingress::new("shop")
        .class("lb")
        .tls("a-tls", &["a.com"])
        .rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT).exact("/api", "web", SERVICE_PORT))
        .nginx("proxy-read-timeout", "30");
    bed.ingress("shop", &shop).unwrap();
    // A bad annotation: this Ingress is not served, and says why.
    let broken = Ingress::new("broken")
        .class("lb")
        .rule(Rule::host("b.com").prefix("/", "web", SERVICE_PORT))
        .nginx("limit-rps", "lots");
    bed.ingress("broken", &broken).unwrap();
    bed.start_lb().await.expect("lb starts");

    let pod_addr = format!("{}:{}", pod.ip(), lb_testbed::l7::ECHO_PORT);
    let json: serde_json::Value = serde_json::from_str(&inspect(&bed, &["routes", "-o", "json"])).unwrap();
    let not_after = json["hosts"][0]["certificate"]["not_after"].as_str().unwrap_or_default().to_string();
    assert!(not_after.ends_with('Z') && not_after.len() == 20, "RFC 3339: {json:#}");
    // The annotations in effect; b.com is not served.
    let path = |p: &str, t: &str| {
        serde_json::json!({
            "path": p, "path_type": t, "ingress": "default/shop", "backend": "default/web:80",
            "endpoints": [pod_addr], "canary": null,
            "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "30"},
        })
    };
    let golden = serde_json::json!({
        "default_backend": null,
        "hosts": [{
            "host": "a.com",
            "tls_redirect": true,
            "certificate": {"secret": "default/a-tls", "not_after": not_after},
            "paths": [path("/", "Prefix"), path("/api", "Exact")],
        }],
    });
    assert_eq!(json, golden, "{json:#}");

    let table = inspect(&bed, &["routes"]);
    assert!(table.lines().next().unwrap().starts_with("HOST"), "{table}");
    assert!(
        table.contains("a.com") && table.contains("/api (Exact)") && table.contains("proxy-read-timeout=30"),
        "{table}"
    );
    assert!(!table.contains("limit-rps"), "{table}");

    let json: serde_json::Value = serde_json::from_str(&inspect(&bed, &["diagnostics", "-o", "json"])).unwrap();
    let diagnostics = json["diagnostics"].as_array().unwrap();
    let rejected = diagnostics
        .iter()
        .find(|d| d["field"] == "metadata.annotations[nginx.ingress.kubernetes.io/limit-rps]")
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(rejected["object"], "Ingress default/broken");
    let keys: Vec<&String> = rejected.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["field", "message", "object"]);
    assert!(inspect(&bed, &["diagnostics"]).contains("limit-rps"));

    // No data path here: said so, and an empty list in JSON.
    assert!(inspect(&bed, &["services"]).contains("no data path"));
    let json: serde_json::Value = serde_json::from_str(&inspect(&bed, &["services", "-o", "json"])).unwrap();
    assert_eq!(json, serde_json::json!({"data_path": false, "services": []}));
}

#[test]
fn a_stopped_agent_is_a_clear_error() {
    let out = std::process::Command::new(lb_bin().unwrap())
        .args(["inspect", "--admin-addr", "127.0.0.1:1", "services"])
        .output()
        .expect("lb inspect runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1") && stderr.contains("lb run"), "{stderr}");
}
