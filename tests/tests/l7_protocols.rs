//! Protocols and upstream behaviour: h2c from clients, h2c to backends
//! (`appProtocol: kubernetes.io/h2c`), WebSocket (also across a config
//! change), upstream keep-alive, retries on connect failure, 502/503/504,
//! a backend closing mid-response, ExternalName backends via DNS.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lb_testbed::l7::{
    ECHO_PORT, EndpointSlice, FakeDns, Ingress, L7Bed, LbOptions, Req, Rule, SERVICE_PORT, Service, docs, send_h2c,
    unique_loopback_ip, ws_connect, ws_roundtrip,
};

async fn one_service_bed(opts: LbOptions) -> L7Bed {
    let mut bed = L7Bed::new().expect("bed");
    let pod = bed.echo("web").expect("echo");
    bed.service("web", &[&pod]).unwrap();
    bed.ingress("web", &Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT)))
        .unwrap();
    bed.start_lb_with(opts).await.expect("lb starts");
    bed
}

#[tokio::test]
async fn h2c_client_to_http1_backend() {
    let bed = one_service_bed(LbOptions::default()).await;
    let resp = bed.ok(send_h2c(bed.http_addr(), &Req::post("/h2?x=1", "payload").host("a.com")).await);
    assert_eq!((resp.status, resp.version.as_str()), (200, "HTTP/2.0"), "{resp}");
    let echo = resp.echo().unwrap();
    assert_eq!(echo.version, "HTTP/1.1", "the backend speaks HTTP/1.1");
    assert_eq!((echo.method.as_str(), echo.path.as_str(), echo.body.as_str()), ("POST", "/h2?x=1", "payload"));
    assert_eq!(echo.host(), Some("a.com"), "{:?}", echo.headers);
    assert_eq!(echo.header("x-forwarded-host"), Some("a.com"));
    // Routing by :authority: an unknown host is a 404.
    let resp = bed.ok(send_h2c(bed.http_addr(), &Req::get("/").host("b.com")).await);
    assert_eq!(resp.status, 404, "{resp}");
}

#[tokio::test]
async fn app_protocol_h2c_makes_the_upstream_http2() {
    let mut bed = L7Bed::new().unwrap();
    let h2 = bed.echo("h2-pod").unwrap();
    let h1 = bed.echo("h1-pod").unwrap();
    bed.write(
        "services.yaml",
        &docs(&[
            Service::new("grpcish").port("h2c", SERVICE_PORT, ECHO_PORT).app_protocol("kubernetes.io/h2c").yaml(),
            EndpointSlice::new("grpcish").port("h2c", ECHO_PORT).endpoint(h2.ip(), true).yaml(),
        ]),
    )
    .unwrap();
    bed.service("plain", &[&h1]).unwrap();
    let ing = Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/h2", "grpcish", SERVICE_PORT).prefix(
        "/h1",
        "plain",
        SERVICE_PORT,
    ));
    bed.ingress("web", &ing).unwrap();
    bed.start_lb().await.expect("lb starts");
    let resp = bed.ok(bed.get("a.com", "/h2/x?y=1").await);
    assert_eq!(resp.status, 200, "{resp}");
    let echo = resp.echo().unwrap();
    assert_eq!(echo.version, "HTTP/2.0", "appProtocol kubernetes.io/h2c: {resp}");
    assert_eq!(echo.path, "/h2/x?y=1");
    assert_eq!(echo.host(), Some("a.com"), "{:?}", echo);
    // An h2c client to an h2c backend.
    let resp = bed.ok(send_h2c(bed.http_addr(), &Req::get("/h2").host("a.com")).await);
    assert_eq!(resp.echo().unwrap().version, "HTTP/2.0");
    let resp = bed.ok(bed.get("a.com", "/h1").await);
    assert_eq!(resp.echo().unwrap().version, "HTTP/1.1");
}

