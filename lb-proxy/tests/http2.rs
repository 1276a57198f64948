//! HTTP/2 clients (TLS with ALPN, h2c prior knowledge) and h2c backends.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

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

/// An h2c-only backend answering with a body and gRPC-style trailers.
async fn grpc_like_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let te = request.headers().get("te").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                    let text = format!(
                        "version={:?}\nuri={}\nte={te}\nhost={:?}\n",
                        request.version(),
                        request.uri(),
                        request.headers().get("host")
                    );
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
    addr
}

#[tokio::test]
async fn h2c_backend_with_trailers() {
    let grpc = grpc_like_backend().await;
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
    assert!(text.contains("uri=http://") && text.contains("/pkg.Svc/Call"), "{text}");

    // HTTP/1.1 client: translated to HTTP/2 upstream.
    let answer = get(proxy.http, "grpc.com", "/h1").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("version=HTTP/2.0"), "{}", answer.body);
    proxy.shutdown().await;
}
