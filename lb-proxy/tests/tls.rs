//! Certificates by SNI from the route table, default certificate otherwise.

mod common;

use common::*;
use lb_routes::{RouteTableBuilder, UpstreamProtocol};

#[tokio::test]
async fn sni_picks_the_table_certificate() {
    let live = echo_backend("a").await;
    let a_cert = certified_key(&["a.com"]);
    let wild_cert = certified_key(&["*.wild.com"]);
    let mut builder = RouteTableBuilder::new();
    let b = backend("a", vec![live], UpstreamProtocol::Http1);
    builder.add_route(Some(&host("a.com")), route("/", lb_routes::PathType::Prefix, b)).unwrap();
    assert!(builder.add_certificate(&host("a.com"), a_cert.clone()));
    assert!(builder.add_certificate(&host("*.wild.com"), wild_cert.clone()));
    let proxy = start(builder.build()).await;

    let tls = tls_connect(proxy.https, "a.com", &[b"http/1.1"]).await;
    assert_eq!(presented(&tls), a_cert.cert[0]);
    let tls = tls_connect(proxy.https, "A.com", &[]).await;
    assert_eq!(presented(&tls), a_cert.cert[0]);
    let tls = tls_connect(proxy.https, "x.wild.com", &[b"h2"]).await;
    assert_eq!(presented(&tls), wild_cert.cert[0]);

    // Unknown name and no SNI (an IP address is never sent as SNI): the default.
    let unknown = presented(&tls_connect(proxy.https, "other.com", &[]).await);
    let no_sni = presented(&tls_connect(proxy.https, "127.0.0.1", &[]).await);
    assert_ne!(unknown, a_cert.cert[0]);
    assert_eq!(unknown, no_sni);
    let text = String::from_utf8_lossy(unknown.as_ref()).into_owned();
    assert!(text.contains("lb default certificate"));

    // A swapped table serves its certificates to the next handshake.
    let new_cert = certified_key(&["a.com"]);
    let mut builder = RouteTableBuilder::new();
    builder.add_certificate(&host("a.com"), new_cert.clone());
    proxy.routes.update(builder.build());
    assert_eq!(presented(&tls_connect(proxy.https, "a.com", &[]).await), new_cert.cert[0]);
    proxy.shutdown().await;
}

#[tokio::test]
async fn slow_tls_handshake_is_closed() {
    let config = lb_proxy::ProxyConfig { tls_handshake_timeout: std::time::Duration::from_millis(300), ..config() };
    let proxy = start_with(config, lb_routes::RouteTable::empty()).await;
    let started = std::time::Instant::now();
    // Connect and send nothing: the proxy gives up on the handshake.
    let out = raw(proxy.https, b"", std::time::Duration::from_secs(5)).await;
    assert!(out.is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    proxy.shutdown().await;
}