#[tokio::test]
async fn websocket_passes_through_and_survives_a_config_change() {
    let mut bed = L7Bed::new().unwrap();
    let a = bed.echo("ws-a").unwrap();
    let b = bed.echo("ws-b").unwrap();
    bed.service("svc-a", &[&a]).unwrap();
    bed.service("svc-b", &[&b]).unwrap();
    let ing = |svc: &str| Ingress::new("ws").class("lb").rule(Rule::host("a.com").prefix("/", svc, SERVICE_PORT));
    bed.ingress("ws", &ing("svc-a")).unwrap();
    bed.start_lb().await.expect("lb starts");

    let (mut ws, headers) = bed.ok(ws_connect(bed.http_addr(), "a.com", "/chat").await);
    assert!(headers.iter().any(|(n, v)| n == "x-pod-name" && v == "ws-a"), "{headers:?}");
    assert_eq!(bed.ok(ws_roundtrip(&mut ws, "hello").await), "ws-a hello");

    // Move the route to svc-b; the open WebSocket stays with ws-a.
    bed.ingress("ws", &ing("svc-b")).unwrap();
    bed.ok(bed.wait_route("a.com", "/", 200, Some("ws-b")).await);
    assert_eq!(bed.ok(ws_roundtrip(&mut ws, "still there").await), "ws-a still there");
    // A new WebSocket goes to ws-b.
    let (mut ws2, _) = bed.ok(ws_connect(bed.http_addr(), "a.com", "/chat").await);
    assert_eq!(bed.ok(ws_roundtrip(&mut ws2, "new").await), "ws-b new");
    assert_eq!(bed.ok(ws_roundtrip(&mut ws, "bye").await), "ws-a bye");
}

#[tokio::test]
async fn upstream_connections_are_kept_alive() {
    let bed = one_service_bed(LbOptions::default()).await;
    let mut upstream_peers = std::collections::BTreeSet::new();
    for i in 0..10 {
        let resp = bed.ok(bed.get("a.com", &format!("/k{i}")).await);
        assert_eq!(resp.status, 200, "{resp}");
        upstream_peers.insert(resp.echo().unwrap().remote_addr);
    }
    assert!(
        upstream_peers.len() <= 2,
        "10 sequential requests used {} upstream connections: {upstream_peers:?}",
        upstream_peers.len()
    );
}

#[tokio::test]
async fn connect_failure_is_retried_on_another_endpoint() {
    let mut bed = L7Bed::new().unwrap();
    let live = bed.echo("live").unwrap();
    let dead = [unique_loopback_ip(), unique_loopback_ip()];
    bed.write(
        "web.yaml",
        &docs(&[
            Service::new("web").port("http", SERVICE_PORT, ECHO_PORT).yaml(),
            EndpointSlice::new("web")
                .port("http", ECHO_PORT)
                .endpoint(dead[0], true)
                .endpoint(live.ip(), true)
                .endpoint(dead[1], true)
                .yaml(),
            Service::new("dead").port("http", SERVICE_PORT, ECHO_PORT).yaml(),
            EndpointSlice::new("dead").port("http", ECHO_PORT).endpoint(dead[0], true).endpoint(dead[1], true).yaml(),
        ]),
    )
    .unwrap();
    let ing = Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT).prefix(
        "/dead",
        "dead",
        SERVICE_PORT,
    ));
    bed.ingress("web", &ing).unwrap();
    bed.start_lb().await.expect("lb starts");
    for i in 0..20 {
        let resp = bed.ok(bed.get("a.com", &format!("/r{i}")).await);
        assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("live")), "request {i}: {resp}");
    }
    // No live endpoint at all: 502.
    let resp = bed.ok(bed.get("a.com", "/dead").await);
    assert_eq!(resp.status, 502, "{resp}");
}

