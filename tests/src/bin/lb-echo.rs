//! `lb-echo`: the stand-in for the users' echo pods.
//!
//! HTTP on every `--http` address, HTTP/1.1 (keep-alive) and HTTP/2 with
//! prior knowledge (h2c) on the same listener: each request gets `200`,
//! header `x-pod-name: POD`, and a JSON body describing the request as
//! received ([`lb_testbed::echo::EchoRequest`]). A request with `Upgrade:
//! websocket` becomes a WebSocket whose text messages are echoed as `POD
//! <message>`. The same over TLS on every `--https` address (a self-signed
//! certificate, ALPN `h2` and `http/1.1`): those answers also carry
//! `x-echo-tls: 1` and `x-echo-sni` (the SNI name the client sent, `-` for
//! none). Test behaviours on special paths:
//!
//! - `/__echo/close-mid-response`: a head with `Content-Length: 1000`, 10
//!   bytes of body, then the connection is closed;
//! - `/__echo/slow?ms=N`: answers after N ms (at most 60000);
//! - `/__echo/status?code=N`: answers with status N;
//! - a path starting with a `--status-for PREFIX=CODE` prefix: status CODE
//!   (this pod only, e.g. one failing pod among healthy ones).
//!
//! UDP on every `--udp` address: each datagram gets `POD <payload>` back.
//! Logs go to stderr.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use lb_testbed::echo::{
    CLOSE_MID_RESPONSE_LENGTH, CLOSE_MID_RESPONSE_PATH, CLOSE_MID_RESPONSE_SENT, EchoRequest, MAX_SLOW_MS,
    POD_NAME_HEADER, REMOTE_ADDR_HEADER, SLOW_PATH, STATUS_PATH, udp_reply, ws_reply,
};
use lb_testbed::l7::upstream::{ECHO_SNI_HEADER, ECHO_TLS_HEADER};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{SignalKind, signal};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Largest request body kept for the answer (the rest is read and
/// dropped, so the connection stays reusable, as a real server's does).
const MAX_REQUEST_BODY: usize = 1 << 20;
/// Largest request body read at all: past it the connection is given up.
const MAX_DRAINED_BODY: usize = 64 << 20;

type EchoBody = BoxBody<Bytes, std::io::Error>;

#[derive(Parser, Debug)]
#[command(name = "lb-echo", about = "Echo pod: answers HTTP, WebSocket and UDP with its pod name")]
struct Args {
    /// Pod name to answer with (default: env POD_NAME, else the hostname).
    #[arg(long, env = "POD_NAME")]
    name: Option<String>,
    /// HTTP listen address (repeatable; default 0.0.0.0:80).
    #[arg(long = "http", value_name = "ADDR")]
    http: Vec<SocketAddr>,
    /// UDP listen address (repeatable; default 0.0.0.0:5353).
    #[arg(long = "udp", value_name = "ADDR")]
    udp: Vec<SocketAddr>,
    /// HTTPS listen address (repeatable; none by default).
    #[arg(long = "https", value_name = "ADDR")]
    https: Vec<SocketAddr>,
    /// Requests whose path starts with PREFIX get status CODE (repeatable).
    #[arg(long = "status-for", value_name = "PREFIX=CODE", value_parser = parse_status_for)]
    status_for: Vec<(String, StatusCode)>,
    /// Log every request.
    #[arg(short, long)]
    verbose: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("lb-echo: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(mut args: Args) -> Result<()> {
    let pod: Arc<str> = match args.name.take() {
        Some(n) => n.into(),
        None => hostname().into(),
    };
    if args.http.is_empty() {
        args.http.push("0.0.0.0:80".parse()?);
    }
    if args.udp.is_empty() {
        args.udp.push("0.0.0.0:5353".parse()?);
    }
    let served = Arc::new(Served { pod: pod.clone(), verbose: args.verbose, status_for: args.status_for });
    for addr in &args.http {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding HTTP {addr}"))?;
        eprintln!("lb-echo {pod}: HTTP on {addr}");
        tokio::spawn(serve_http(listener, served.clone(), None));
    }
    if !args.https.is_empty() {
        let acceptor = tls_acceptor()?;
        for addr in &args.https {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("binding HTTPS {addr}"))?;
            eprintln!("lb-echo {pod}: HTTPS on {addr}");
            tokio::spawn(serve_http(listener, served.clone(), Some(acceptor.clone())));
        }
    }
    for addr in &args.udp {
        let socket = UdpSocket::bind(addr).await.with_context(|| format!("binding UDP {addr}"))?;
        eprintln!("lb-echo {pod}: UDP on {addr}");
        tokio::spawn(serve_udp(socket, pod.clone(), args.verbose));
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("lb-echo {pod}: shutting down");
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// What every connection of the pod shares.
struct Served {
    pod: Arc<str>,
    verbose: bool,
    status_for: Vec<(String, StatusCode)>,
}

/// How a request reached the pod: the client's address and, over TLS, the
/// SNI name it sent (`-` for none).
#[derive(Clone)]
struct Via {
    remote: SocketAddr,
    sni: Option<String>,
}

fn parse_status_for(value: &str) -> Result<(String, StatusCode), String> {
    let (prefix, code) = value.split_once('=').ok_or("PREFIX=CODE")?;
    let code = code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()).ok_or("CODE: an HTTP status")?;
    Ok((prefix.to_string(), code))
}

/// A self-signed certificate for any name, ALPN `h2` and `http/1.1`.
fn tls_acceptor() -> Result<TlsAcceptor> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["echo.test".to_string()])?.self_signed(&key)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve_http(listener: TcpListener, served: Arc<Served>, tls: Option<TlsAcceptor>) {
    let pod = served.pod.clone();
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("lb-echo {pod}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let served = served.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, served, Via { remote, sni: None }).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let sni = Some(stream.get_ref().1.server_name().unwrap_or("-").to_string());
                        serve_connection(stream, served, Via { remote, sni }).await;
                    }
                    Err(e) => eprintln!("lb-echo {}: TLS handshake from {remote}: {e}", served.pod),
                },
            }
        });
    }
}

