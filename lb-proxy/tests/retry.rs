//! Connection failures are retried on the next endpoint.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use lb_routes::UpstreamProtocol;

#[tokio::test]
async fn connect_failure_retries_another_endpoint() {
    let live = echo_backend("live").await;
    let dead = closed_port().await;
    let proxy = start(single(None, backend("mixed", vec![dead, live], UpstreamProtocol::Http1))).await;
    // The starting endpoint is random: enough requests hit the dead one first.
    for i in 0..20 {
        let answer = get(proxy.http, "a.com", "/").await;
        assert_eq!(answer.status, StatusCode::OK, "request {i}");
        // Requests with a body too: nothing was sent to the dead endpoint.
        let request = Request::post("/form").header("host", "a").body(Full::new(Bytes::from_static(b"data"))).unwrap();
        let answer = h1(proxy.http, request).await;
        assert_eq!(answer.status, StatusCode::OK, "post {i}");
        assert_eq!(answer.field("body").unwrap(), "data");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn all_endpoints_down_is_502() {
    let dead = vec![closed_port().await, closed_port().await, closed_port().await, closed_port().await];
    let proxy = start(single(None, backend("dead", dead, UpstreamProtocol::Http1))).await;
    let answer = get(proxy.http, "a.com", "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.body, "502 Bad Gateway\n");
    proxy.shutdown().await;
}