#[tokio::test]
async fn service_without_endpoints_is_503() {
    let mut bed = L7Bed::new().unwrap();
    let pod = bed.echo("not-ready").unwrap();
    bed.write(
        "services.yaml",
        &docs(&[
            Service::new("no-slice").port("http", SERVICE_PORT, ECHO_PORT).yaml(),
            Service::new("empty-slice").port("http", SERVICE_PORT, ECHO_PORT).yaml(),
            EndpointSlice::new("empty-slice").port("http", ECHO_PORT).yaml(),
            Service::new("unready").port("http", SERVICE_PORT, ECHO_PORT).yaml(),
            EndpointSlice::new("unready").port("http", ECHO_PORT).endpoint(pod.ip(), false).yaml(),
        ]),
    )
    .unwrap();
    let ing = Ingress::new("web").class("lb").rule(
        Rule::host("a.com")
            .prefix("/no-slice", "no-slice", SERVICE_PORT)
            .prefix("/empty-slice", "empty-slice", SERVICE_PORT)
            .prefix("/unready", "unready", SERVICE_PORT),
    );
    bed.ingress("web", &ing).unwrap();
    bed.start_lb().await.expect("lb starts");
    for path in ["/no-slice", "/empty-slice", "/unready"] {
        let resp = bed.ok(bed.get("a.com", path).await);
        assert_eq!(resp.status, 503, "{path}: {resp}");
    }
    assert!(!pod.saw("/unready"), "a not-ready endpoint got traffic");
}

#[tokio::test]
async fn slow_backend_beyond_upstream_timeout_is_504() {
    let opts = LbOptions { upstream_timeout: Some("1s".into()), ..LbOptions::default() };
    let bed = one_service_bed(opts).await;
    let start = Instant::now();
    let resp = bed.ok(bed.get("a.com", "/__echo/slow?ms=4000").await);
    let took = start.elapsed();
    assert_eq!(resp.status, 504, "{resp}");
    assert!(took < Duration::from_millis(3000), "504 after {took:?} with --upstream-timeout 1s");
    let resp = bed.ok(bed.get("a.com", "/__echo/slow?ms=200").await);
    assert_eq!(resp.status, 200, "{resp}");
}

#[tokio::test]
async fn backend_closing_mid_response() {
    let bed = one_service_bed(LbOptions::default()).await;
    match bed.send(&Req::get("/__echo/close-mid-response").host("a.com")).await {
        Err(_) => {}
        Ok(resp) if resp.status >= 500 => {}
        Ok(resp) => bed.fail(format!("a truncated upstream answer was passed as complete: {resp}")),
    }
    // Raw: whatever lb sent must not look like a complete response.
    let raw = b"GET /__echo/close-mid-response HTTP/1.1\r\nHost: a.com\r\n\r\n";
    let (responses, _) = bed.ok(lb_testbed::l7::raw_exchange(bed.http_addr(), raw, Duration::from_secs(3)).await);
    for r in &responses {
        assert!(r.status >= 500 || r.truncated, "complete-looking response to a truncated upstream answer: {r:?}");
    }
    for i in 0..3 {
        let resp = bed.ok(bed.get("a.com", &format!("/after{i}")).await);
        assert_eq!(resp.status, 200, "the next request works: {resp}");
    }
}

#[tokio::test]
async fn external_name_service_resolved_through_dns() {
    let mut bed = L7Bed::new().unwrap();
    let pod = bed.echo("external").unwrap();
    let dns = FakeDns::start(SocketAddr::from((unique_loopback_ip(), 5353)), &[("db.example.test", pod.ip())]).unwrap();
    bed.write(
        "services.yaml",
        &docs(&[
            Service::external_name("ext", "db.example.test").port("http", ECHO_PORT, ECHO_PORT).yaml(),
            Service::external_name("missing", "missing.example.test").port("http", ECHO_PORT, ECHO_PORT).yaml(),
        ]),
    )
    .unwrap();
    let ing = Ingress::new("ext")
        .class("lb")
        .rule(Rule::host("a.com").prefix("/ext", "ext", ECHO_PORT).prefix("/missing", "missing", ECHO_PORT));
    bed.ingress("ext", &ing).unwrap();
    let opts = LbOptions { dns_server: Some(dns.addr()), ..LbOptions::default() };
    bed.start_lb_with(opts).await.expect("lb starts");
    let resp = bed.ok(bed.get("a.com", "/ext/x").await);
    assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("external")), "{resp}");
    assert_eq!(resp.echo().unwrap().path, "/ext/x");
    let resp = bed.ok(bed.get("a.com", "/missing").await);
    assert_eq!(resp.status, 502, "unresolvable ExternalName: {resp}");
    assert!(dns.queries() > 0);
}
