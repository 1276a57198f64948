use lb_routes::{ObjectName, PathType, Route, RouteTableBuilder};

use super::*;

fn metrics() -> RequestMetrics {
    RequestMetrics::new("k8s.io/ingress-nginx", "ingress", "lb-x")
}

fn labels(path: &str) -> Arc<RequestLabels> {
    let ingress = ObjectName { namespace: "shop".into(), name: "web".into() };
    Arc::new(RequestLabels::new("a.com", Some(&ingress), "web", path, ""))
}

fn answer(metrics: &RequestMetrics, labels: &Arc<RequestLabels>, method: Method, status: u16, upstream: bool) {
    let headers = HeaderMap::new();
    let start = Instant::now();
    let observation = metrics.observe(&Answered {
        labels: Arc::clone(labels),
        method: &method,
        status,
        start,
        upstream_start: upstream.then_some(start),
        request_bytes: 15,
        response_headers: &headers,
    });
    observation.finish(50);
}

fn line<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn requests_are_counted_per_route_status_and_method() {
    let metrics = metrics();
    let root = labels("/");
    answer(&metrics, &root, Method::GET, 200, true);
    answer(&metrics, &labels("/"), Method::GET, 200, true); // equal labels, another table
    answer(&metrics, &root, Method::POST, 503, false);
    answer(&metrics, &root, Method::from_bytes(b"BREW").unwrap(), 200, true);
    let mut text = String::new();
    metrics.encode(&mut text, false);
    let common = "controller_class=\"k8s.io/ingress-nginx\",controller_namespace=\"ingress\",controller_pod=\"lb-x\",\
                  host=\"a.com\",ingress=\"web\"";
    let route = "namespace=\"shop\",path=\"/\",service=\"web\"";
    assert_eq!(
        line(&text, "nginx_ingress_controller_requests{"),
        [
            format!(
                "nginx_ingress_controller_requests{{canary=\"\",{common},method=\"GET\",{route},status=\"200\"}} 2"
            ),
            format!(
                "nginx_ingress_controller_requests{{canary=\"\",{common},method=\"OTHER\",{route},status=\"200\"}} 1"
            ),
            format!(
                "nginx_ingress_controller_requests{{canary=\"\",{common},method=\"POST\",{route},status=\"503\"}} 1"
            ),
        ],
        "{text}"
    );
    assert!(text.contains("# TYPE nginx_ingress_controller_requests counter\n"));
    // The POST never went upstream: no response duration.
    let post = format!("{{canary=\"\",{common},method=\"POST\",{route},status=\"503\"}}");
    assert!(text.contains(&format!("nginx_ingress_controller_request_duration_seconds_count{post} 1\n")), "{text}");
    assert!(text.contains(&format!("nginx_ingress_controller_response_duration_seconds_count{post} 0\n")), "{text}");
    // 15 bytes of request: the 20 bucket, not the 10 one; 50 body bytes
    // and the 17-byte head `HTTP/1.1 200 OK\r\n\r\n` (19): le 70.
    let get = format!("canary=\"\",{common},method=\"GET\",{route},status=\"200\"");
    for (sample, count) in [
        (format!("request_size_bucket{{{get},le=\"10\"}}"), 0),
        (format!("request_size_bucket{{{get},le=\"20\"}}"), 2),
        (format!("response_size_bucket{{{get},le=\"60\"}}"), 0),
        (format!("response_size_bucket{{{get},le=\"70\"}}"), 2),
        (format!("response_size_bucket{{{get},le=\"+Inf\"}}"), 2),
        (format!("response_size_sum{{{get}}}"), 138),
        (format!("request_duration_seconds_bucket{{{get},le=\"0.005\"}}"), 2),
    ] {
        let want = format!("nginx_ingress_controller_{sample} {count}\n");
        assert!(text.contains(&want), "{want}in\n{text}");
    }
}

#[test]
fn openmetrics_keeps_the_requests_name_by_typing_it_unknown() {
    let metrics = metrics();
    answer(&metrics, &labels("/"), Method::GET, 200, true);
    let mut text = String::new();
    metrics.encode(&mut text, true);
    assert!(text.contains("# TYPE nginx_ingress_controller_requests unknown\n"), "{text}");
    assert!(!text.contains("nginx_ingress_controller_requests_total"), "{text}");
    // The connection counter, named with `_total` by ingress-nginx, keeps
    // it as an `unknown` family too.
    assert!(text.contains("# TYPE nginx_ingress_controller_nginx_process_connections_total unknown\n"), "{text}");
}

#[test]
fn label_values_are_escaped() {
    let metrics = metrics();
    answer(&metrics, &labels("/a\"b\\c"), Method::GET, 200, true);
    let mut text = String::new();
    metrics.encode(&mut text, false);
    assert!(text.contains(r#"path="/a\"b\\c""#), "{text}");
}

#[test]
fn series_of_routes_no_longer_in_the_table_are_dropped() {
    let metrics = metrics();
    let ingress = ObjectName { namespace: "shop".into(), name: "web".into() };
    let backend = Arc::new(lb_routes::Backend {
        service: lb_routes::ServicePortRef {
            service: ObjectName { namespace: "shop".into(), name: "web".into() },
            port: "80".into(),
        },
        target: lb_routes::BackendTarget::Endpoints(vec![]),
        protocol: lb_routes::UpstreamProtocol::Http1,
    });
    let mut builder = RouteTableBuilder::new();
    let host = lb_routes::HostPattern::parse("a.com").unwrap();
    builder.add_route(Some(&host), Route::new(ingress, "/".into(), PathType::Prefix, backend)).unwrap();
    let table = builder.build();
    let kept = Arc::clone(&table.select(Some("a.com"), "/").route.unwrap().labels);
    answer(&metrics, &kept, Method::GET, 200, true);
    answer(&metrics, &labels("/gone"), Method::GET, 200, true);
    metrics.retain(&table);
    let mut text = String::new();
    metrics.encode(&mut text, false);
    assert_eq!(line(&text, "nginx_ingress_controller_requests{").len(), 1, "{text}");
    assert!(!text.contains("/gone"));
}

#[test]
fn head_sizes_are_as_http_1_1_writes_them() {
    let mut headers = HeaderMap::new();
    headers.insert("host", "a.com".parse().unwrap());
    let uri: http::Uri = "/x?y=1".parse().unwrap();
    // "GET /x?y=1 HTTP/1.1\r\n" 21 + "host: a.com\r\n" 13 + "\r\n" 2 + 5
    assert_eq!(request_bytes(&Method::GET, &uri, &headers, Some(5)), 41);
    // "HTTP/1.1 404 Not Found\r\n" 24 + 13 + 2
    assert_eq!(response_head_bytes(404, &headers), 39);
}
