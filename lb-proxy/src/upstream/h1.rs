//! HTTP/1.1 upstreams: keep-alive connections pooled by endpoint address
//! and transport (plain or TLS, see [`tls`](super::tls)), driven in the
//! task of the request that uses them.
//!
//! A connection has no task of its own. The request's task drives it while
//! it waits for the response head, and the response body drives it while
//! the proxy streams that body to the client; when the body is done and the
//! connection can take another request, it goes back to the pool. So a
//! request wakes one task, not two (hyper-util's pooled client runs every
//! connection as a task and hands requests and bodies to it over channels).
//!
//! - Connecting: [`stream::open`](super::stream::open), the HTTP/1.1
//!   handshake, all within the connect timeout of the request that opens
//!   it.
//! - Reuse: the most recently parked connection first. One found closed (or
//!   that closes before taking the request) is dropped and the next one
//!   tried, then a new one: a request the upstream never saw is never
//!   failed for a stale connection.
//! - Not reused: a response body dropped before its end (the client went
//!   away), `Connection: close`, a request body still being sent, a `101`
//!   (the upgraded connection runs in its own task until the splice takes
//!   it).
//! - Eviction: at most [`MAX_IDLE_PER_ENDPOINT`] idle connections per
//!   endpoint (ingress-nginx's `upstream-keepalive-connections`), dropped
//!   after [`POOL_IDLE_TIMEOUT`] idle or when the upstream closes them (seen
//!   by the next use or by a sweep).

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsConnector;

use super::retry::Failure;
use super::{POOL_IDLE_TIMEOUT, UpstreamBody, start_sweeper, stream, tls};
use crate::body::ReclaimableBody;
use crate::errors::error_chain;

/// Idle connections kept per endpoint and transport.
pub(super) const MAX_IDLE_PER_ENDPOINT: usize = 320;

/// An endpoint and whether its connections are TLS.
type Key = (SocketAddr, bool);

/// What runs a connection: reads, writes, and the end of an upgrade.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One open connection.
struct Conn {
    sender: SendRequest<ReclaimableBody>,
    driver: Driver,
}

impl Conn {
    /// Polls the driver once without a task to wake: `true` when the
    /// connection is done (closed or failed).
    fn finished_now(&mut self) -> bool {
        self.driver.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_ready()
    }

    /// Open and ready for a new request, found without waiting.
    fn reusable_now(&mut self) -> bool {
        !self.finished_now() && self.sender.is_ready()
    }
}

/// The HTTP/1.1 connections of one proxy.
pub(super) struct H1Pool {
    idle: Arc<IdleConns>,
    tls: TlsConnector,
}

#[derive(Default)]
struct IdleConns {
    /// Per endpoint, oldest first.
    by_endpoint: Mutex<HashMap<Key, VecDeque<Parked>>>,
}

struct Parked {
    conn: Conn,
    since: Instant,
}

/// How an exchange on a connection ended without a response.
enum Unanswered {
    /// The connection closed before it took the request, given back.
    Unsent(Box<Request<ReclaimableBody>>),
    Failed(Failure),
}

impl H1Pool {
    /// A pool; with a Tokio runtime at hand, also starts its sweeper (which
    /// ends with the pool).
    pub(super) fn new() -> Self {
        let idle = Arc::new(IdleConns::default());
        start_sweeper(&idle, IdleConns::sweep);
        let tls = TlsConnector::from(Arc::new(tls::client_config(&[tls::ALPN_HTTP1])));
        Self { idle, tls }
    }

    /// One attempt on `peer` (TLS when `tls`): on an idle connection, or
    /// on a new one opened within `connect_timeout`. `request` has the
    /// origin form.
    pub(super) async fn send(
        &self,
        peer: SocketAddr,
        tls: bool,
        connect_timeout: Duration,
        mut request: Request<ReclaimableBody>,
    ) -> Result<Response<UpstreamBody>, Failure> {
        let key = (peer, tls);
        while let Some(conn) = self.idle.checkout(key) {
            match exchange(conn, request, &self.idle, key).await {
                Ok(response) => return Ok(response),
                Err(Unanswered::Unsent(unsent)) => {
                    tracing::debug!(%peer, "idle upstream connection closed before taking the request");
                    request = *unsent;
                }
                Err(Unanswered::Failed(failure)) => return Err(failure),
            }
        }
        // Boxed: opening a connection is the rare path, and its future would
        // make every request's future (and each move of it) larger.
        let conn = Box::pin(connect(peer, tls.then_some(&self.tls), connect_timeout)).await?;
        match exchange(conn, request, &self.idle, key).await {
            Ok(response) => Ok(response),
            Err(Unanswered::Unsent(_)) => Err(Failure::Request {
                message: format!("the new connection to {peer} closed before taking the request"),
                invalid_header: false,
            }),
            Err(Unanswered::Failed(failure)) => Err(failure),
        }
    }
}

