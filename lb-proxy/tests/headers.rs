//! What the backend sees and what the client gets back.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use lb_routes::UpstreamProtocol;

#[tokio::test]
async fn request_headers_seen_by_the_backend() {
    let live = echo_backend("a").await;
    let proxy = start(single(None, backend("a", vec![live], UpstreamProtocol::Http1))).await;
    let request = Request::post("/p?b=%20x&a")
        .header("host", "Shop.Example.com:8080")
        .header("user-agent", "test-agent/1")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.com")
        .header("x-request-id", "client-id-1")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy", "http://evil:3128")
        .header("proxy-authorization", "Basic eA==")
        .header("te", "trailers")
        .header("authorization", "Bearer t")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let answer = h1(proxy.http, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.field("method").unwrap(), "POST");
    assert_eq!(answer.field("uri").unwrap(), "/p?b=%20x&a");
    assert_eq!(answer.field("version").unwrap(), "HTTP/1.1");
    assert_eq!(answer.field("body").unwrap(), "hello");
    assert_eq!(answer.seen("host"), ["Shop.Example.com:8080"]);
    assert_eq!(answer.seen("user-agent"), ["test-agent/1"]);
    assert_eq!(answer.seen("authorization"), ["Bearer t"]);
    assert_eq!(answer.seen("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(answer.seen("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(answer.seen("x-forwarded-host"), ["Shop.Example.com:8080"]);
    assert_eq!(answer.seen("x-forwarded-port"), [proxy.http.port().to_string()]);
    assert_eq!(answer.seen("x-forwarded-proto"), ["http"]);
    assert_eq!(answer.seen("x-forwarded-scheme"), ["http"]);
    assert_eq!(answer.seen("x-scheme"), ["http"]);
    assert_eq!(answer.seen("x-request-id"), ["client-id-1"]);
    for gone in ["x-drop-me", "keep-alive", "proxy", "proxy-authorization", "te", "transfer-encoding"] {
        assert!(answer.seen(gone).is_empty(), "{gone} reached the backend");
    }
    // Response: hop-by-hop gone, our Server, the request id.
    assert_eq!(answer.headers["server"], "lb");
    assert_eq!(answer.headers["x-request-id"], "client-id-1");
    assert_eq!(answer.headers["x-backend"], "a");
    assert!(!answer.headers.contains_key("x-hop"));
    assert!(!answer.headers.contains_key("keep-alive"));
    proxy.shutdown().await;
}

#[tokio::test]
async fn request_id_is_generated_when_missing_or_insane() {
    let live = echo_backend("a").await;
    let proxy = start(single(None, backend("a", vec![live], UpstreamProtocol::Http1))).await;
    let answer = get(proxy.http, "a.com", "/").await;
    let id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(answer.seen("x-request-id"), [id]);
    let long = "x".repeat(300);
    let request = Request::get("/").header("host", "a").header("x-request-id", &long).body(Full::default()).unwrap();
    let answer = h1(proxy.http, request).await;
    assert_eq!(answer.headers["x-request-id"].len(), 32);
    proxy.shutdown().await;
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let live = echo_backend("a").await;
    let proxy = start(single(None, backend("a", vec![live], UpstreamProtocol::Http1))).await;
    let big = "z".repeat(3 * 1024 * 1024);
    let request = Request::put("/up").header("host", "a").body(Full::new(Bytes::from(big.clone()))).unwrap();
    let answer = h1(proxy.http, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.field("body").unwrap().len(), big.len());
    proxy.shutdown().await;
}
