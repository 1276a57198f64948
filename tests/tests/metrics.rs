//! `GET /metrics` on a running `lb run --no-xdp`: the families parse as
//! Prometheus text (0.0.4) by default and as OpenMetrics when asked, with
//! the names and labels the dashboards users already have query.

use std::time::{SystemTime, UNIX_EPOCH};

use lb_testbed::l7::{L7Bed, Req, Resp, send_h1};
use prometheus_parse::{Sample, Scrape, Value};

async fn scrape(bed: &L7Bed, accept: Option<&str>) -> (Resp, Vec<Sample>) {
    let mut req = Req::get("/metrics");
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let resp = bed.ok(send_h1(bed.admin_addr(), &req).await);
    assert_eq!(resp.status, 200, "{resp}");
    let text = resp.text();
    let samples = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the scrape parses").samples;
    (resp, samples)
}

fn value<'a>(samples: &'a [Sample], metric: &str) -> &'a Sample {
    samples.iter().find(|s| s.metric == metric).unwrap_or_else(|| panic!("no {metric} in {samples:#?}"))
}

fn gauge(sample: &Sample) -> f64 {
    match sample.value {
        Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{} is not a gauge: {other:?}", sample.metric),
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[tokio::test]
async fn families_users_query_are_served_in_both_formats() {
    let mut bed = L7Bed::new().unwrap();
    let before = unix_now();
    bed.start_lb().await.expect("lb starts");
    let after = unix_now();

    let (resp, samples) = scrape(&bed, None).await;
    assert_eq!(resp.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(!resp.text().contains("# EOF"), "0.0.4 has no EOF marker:\n{}", resp.text());

    // ingress-nginx's reload families, with its controller labels.
    let reload = value(&samples, "nginx_ingress_controller_config_last_reload_successful");
    assert_eq!(gauge(reload), 1.0, "the first route table was applied");
    assert_eq!(reload.labels.get("controller_class"), Some("lb.dev/ingress-controller"));
    assert_eq!(reload.labels.get("controller_namespace"), Some("lb-system"));
    assert!(reload.labels.get("controller_pod").is_some_and(|pod| !pod.is_empty()), "{reload:?}");
    let at = gauge(value(&samples, "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds"));
    assert!((before..=after).contains(&at), "reloaded at {at}, lb started within {before}..{after}");

    // Without a data path nothing is synced: kube-proxy's histogram is
    // there, empty.
    match &value(&samples, "kubeproxy_sync_proxy_rules_duration_seconds").value {
        Value::Histogram(buckets) => {
            assert_eq!(buckets.len(), 16, "kube-proxy's 15 buckets and +Inf: {buckets:?}");
            assert!(buckets.iter().all(|b| b.count == 0.0), "{buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    // The process families, the counter named as 0.0.4 names it.
    assert!(resp.text().contains("# TYPE process_cpu_seconds_total counter\n"), "{}", resp.text());
    // In clock ticks (10 ms): a young process may have used none yet, and
    // no more than its lifetime on every CPU.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    match value(&samples, "process_cpu_seconds_total").value {
        Value::Counter(seconds) => {
            let most = (unix_now() - before + 0.01) * cpus;
            assert!((0.0..=most).contains(&seconds), "{seconds} CPU-seconds, at most {most}");
        }
        ref other => panic!("not a counter: {other:?}"),
    }
    for gauge_name in ["process_resident_memory_bytes", "process_open_fds", "process_max_fds"] {
        assert!(gauge(value(&samples, gauge_name)) > 0.0, "{gauge_name}");
    }
    let started = gauge(value(&samples, "process_start_time_seconds"));
    assert!((before - 5.0..=after).contains(&started), "started at {started}, within {before}..{after}");
    let build = value(&samples, "lb_build_info");
    assert_eq!((gauge(build), build.labels.get("version")), (1.0, Some(env!("CARGO_PKG_VERSION"))));

    let (resp, samples) = scrape(&bed, Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")).await;
    assert_eq!(resp.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(resp.text().ends_with("# EOF\n"), "{}", resp.text());
    assert_eq!(gauge(value(&samples, "nginx_ingress_controller_config_last_reload_successful")), 1.0);
}

/// Each host served with a certificate is reported with its `notAfter`, as
/// ingress-nginx's expiry alert reads it.
#[tokio::test]
async fn certificate_expiry_per_host() {
    use lb_testbed::l7::{Ingress, Rule, SERVICE_PORT, TestCa, docs, tls_secret};
    use x509_parser::prelude::{FromDer, X509Certificate};

    let mut bed = L7Bed::new().unwrap();
    let ca = TestCa::new().unwrap();
    let cert = ca.issue(&["a.com"]).unwrap();
    let pod = bed.echo("web").unwrap();
    bed.service("web", &[&pod]).unwrap();
    bed.write("secrets.yaml", &docs(&[tls_secret("a-tls", &cert)])).unwrap();
    let ing = Ingress::new("tls")
        .class("lb")
        .tls("a-tls", &["a.com"])
        .rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT))
        .rule(Rule::host("plain.com").prefix("/", "web", SERVICE_PORT));
    bed.ingress("tls", &ing).unwrap();
    bed.start_lb().await.expect("lb starts");

    let (_, samples) = scrape(&bed, None).await;
    let expiry: Vec<&Sample> =
        samples.iter().filter(|s| s.metric == "nginx_ingress_controller_ssl_expire_time_seconds").collect();
    assert_eq!(expiry.len(), 1, "plain.com has no certificate: {expiry:#?}");
    let (_, parsed) = X509Certificate::from_der(&cert.cert_der).unwrap();
    assert_eq!(gauge(expiry[0]), parsed.validity().not_after.timestamp() as f64);
    let labels = |name: &str| expiry[0].labels.get(name);
    assert_eq!(
        [labels("host"), labels("secret_name"), labels("namespace"), labels("class")],
        [Some("a.com"), Some("a-tls"), Some("default"), Some("lb.dev/ingress-controller")]
    );
    assert_eq!(labels("identifier"), Some(format!("-{}", parsed.serial).as_str()));
}