/// Sends `request` on `conn` and drives the connection until the response
/// head is in; the response body drives it from then on.
async fn exchange(
    conn: Conn,
    request: Request<ReclaimableBody>,
    idle: &Arc<IdleConns>,
    key: Key,
) -> Result<Response<UpstreamBody>, Unanswered> {
    let Conn { mut sender, mut driver } = conn;
    let mut driving = true;
    let mut response = pin!(sender.try_send_request(request));
    let head = poll_fn(|cx| {
        if driving && driver.as_mut().poll(cx).is_ready() {
            // Closed or failed: the response future says how.
            driving = false;
        }
        response.as_mut().poll(cx)
    })
    .await;
    match head {
        Ok(response) if driving && response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            // The driver hands the connection to the upgrade when it ends.
            tokio::spawn(async move {
                if let Err(error) = driver.await {
                    tracing::debug!(error = %error_chain(&error), "upstream connection failed during upgrade");
                }
                drop(sender);
            });
            Ok(response.map(UpstreamBody::without_connection))
        }
        Ok(response) => {
            let lease = driving.then(|| Lease { conn: Conn { sender, driver }, idle: Arc::clone(idle), key });
            Ok(response.map(|body| UpstreamBody::new(body, lease)))
        }
        Err(mut error) => match error.take_message() {
            Some(unsent) => Err(Unanswered::Unsent(Box::new(unsent))),
            None => Err(Unanswered::Failed(failure(&error.into_error()))),
        },
    }
}

/// The connection a response body came on, driven by that body and given
/// back to the pool when the body is done.
pub(crate) struct Lease {
    conn: Conn,
    idle: Arc<IdleConns>,
    key: Key,
}

impl Lease {
    /// Drives the connection (reading the body, writing what is left of
    /// the request): `false` once it is done.
    pub(super) fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.conn.driver.as_mut().poll(cx).is_pending()
    }

    /// After the body's end: the connection goes back to the pool if it
    /// can take another request.
    pub(super) fn release(mut self) {
        if self.conn.reusable_now() {
            self.idle.park(self.key, self.conn);
        }
    }
}

impl IdleConns {
    /// The most recently parked connection to `key` that is still open.
    fn checkout(&self, key: Key) -> Option<Conn> {
        loop {
            let mut conn = {
                let mut by_endpoint = self.by_endpoint.lock().unwrap_or_else(|e| e.into_inner());
                let conns = by_endpoint.get_mut(&key)?;
                let parked = conns.pop_back()?;
                if parked.since.elapsed() >= POOL_IDLE_TIMEOUT {
                    // The newest is too old: so are the others.
                    conns.clear();
                    return None;
                }
                parked.conn
            };
            if conn.reusable_now() {
                return Some(conn);
            }
        }
    }

    fn park(&self, key: Key, conn: Conn) {
        let evicted = {
            let mut by_endpoint = self.by_endpoint.lock().unwrap_or_else(|e| e.into_inner());
            let conns = by_endpoint.entry(key).or_default();
            let evicted = (conns.len() >= MAX_IDLE_PER_ENDPOINT).then(|| conns.pop_front()).flatten();
            conns.push_back(Parked { conn, since: Instant::now() });
            evicted
        };
        drop(evicted);
    }

    /// Drops connections idle for too long or closed by the upstream.
    fn sweep(&self) {
        let mut by_endpoint = self.by_endpoint.lock().unwrap_or_else(|e| e.into_inner());
        by_endpoint.retain(|_, conns| {
            conns.retain_mut(|parked| parked.since.elapsed() < POOL_IDLE_TIMEOUT && parked.conn.reusable_now());
            !conns.is_empty()
        });
    }
}

/// TCP connect, TLS handshake (with `tls`) and HTTP/1.1 handshake within
/// `timeout`.
async fn connect(peer: SocketAddr, tls: Option<&TlsConnector>, timeout: Duration) -> Result<Conn, Failure> {
    let opening = async {
        let stream = stream::open(peer, tls).await?;
        let (sender, connection) = Builder::new()
            .handshake::<_, ReclaimableBody>(TokioIo::new(stream))
            .await
            .map_err(|error| format!("http handshake: {}", error_chain(&error)))?;
        Ok::<_, String>(Conn { sender, driver: Box::pin(connection.with_upgrades()) })
    };
    match tokio::time::timeout(timeout, opening).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(message)) => Err(Failure::Connect { message, timed_out: false }),
        Err(_) => Err(Failure::Connect { message: format!("connect timed out after {timeout:?}"), timed_out: true }),
    }
}

/// The failure of an attempt whose request may have gone out.
fn failure(error: &hyper::Error) -> Failure {
    Failure::Request { message: error_chain(error), invalid_header: error.is_parse() }
}
