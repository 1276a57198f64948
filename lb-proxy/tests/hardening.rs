//! Smuggling, oversize heads, slow heads, idle connections, broken
//! upstreams.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use lb_routes::UpstreamProtocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn responses(raw: &str) -> usize {
    raw.matches("HTTP/1.1 ").count()
}

/// The backend must see exactly the requests the client got answers to:
/// no request hidden in a body reaches it as a request of its own.
#[tokio::test]
async fn smuggling_attempts_never_desync_the_backend() {
    let attempts: [&[u8]; 4] = [
        // CL.TE
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        // TE.CL
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2c\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\nX: 123456\r\n\r\n0\r\n\r\n",
        // Two different Content-Lengths.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        // An obfuscated Transfer-Encoding.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 37\r\nTransfer-Encoding: xchunked\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for (i, attempt) in attempts.iter().enumerate() {
        let (addr, seen) = counting_backend("a").await;
        let proxy = start(single(None, backend("a", vec![addr], UpstreamProtocol::Http1))).await;
        let out = raw(proxy.http, attempt, Duration::from_secs(1)).await;
        let answered = responses(&out);
        let forwarded_ok = out.matches("backend=a").count();
        assert_eq!(seen.load(Ordering::SeqCst), forwarded_ok, "attempt {i}: {out}");
        assert!(answered >= forwarded_ok, "attempt {i}: {out}");
        assert!(!out.contains("uri=/smuggled") || answered == 2, "attempt {i}: {out}");
        // The pooled upstream connection still works for someone else.
        let answer = get(proxy.http, "a", "/after").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.field("uri").unwrap(), "/after");
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn oversize_request_head_is_rejected() {
    let live = echo_backend("a").await;
    let proxy = start(single(None, backend("a", vec![live], UpstreamProtocol::Http1))).await;
    let big = "v".repeat(40 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n");
    let out = raw(proxy.http, request.as_bytes(), Duration::from_secs(3)).await;
    assert!(out.starts_with("HTTP/1.1 431") || out.starts_with("HTTP/1.1 400"), "{out}");

    // HTTP/2: the stream is refused or answered 431, the proxy stays up.
    let stream = TcpStream::connect(proxy.http).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get("http://a/").header("x-big", &big).body(Full::<Bytes>::default()).unwrap();
    match within(sender.send_request(request)).await {
        Ok(response) => assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(error) => assert!(!error.is_timeout()),
    }
    assert_eq!(get(proxy.http, "a", "/").await.status, StatusCode::OK);
    proxy.shutdown().await;
}

#[tokio::test]
async fn slow_request_head_is_cut_but_idle_keep_alive_is_not() {
    let live = echo_backend("a").await;
    let config = lb_proxy::ProxyConfig {
        client_header_timeout: Duration::from_millis(300),
        client_idle_timeout: Duration::from_millis(1500),
        ..config()
    };
    let proxy = start_with(config, single(None, backend("a", vec![live], UpstreamProtocol::Http1))).await;

    // Slowloris: half a head, then nothing.
    let started = Instant::now();
    let out = raw(proxy.http, b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow:", Duration::from_secs(5)).await;
    assert!(!out.contains("200"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    // Silence, or a partial HTTP/2 preface (still in protocol detection):
    // closed by the same timeout.
    for silence in [&b""[..], &b"PRI * HTTP/2.0\r\n"[..]] {
        let started = Instant::now();
        let out = raw(proxy.http, silence, Duration::from_secs(5)).await;
        assert!(out.is_empty(), "{out}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    // A keep-alive connection idle for longer than the head timeout still
    // serves its next request, then is closed by the idle timeout.
    let stream = TcpStream::connect(proxy.http).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    for _ in 0..2 {
        let request = Request::get("/").header("host", "a").body(Full::<Bytes>::default()).unwrap();
        let response = within(sender.send_request(request)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        within(response.into_body().collect()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let idle_since = Instant::now();
    within(connection).await.unwrap().unwrap();
    assert!(idle_since.elapsed() < Duration::from_secs(2));

    // A head that trickles in after an idle pause is still timed.
    let mut stream = TcpStream::connect(proxy.http).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = within(stream.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let n = within(stream.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(started.elapsed() < Duration::from_millis(1200), "{:?}", started.elapsed());
    proxy.shutdown().await;
}

/// Sends a response head promising 1000 bytes, 10 of them, and closes.
async fn truncating_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789").await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn backend_closing_mid_response_only_breaks_that_response() {
    let broken = truncating_backend().await;
    let live = echo_backend("good").await;
    let mut builder = lb_routes::RouteTableBuilder::new();
    let b = backend("broken", vec![broken], UpstreamProtocol::Http1);
    builder.add_route(Some(&host("broken.com")), route("/", lb_routes::PathType::Prefix, b)).unwrap();
    let g = backend("good", vec![live], UpstreamProtocol::Http1);
    builder.add_route(Some(&host("good.com")), route("/", lb_routes::PathType::Prefix, g)).unwrap();
    let proxy = start(builder.build()).await;

    let stream = TcpStream::connect(proxy.http).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::get("/").header("host", "broken.com").body(Full::<Bytes>::default()).unwrap();
    let response = within(sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(within(response.into_body().collect()).await.is_err(), "the body must end in an error");

    for _ in 0..3 {
        let answer = get(proxy.http, "good.com", "/").await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    // Over HTTP/2 the broken response is a reset stream; the connection lives.
    let stream = TcpStream::connect(proxy.http).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get("http://broken.com/").body(Full::<Bytes>::default()).unwrap();
    let response = within(sender.send_request(request)).await.unwrap();
    assert!(within(response.into_body().collect()).await.is_err());
    let request = Request::get("http://good.com/").body(Full::<Bytes>::default()).unwrap();
    let response = within(sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    proxy.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let live = echo_backend("a").await;
    let config = lb_proxy::ProxyConfig { shutdown_grace: Duration::from_secs(5), ..config() };
    let proxy = start_with(config, single(None, backend("a", vec![live], UpstreamProtocol::Http1))).await;
    let http = proxy.http;
    // `/slow` answers after 3 s, within the grace.
    let slow = tokio::spawn(get(http, "a", "/slow"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(proxy.shutdown());
    let answer = within(slow).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    within(stopping).await.unwrap();
    // Not listening any more.
    assert!(TcpStream::connect(http).await.is_err());
}

/// A chunked body the client breaks fails the upstream request; the
/// client is answered 400 (its fault), not 502, on either upstream
/// protocol, at once (not after the upstream timeout), and the backend
/// stays usable.
#[tokio::test]
async fn malformed_chunked_bodies_are_400_on_both_upstream_protocols() {
    let live = serve(|request| echo_request("a", request)).await;
    let long_extension = format!("5;x={}\r\nhello\r\n0\r\n\r\n", "e".repeat(20 * 1024));
    let bodies = ["zz\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\nzz\r\n0\r\n\r\n", &long_extension];
    for (protocol, version) in [(UpstreamProtocol::Http1, "HTTP/1.1"), (UpstreamProtocol::H2c, "HTTP/2.0")] {
        let proxy = start(single(None, backend("a", vec![live], protocol))).await;
        for body in bodies {
            let request = format!("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
            let started = Instant::now();
            let out = raw(proxy.http, request.as_bytes(), Duration::from_secs(4)).await;
            assert!(out.starts_with("HTTP/1.1 400 "), "{protocol:?}, {:?}: {out}", &body[..8]);
            assert_eq!(responses(&out), 1, "{out}");
            assert!(started.elapsed() < Duration::from_secs(3), "{protocol:?}: {:?}", started.elapsed());
        }
        let good = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                    5\r\nhello\r\n6;k=v\r\n world\r\n0\r\n\r\n";
        let out = raw(proxy.http, good.as_bytes(), Duration::from_secs(4)).await;
        assert!(out.starts_with("HTTP/1.1 200 ") && out.contains("body=hello world\n"), "{protocol:?}: {out}");
        assert!(out.contains(&format!("version={version}\n")), "{protocol:?}: {out}");
        proxy.shutdown().await;
    }
}
