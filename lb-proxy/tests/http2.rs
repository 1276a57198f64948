//! HTTP/2 clients (TLS with ALPN, h2c prior knowledge) and h2c backends.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lb_routes::UpstreamProtocol;
use tokio::net::{TcpListener, TcpStream};

async fn h2_request<T>(io: T, request: Request<Full<Bytes>>) -> Response<Incoming>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.unwrap();
    tokio::spawn(connection);
    within(sender.send_request(request)).await.unwrap()
}

#[tokio::test]
async fn h2_over_tls_to_h1_backend() {
    let live = echo_backend("a").await;
    let proxy = start(single(Some("a.com"), backend("a", vec![live], UpstreamProtocol::Http1))).await;
    let tls = tls_connect(proxy.https, "a.com", &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let request = Request::post("https://a.com/x?y=1")
        .header("user-agent", "h2-client")
        .body(Full::new(Bytes::from_static(b"body")))
        .unwrap();
    let answer = answer(h2_request(tls, request).await).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.field("version").unwrap(), "HTTP/1.1");
    assert_eq!(answer.field("uri").unwrap(), "/x?y=1");
    assert_eq!(answer.field("body").unwrap(), "body");
    assert_eq!(answer.seen("host"), ["a.com"]);
    assert_eq!(answer.seen("x-forwarded-proto"), ["https"]);
    assert_eq!(answer.seen("user-agent"), ["h2-client"]);
    assert_eq!(answer.headers["server"], "lb");
    proxy.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_to_h1_backend() {
    let live = echo_backend("a").await;
    let proxy = start(single(Some("a.com"), backend("a", vec![live], UpstreamProtocol::Http1))).await;
    let stream = TcpStream::connect(proxy.http).await.unwrap();
    let request = Request::get("http://a.com/h2c").body(Full::default()).unwrap();
    let answer = answer(h2_request(stream, request).await).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.field("version").unwrap(), "HTTP/1.1");
    assert_eq!(answer.seen("host"), ["a.com"]);
    proxy.shutdown().await;
}

/// An h2c-only backend answering with what it saw (its name, version,
/// URI, `:authority`, `te`, `Host`, body) and gRPC-style trailers; counts
/// the connections it accepted.
async fn grpc_like_backend(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| async move {
                    let te = request.headers().get("te").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                    let head = format!(
                        "backend={name}\nversion={:?}\nuri={}\nauthority={:?}\nte={te}\nhost={:?}\n",
                        request.version(),
                        request.uri(),
                        request.uri().authority().map(|a| a.as_str().to_owned()),
                        request.headers().get("host")
                    );
                    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let text = format!("{head}body={}\n", String::from_utf8_lossy(&body));
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let body = Full::new(Bytes::from(text)).with_trailers(async move { Some(Ok(trailers)) });
                    Ok::<_, Infallible>(
                        Response::builder().header("content-type", "application/grpc").body(body).unwrap(),
                    )
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn h2c_backend_with_trailers() {
    let (grpc, _) = grpc_like_backend("g").await;
    let proxy = start(single(Some("grpc.com"), backend("g", vec![grpc], UpstreamProtocol::H2c))).await;

    // HTTP/2 client (h2c): trailers come through.
    let stream = TcpStream::connect(proxy.http).await.unwrap();
    let request = Request::post("http://grpc.com/pkg.Svc/Call")
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let response = h2_request(stream, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let collected = within(response.into_body().collect()).await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    let text = String::from_utf8(collected.to_bytes().to_vec()).unwrap();
    assert!(text.contains("version=HTTP/2.0"), "{text}");
    assert!(text.contains("te=trailers"), "{text}");
    assert!(text.contains("uri=http://grpc.com/pkg.Svc/Call"), "{text}");
    assert!(text.contains("authority=Some(\"grpc.com\")"), "{text}");
    assert!(text.contains("host=None"), "{text}");

    // HTTP/1.1 client: translated to HTTP/2 upstream.
    let answer = get(proxy.http, "grpc.com", "/h1").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("version=HTTP/2.0"), "{}", answer.body);
    proxy.shutdown().await;
}

/// `:authority` is the client's host (RFC 9113 8.3.1: no `Host` that could
/// differ), while requests are still balanced over the endpoints, one
/// multiplexed connection each.
#[tokio::test]
async fn h2c_authority_is_the_client_host_and_requests_spread() {
    let (one, one_connections) = grpc_like_backend("one").await;
    let (two, two_connections) = grpc_like_backend("two").await;
    let proxy = start(single(Some("grpc.com"), backend("g", vec![one, two], UpstreamProtocol::H2c))).await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        // HTTP/1.1 client, with a port in its Host.
        let answer = get(proxy.http, "grpc.com:8080", "/h1").await;
        assert_eq!(answer.status, StatusCode::OK, "request {i}");
        assert!(answer.body.contains("authority=Some(\"grpc.com:8080\")"), "{}", answer.body);
        assert!(answer.body.contains("uri=http://grpc.com:8080/h1\n"), "{}", answer.body);
        assert!(answer.body.contains("host=None"), "{}", answer.body);
        seen.insert(answer.body.lines().next().unwrap().to_owned());

        // HTTP/2 client: its :authority goes through.
        let stream = TcpStream::connect(proxy.http).await.unwrap();
        let request = Request::post("http://grpc.com/pkg.Svc/Call").body(Full::new(Bytes::from_static(b"x"))).unwrap();
        let collected = within(h2_request(stream, request).await.into_body().collect()).await.unwrap();
        let text = String::from_utf8(collected.to_bytes().to_vec()).unwrap();
        assert!(text.contains("authority=Some(\"grpc.com\")"), "{text}");
        assert!(text.contains("host=None"), "{text}");
        assert!(text.contains("body=x\n"), "{text}");
        seen.insert(text.lines().next().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(one_connections.load(Ordering::SeqCst), 1);
    assert_eq!(two_connections.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
}

/// A dead h2c endpoint is skipped, request bodies included.
#[tokio::test]
async fn h2c_connect_failure_retries_another_endpoint() {
    let (live, _) = grpc_like_backend("live").await;
    let dead = closed_port().await;
    let proxy = start(single(None, backend("g", vec![dead, live], UpstreamProtocol::H2c))).await;
    for i in 0..10 {
        let request = Request::post("/form").header("host", "a").body(Full::new(Bytes::from_static(b"data"))).unwrap();
        let answer = h1(proxy.http, request).await;
        assert_eq!(answer.status, StatusCode::OK, "post {i}");
        assert!(answer.body.contains("backend=live\n"), "{}", answer.body);
        assert!(answer.body.contains("body=data\n"), "{}", answer.body);
    }
    proxy.shutdown().await;
}

/// An h2c endpoint that closes its connections (GOAWAY after each request)
/// gets a new connection for the next request.
#[tokio::test]
async fn closed_h2c_connection_is_replaced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (done, answered) = tokio::sync::oneshot::channel::<()>();
                let done = std::sync::Mutex::new(Some(done));
                let service = service_fn(move |_request: Request<Incoming>| {
                    if let Some(done) = done.lock().unwrap().take() {
                        let _ = done.send(());
                    }
                    async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
                });
                let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => return,
                    _ = answered => connection.as_mut().graceful_shutdown(),
                }
                let _ = connection.await;
            });
        }
    });
    let proxy = start(single(None, backend("g", vec![addr], UpstreamProtocol::H2c))).await;
    for i in 0..3 {
        let answer = get(proxy.http, "a.com", "/").await;
        assert_eq!(answer.status, StatusCode::OK, "request {i}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    proxy.shutdown().await;
}
