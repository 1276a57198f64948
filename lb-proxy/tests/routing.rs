//! Routing, built-in answers (404/503/502/504), redirects, hot reload.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use lb_routes::{PathType, RouteTableBuilder, UpstreamProtocol};

#[tokio::test]
async fn routes_by_host_and_path() {
    let (a, b, c) = (echo_backend("a").await, echo_backend("b").await, echo_backend("c").await);
    let mut builder = RouteTableBuilder::new();
    let a_com = host("a.com");
    builder
        .add_route(Some(&a_com), route("/", PathType::Prefix, backend("a", vec![a], UpstreamProtocol::Http1)))
        .unwrap();
    builder
        .add_route(Some(&a_com), route("/api", PathType::Prefix, backend("b", vec![b], UpstreamProtocol::Http1)))
        .unwrap();
    builder.add_route(None, route("/", PathType::Prefix, backend("c", vec![c], UpstreamProtocol::Http1))).unwrap();
    let proxy = start(builder.build()).await;

    assert_eq!(get(proxy.http, "a.com", "/x").await.field("backend").unwrap(), "a");
    assert_eq!(get(proxy.http, "A.COM:80", "/api/v1").await.field("backend").unwrap(), "b");
    assert_eq!(get(proxy.http, "other.com", "/api").await.field("backend").unwrap(), "c");
    // Dot segments are normalised before matching and sent normalised.
    let answer = get(proxy.http, "a.com", "/x/../api/./v1?q=%2F..&b").await;
    assert_eq!(answer.field("backend").unwrap(), "b");
    assert_eq!(answer.field("uri").unwrap(), "/api/v1?q=%2F..&b");
    // HTTP/1.0 without Host: the host-less rules.
    let raw = raw(proxy.http, b"GET /z HTTP/1.0\r\n\r\n", Duration::from_secs(2)).await;
    assert!(raw.starts_with("HTTP/1.0 200") || raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("backend=c"), "{raw}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn no_route_is_404_from_the_default_backend() {
    let proxy = start(lb_routes::RouteTable::empty()).await;
    let answer = get(proxy.http, "a.com", "/").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, "404 Not Found\n");
    assert_eq!(answer.headers["server"], "lb");
    assert_eq!(answer.headers["x-request-id"].len(), 32);
    proxy.shutdown().await;
}

#[tokio::test]
async fn bad_paths_are_400() {
    let proxy = start(lb_routes::RouteTable::empty()).await;
    let answer = get(proxy.http, "a.com", "/a%00b").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let raw = raw(proxy.http, b"GET /x HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n", Duration::from_secs(1)).await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    let raw = raw_connect(proxy.http).await;
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    proxy.shutdown().await;
}

async fn raw_connect(addr: std::net::SocketAddr) -> String {
    raw(addr, b"CONNECT internal:22 HTTP/1.1\r\nHost: internal:22\r\n\r\n", Duration::from_secs(1)).await
}

#[tokio::test]
async fn no_endpoints_is_503() {
    let proxy = start(single(Some("a.com"), backend("empty", vec![], UpstreamProtocol::Http1))).await;
    let answer = get(proxy.http, "a.com", "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body, "503 Service Unavailable\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn external_names() {
    let live = echo_backend("ext").await;
    let mut builder = RouteTableBuilder::new();
    let (ip, bad) = (host("ip.com"), host("bad.com"));
    builder.add_route(Some(&ip), route("/", PathType::Prefix, external("ip", "127.0.0.1", live.port()))).unwrap();
    builder.add_route(Some(&bad), route("/", PathType::Prefix, external("bad", "nothing.invalid", 80))).unwrap();
    let proxy = start(builder.build()).await;
    // An IP literal needs no DNS (the test's name server does not exist).
    let answer = get(proxy.http, "ip.com", "/").await;
    assert_eq!(answer.field("backend").unwrap(), "ext");
    // An unresolvable name is 502.
    let answer = get(proxy.http, "bad.com", "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    proxy.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let slow = echo_backend("slow").await;
    let config = lb_proxy::ProxyConfig { upstream_response_timeout: Duration::from_millis(300), ..config() };
    let proxy = start_with(config, single(None, backend("slow", vec![slow], UpstreamProtocol::Http1))).await;
    let started = std::time::Instant::now();
    let answer = get(proxy.http, "a.com", "/slow").await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(answer.headers["server"], "lb");
    proxy.shutdown().await;
}

#[tokio::test]
async fn tls_hosts_redirect_plain_http_with_308() {
    let live = echo_backend("secure").await;
    let mut builder = RouteTableBuilder::new();
    let secure = host("secure.com");
    builder
        .add_route(Some(&secure), route("/", PathType::Prefix, backend("s", vec![live], UpstreamProtocol::Http1)))
        .unwrap();
    builder.set_tls_redirect(&secure);
    let proxy = start(builder.build()).await;

    let answer = get(proxy.http, "Secure.com:80", "/a/b?x=1&y").await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT);
    let expected = format!("https://secure.com:{}/a/b?x=1&y", proxy.https.port());
    assert_eq!(answer.headers["location"], expected.as_str());
    assert_eq!(answer.headers["server"], "lb");

    // Over TLS the request is proxied.
    let tls = tls_connect(proxy.https, "secure.com", &[b"http/1.1"]).await;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::get("/a").header("host", "secure.com").body(Full::<Bytes>::default()).unwrap();
    let answer = common::answer(within(sender.send_request(request)).await.unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.seen("x-forwarded-proto"), ["https"]);
    assert_eq!(answer.seen("x-forwarded-port"), [proxy.https.port().to_string()]);
    proxy.shutdown().await;
}

#[tokio::test]
async fn route_table_swap_applies_to_new_requests() {
    let (a, b) = (echo_backend("a").await, echo_backend("b").await);
    let proxy = start(single(None, backend("a", vec![a], UpstreamProtocol::Http1))).await;
    // A request in flight across the swap completes on its backend.
    let slow = tokio::spawn(get(proxy.http, "x.com", "/slow"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.routes.update(single(None, backend("b", vec![b], UpstreamProtocol::Http1)));
    assert_eq!(get(proxy.http, "x.com", "/").await.field("backend").unwrap(), "b");
    let slow = within(slow).await.unwrap();
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(slow.field("backend").unwrap(), "a");
    proxy.routes.update(lb_routes::RouteTable::empty());
    assert_eq!(get(proxy.http, "x.com", "/").await.status, StatusCode::NOT_FOUND);
    proxy.shutdown().await;
}
