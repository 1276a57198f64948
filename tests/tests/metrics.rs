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

/// Known requests, counted under ingress-nginx's names and labels: per
/// route (host, Ingress, Service, path), canary, status and method.
#[tokio::test]
async fn requests_are_counted_with_ingress_nginx_labels() {
    use lb_testbed::l7::annotations::NginxAnnotations;
    use lb_testbed::l7::{Ingress, Req, Rule, SERVICE_PORT};

    let mut bed = L7Bed::new().unwrap();
    let main = bed.echo("web").unwrap();
    let next = bed.echo("web-v2").unwrap();
    bed.service("web", &[&main]).unwrap();
    bed.service("web-v2", &[&next]).unwrap();
    let rule = |service: &str| Rule::host("a.com").prefix("/", service, SERVICE_PORT);
    bed.ingress("shop", &Ingress::new("shop").class("lb").rule(rule("web"))).unwrap();
    let canary = Ingress::new("shop-canary")
        .class("lb")
        .rule(rule("web-v2"))
        .nginx("canary", "true")
        .nginx("canary-by-header", "x-canary");
    bed.ingress("shop-canary", &canary).unwrap();
    bed.start_lb().await.expect("lb starts");

    let bed = &bed;
    let send = |req: Req| async move { bed.ok(bed.send(&req).await) };
    for _ in 0..3 {
        assert_eq!(send(Req::get("/x").host("a.com")).await.status, 200);
    }
    assert_eq!(send(Req::post("/form", "12345").host("a.com")).await.status, 200);
    for _ in 0..2 {
        let resp = send(Req::get("/x").host("a.com").header("x-canary", "always")).await;
        assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("web-v2")));
    }
    assert_eq!(send(Req::get("/").host("unknown.test")).await.status, 404);

    // Counted once the response is done: the last one may still be
    // finishing when the scrape comes.
    let mut samples = Vec::new();
    for _ in 0..50 {
        samples = scrape(bed, None).await.1;
        let requests = samples.iter().filter(|s| s.metric == "nginx_ingress_controller_requests");
        if requests.map(gauge_or_counter).sum::<f64>() >= 7.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let series = |metric: &str| -> Vec<(String, f64)> {
        let mut all: Vec<(String, f64)> = samples
            .iter()
            .filter(|s| s.metric == metric)
            .map(|s| {
                let l = |name: &str| s.labels.get(name).unwrap_or("?").to_string();
                let key =
                    ["host", "namespace", "ingress", "service", "path", "canary", "method", "status"].map(l).join(" ");
                (key, gauge_or_counter(s))
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    let expected = vec![
        ("      GET 404".to_string(), 1.0),
        ("a.com default shop web / default-web-v2-80 GET 200".to_string(), 2.0),
        ("a.com default shop web /  GET 200".to_string(), 3.0),
        ("a.com default shop web /  POST 200".to_string(), 1.0),
    ];
    let mut expected = expected;
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(series("nginx_ingress_controller_requests"), expected, "{samples:#?}");
    let requests = samples.iter().find(|s| s.metric == "nginx_ingress_controller_requests").unwrap();
    assert_eq!(requests.labels.get("controller_class"), Some("lb.dev/ingress-controller"));
    assert_eq!(requests.labels.get("controller_namespace"), Some("lb-system"));

    // Every request has its durations and sizes; the 404 never went
    // upstream, so it has no response duration.
    for family in ["request_duration_seconds", "request_size", "response_size"] {
        let counts = series(&format!("nginx_ingress_controller_{family}_count"));
        assert_eq!(counts, expected, "{family}");
    }
    let upstream = series("nginx_ingress_controller_response_duration_seconds_count");
    let upstream_expected: Vec<(String, f64)> =
        expected.iter().map(|(k, n)| (k.clone(), if k.ends_with("404") { 0.0 } else { *n })).collect();
    assert_eq!(upstream, upstream_expected);
    // ingress-nginx's buckets.
    let histogram = |metric: &str| {
        samples.iter().find_map(|s| match &s.value {
            Value::Histogram(buckets) if s.metric == metric => {
                Some(buckets.iter().map(|b| b.less_than).collect::<Vec<f64>>())
            }
            _ => None,
        })
    };
    let time = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, f64::INFINITY];
    assert_eq!(histogram("nginx_ingress_controller_request_duration_seconds").unwrap(), time);
    let length = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, f64::INFINITY];
    assert_eq!(histogram("nginx_ingress_controller_response_size").unwrap(), length);
    // The POST's size counts its 5 body bytes on top of its head.
    let sum = |method: &str| {
        samples
            .iter()
            .find(|s| s.metric == "nginx_ingress_controller_request_size_sum" && s.labels.get("method") == Some(method))
            .map(gauge_or_counter)
            .unwrap()
    };
    assert!(sum("POST") > 5.0 + "POST /form HTTP/1.1\r\n\r\n".len() as f64, "{}", sum("POST"));
}

fn gauge_or_counter(sample: &Sample) -> f64 {
    match sample.value {
        Value::Gauge(v) | Value::Untyped(v) | Value::Counter(v) => v,
        ref other => panic!("{} is not a single value: {other:?}", sample.metric),
    }
}

/// The families ingress-nginx's own Grafana dashboard (deploy/grafana/
/// dashboards/nginx.json) queries, its template variables' included:
/// every one is served, with the controller labels its filters use.
#[tokio::test]
async fn every_family_of_ingress_nginx_dashboard_is_served() {
    use lb_testbed::l7::{Ingress, Req, Rule, SERVICE_PORT};

    const DASHBOARD: [&str; 11] = [
        "nginx_ingress_controller_config_hash",
        "nginx_ingress_controller_requests",
        "nginx_ingress_controller_nginx_process_connections",
        "nginx_ingress_controller_success",
        "nginx_ingress_controller_config_last_reload_successful",
        "nginx_ingress_controller_request_size_sum",
        "nginx_ingress_controller_response_size_sum",
        "nginx_ingress_controller_nginx_process_resident_memory_bytes",
        "nginx_ingress_controller_nginx_process_cpu_seconds_total",
        "nginx_ingress_controller_request_duration_seconds_bucket",
        "nginx_ingress_controller_ssl_expire_time_seconds",
    ];
    let mut bed = L7Bed::new().unwrap();
    let pod = bed.echo("web").unwrap();
    bed.service("web", &[&pod]).unwrap();
    bed.ingress("web", &Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT)))
        .unwrap();
    let ca = lb_testbed::l7::TestCa::new().unwrap();
    let cert = ca.issue(&["t.com"]).unwrap();
    bed.write("secret.yaml", &lb_testbed::l7::tls_secret("t-tls", &cert)).unwrap();
    let tls = Ingress::new("t").class("lb").tls("t-tls", &["t.com"]).rule(Rule::host("t.com").prefix(
        "/",
        "web",
        SERVICE_PORT,
    ));
    bed.ingress("t", &tls).unwrap();
    bed.start_lb().await.expect("lb starts");
    assert_eq!(bed.ok(bed.send(&Req::get("/").host("a.com")).await).status, 200);

    let mut samples = Vec::new();
    for _ in 0..50 {
        samples = scrape(&bed, None).await.1;
        if samples.iter().any(|s| s.metric == "nginx_ingress_controller_requests") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for family in DASHBOARD {
        // The parser folds `_bucket` lines into their histogram.
        let name = family.strip_suffix("_bucket").unwrap_or(family);
        let sample = samples.iter().find(|s| s.metric == name).unwrap_or_else(|| panic!("no {family}"));
        if family != "nginx_ingress_controller_ssl_expire_time_seconds" {
            assert_eq!(sample.labels.get("controller_class"), Some("lb.dev/ingress-controller"), "{family}");
            assert_eq!(sample.labels.get("controller_namespace"), Some("lb-system"), "{family}");
            assert!(sample.labels.get("controller_pod").is_some(), "{family}");
        }
    }
    let one = |metric: &str, state: Option<&str>| {
        samples
            .iter()
            .find(|s| s.metric == metric && state.is_none_or(|st| s.labels.get("state") == Some(st)))
            .map(gauge_or_counter)
            .unwrap_or_else(|| panic!("no {metric}"))
    };
    // The scrape's own connection is to the admin port, not the proxy:
    // the one client connection above was accepted and is closed.
    assert_eq!(one("nginx_ingress_controller_nginx_process_connections_total", Some("accepted")), 1.0);
    assert_eq!(one("nginx_ingress_controller_nginx_process_connections", Some("active")), 0.0);
    assert!(one("nginx_ingress_controller_success", None) >= 1.0);
    assert!(one("nginx_ingress_controller_nginx_process_resident_memory_bytes", None) > 0.0);
    // The hash names the routes: another agent serving the same routes
    // has the same; a change to them changes it.
    let hash = one("nginx_ingress_controller_config_hash", None);
    bed.ingress("web", &Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/v2", "web", SERVICE_PORT)))
        .unwrap();
    bed.ok(bed.wait_route("a.com", "/", 404, None).await);
    let samples = scrape(&bed, None).await.1;
    let changed = samples.iter().find(|s| s.metric == "nginx_ingress_controller_config_hash").map(gauge_or_counter);
    assert!(changed.is_some_and(|h| h != hash), "{hash} then {changed:?}");
}
