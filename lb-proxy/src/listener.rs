//! Client connections: TLS handshake (bounded), protocol choice (ALPN, or
//! hyper-util's auto detection of the HTTP/2 preface on plain HTTP), hyper's
//! hardening settings, the idle timeout, and graceful shutdown.
//!
//! Draining is done per connection with the hook hyper-util's
//! `GracefulShutdown` uses (`graceful_shutdown()` on the connection when a
//! shared watch channel flips); it is done here rather than with
//! `GracefulShutdown::watch` because the same per-connection hook also
//! closes idle connections, and `GracefulConnection` cannot wrap a
//! connection with its own idle timer (the trait is sealed).
//!
//! When the drain starts, a connection with a request in flight is shut
//! down gracefully at once (hyper then ends an HTTP/1.1 response with
//! `Connection: close`, and sends GOAWAY on HTTP/2). A connection with no
//! request in flight is not closed at once: hyper would close an idle
//! HTTP/1.1 connection on the spot, and a request the client is sending
//! at that moment (on a kept-alive connection, or as the first request of
//! a connection accepted just before the drain) would meet a reset. It
//! gets up to `drain_idle` for its next request, which is answered and
//! then closes it as above; only a connection that sends nothing in that
//! time is closed idle (HAProxy's `idle-close-on-response` does the same).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::body::MeteredBody;
use crate::conn::{ActiveRequest, ConnState, HeadTimer, ObservedIo};
use crate::forwarded::Scheme;
use crate::handler::{ConnInfo, Shared, handle};
use crate::streams::{StreamSet, WithStreams};

/// HTTP/2 keep-alive pings to clients: interval and ack timeout (a dead
/// peer is noticed within a minute).
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// hyper's smallest accepted HTTP/1.1 read buffer.
const H1_MIN_BUF: usize = 8192;

/// The client-side limits of [`ProxyConfig`](crate::config::ProxyConfig).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_header_bytes: usize,
    /// While draining, how long an idle connection waits for its next request.
    pub drain_idle: Duration,
}

/// Which protocol the client will speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// Plain HTTP or TLS without ALPN: HTTP/1.1, or HTTP/2 if the client
    /// starts with the HTTP/2 preface.
    Detect,
    Http1,
    Http2,
}

/// Serves one plain-HTTP connection.
pub(crate) async fn serve_plain(
    stream: TcpStream,
    client: SocketAddr,
    shared: Arc<Shared>,
    limits: ClientLimits,
    drain: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else { return };
    let info = ConnInfo::new(client, local, Scheme::Http);
    serve(stream, Protocol::Detect, info, shared, limits, drain).await;
}

/// Serves one TLS connection: handshake within the timeout, then HTTP per
/// the negotiated ALPN protocol.
pub(crate) async fn serve_tls(
    stream: TcpStream,
    client: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    limits: ClientLimits,
    drain: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else { return };
    let tls = match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%client, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake timed out");
            return;
        }
    };
    let protocol = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        Some(_) => Protocol::Http1,
        None => Protocol::Detect,
    };
    let info = ConnInfo::new(client, local, Scheme::Https);
    serve(tls, protocol, info, shared, limits, drain).await;
}

async fn serve<I>(
    io: I,
    protocol: Protocol,
    info: ConnInfo,
    shared: Arc<Shared>,
    limits: ClientLimits,
    mut drain: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _open = shared.metrics.as_ref().map(|metrics| metrics.connection_opened());
    let state = ConnState::new();
    let streams = StreamSet::default();
    let builder = builder(protocol, &limits, &state, &streams);
    let service_state = state.clone();
    let client = info.client;
    let info = Arc::new(info);
    let service = service_fn(move |request| {
        let active = ActiveRequest::begin(&service_state);
        let shared = shared.clone();
        let info = Arc::clone(&info);
        async move {
            let (response, observation) = handle(&shared, &info, request).await;
            Ok::<_, Infallible>(response.map(|body| MeteredBody::new(body, active, observation)))
        }
    });
    let io = TokioIo::new(ObservedIo::new(io, state.clone()));
    let mut connection = WithStreams::new(builder.serve_connection_with_upgrades(io, service), &streams);
    let mut closing = false;
    // Set when the drain starts: the latest time to close an idle connection.
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        let idle_deadline = state.idle_deadline(limits.idle_timeout, limits.header_timeout);
        let idle = async {
            match idle_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                // A request is in flight: look again later.
                None => tokio::time::sleep(limits.idle_timeout).await,
            }
        };
        // While draining: a request began, or the idle wait is over.
        let drain_now = async {
            match draining {
                Some(deadline) => {
                    tokio::select! {
                        () = state.request_begun() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut connection => {
                if let Err(error) = result {
                    tracing::debug!(%client, error = %crate::errors::error_chain(&*error), "client connection ended with an error");
                }
                break;
            }
            () = idle, if !closing => {
                if idle_deadline.is_some() && state.idle_deadline(limits.idle_timeout, limits.header_timeout) == idle_deadline {
                    tracing::debug!(%client, "closing idle client connection");
                    connection.connection().graceful_shutdown();
                    closing = true;
                }
            }
            _ = drain.wait_for(|drain| *drain), if !closing && draining.is_none() => {
                if state.busy() {
                    connection.connection().graceful_shutdown();
                    closing = true;
                } else {
                    draining = Some(tokio::time::Instant::now() + limits.drain_idle);
                }
            }
            () = drain_now, if !closing => {
                // An old wake-up (a request that already ended) leaves the
                // connection idle: wait on, until the deadline.
                if state.busy() || draining.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
                    connection.connection().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// The HTTP server of one connection; its HTTP/2 streams go to `streams`.
fn builder(
    protocol: Protocol,
    limits: &ClientLimits,
    state: &Arc<ConnState>,
    streams: &StreamSet,
) -> auto::Builder<StreamSet> {
    let mut builder = auto::Builder::new(streams.clone());
    builder
        .http1()
        .timer(HeadTimer::new(state.clone(), limits.header_timeout))
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(H1_MIN_BUF))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    match protocol {
        Protocol::Detect => builder,
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    }
}