async fn serve_connection<S>(stream: S, served: Arc<Served>, via: Via)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(|req| answer(req, served.clone(), via.clone()));
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await
        && served.verbose
    {
        eprintln!("lb-echo {}: connection from {}: {e}", served.pod, via.remote);
    }
}

fn full(body: impl Into<Bytes>) -> EchoBody {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

fn query_param(query: Option<&str>, name: &str) -> Option<u64> {
    query?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).and_then(|(_, v)| v.parse().ok())
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    let has_token = |name, token: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(UPGRADE, "websocket") && req.headers().contains_key(SEC_WEBSOCKET_KEY)
}

/// The first [`MAX_REQUEST_BODY`] bytes of the body (UTF-8, lossy), the
/// rest read and dropped (up to [`MAX_DRAINED_BODY`]).
async fn read_body(mut body: Incoming) -> String {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read <= MAX_DRAINED_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read += data.len();
                    let room = MAX_REQUEST_BODY.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

async fn answer(mut req: Request<Incoming>, served: Arc<Served>, via: Via) -> Result<Response<EchoBody>, Infallible> {
    let (pod, remote, verbose) = (served.pod.clone(), via.remote, served.verbose);
    if verbose {
        eprintln!("lb-echo {pod}: {remote} {} {} {:?}", req.method(), req.uri(), req.version());
    }
    if is_websocket(&req) {
        let mut response = websocket(&mut req, pod, remote, verbose);
        mark_tls(&mut response, &via);
        return Ok(response);
    }
    let (parts, body) = req.into_parts();
    let body = read_body(body).await;
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| parts.uri.to_string());
    let version = format!("{:?}", parts.version);
    let echo = EchoRequest {
        pod: pod.to_string(),
        method: parts.method.to_string(),
        request_line: format!("{} {path} {version}", parts.method),
        path,
        version,
        authority: parts.uri.authority().map(|a| a.to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body,
        remote_addr: remote.to_string(),
    };
    let mut status = StatusCode::OK;
    match parts.uri.path() {
        CLOSE_MID_RESPONSE_PATH => {
            let response = Response::builder()
                .header(POD_NAME_HEADER, pod.as_ref())
                .header(CONTENT_LENGTH, CLOSE_MID_RESPONSE_LENGTH)
                .body(BodyExt::boxed(Truncated {
                    sent: false,
                    pause: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
                }))
                .expect("valid response");
            return Ok(response);
        }
        SLOW_PATH => {
            let ms = query_param(parts.uri.query(), "ms").unwrap_or(1000).min(MAX_SLOW_MS);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        STATUS_PATH => {
            let code = query_param(parts.uri.query(), "code").and_then(|c| u16::try_from(c).ok());
            status = code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::BAD_REQUEST);
        }
        path => {
            if let Some((_, code)) = served.status_for.iter().find(|(prefix, _)| path.starts_with(prefix.as_str())) {
                status = *code;
            }
        }
    }
    let bodyless = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let mut response = Response::builder()
        .status(status)
        .header(POD_NAME_HEADER, pod.as_ref())
        .header(REMOTE_ADDR_HEADER, remote.to_string())
        .header(CONTENT_TYPE, "application/json")
        .body(if bodyless { full(Bytes::new()) } else { full(echo.to_json()) })
        .unwrap_or_else(|_| Response::new(full("bad pod name\n")));
    mark_tls(&mut response, &via);
    Ok(response)
}

/// `x-echo-tls: 1` and `x-echo-sni` on answers over TLS.
fn mark_tls(response: &mut Response<EchoBody>, via: &Via) {
    if let Some(sni) = &via.sni
        && let Ok(sni) = http::HeaderValue::from_str(sni)
    {
        response.headers_mut().insert(ECHO_TLS_HEADER, http::HeaderValue::from_static("1"));
        response.headers_mut().insert(ECHO_SNI_HEADER, sni);
    }
}

/// 101 Switching Protocols, then echoes the messages on the upgraded connection.
fn websocket(req: &mut Request<Incoming>, pod: Arc<str>, remote: SocketAddr, verbose: bool) -> Response<EchoBody> {
    let key = req.headers().get(SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes())).unwrap_or_default();
    let upgrade = hyper::upgrade::on(req);
    let pod_header = pod.to_string();
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                eprintln!("lb-echo {pod}: WebSocket upgrade from {remote}: {e}");
                return;
            }
        };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(msg) = ws.next().await {
            let reply = match msg {
                Ok(Message::Text(text)) => Message::text(ws_reply(&pod, text.as_str())),
                Ok(Message::Binary(data)) => {
                    let mut out = format!("{pod} ").into_bytes();
                    out.extend_from_slice(&data);
                    Message::binary(out)
                }
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(e) => {
                    if verbose {
                        eprintln!("lb-echo {pod}: WebSocket from {remote}: {e}");
                    }
                    break;
                }
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
        let _ = ws.close(None).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "Upgrade")
        .header(SEC_WEBSOCKET_ACCEPT, key)
        .header(POD_NAME_HEADER, pod_header)
        .body(full(Bytes::new()))
        .expect("valid response")
}

/// A body that yields [`CLOSE_MID_RESPONSE_SENT`] bytes and then, once
/// they are flushed, fails, so the server aborts the connection short of the
/// declared length.
struct Truncated {
    sent: bool,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Truncated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.sent {
            std::task::ready!(self.pause.as_mut().poll(cx));
            return Poll::Ready(Some(Err(std::io::Error::other("closing mid-response on purpose"))));
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; CLOSE_MID_RESPONSE_SENT])))))
    }
}

async fn serve_udp(socket: UdpSocket, pod: Arc<str>, verbose: bool) {
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if verbose {
                    eprintln!("lb-echo {pod}: UDP {n} bytes from {from}");
                }
                if let Err(e) = socket.send_to(&udp_reply(&pod, &buf[..n]), from).await {
                    eprintln!("lb-echo {pod}: UDP reply to {from}: {e}");
                }
            }
            Err(e) => {
                eprintln!("lb-echo {pod}: UDP receive: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
