//! HTTP/2 upstream connections, with prior knowledge (h2c) or over TLS
//! (ALPN `h2`, `backend-protocol: GRPCS`): at most one multiplexed
//! connection per endpoint address and transport (plain and TLS
//! connections to the same endpoint never mix), shared by all requests to
//! that endpoint.
//!
//! Unlike `hyper_util`'s legacy client, which pools by the request URI's
//! authority, this pool is keyed by the endpoint the request was balanced
//! to, so the request URI (hence `:authority`) can carry the client's host.
//!
//! - Connecting: [`stream::open`](super::stream::open) (TCP, TLS when asked)
//!   and the HTTP/2 handshake, all within the connect timeout of the
//!   request that opens it. Requests that arrive while a connection to
//!   their endpoint is being opened wait for it rather than opening their
//!   own; if that connect fails, they all fail with it.
//! - Sending: a connection found closed before the request went out on it
//!   is replaced by a new one to the same endpoint, for any request.
//! - Liveness: HTTP/2 PING every 30 s while streams are open, the
//!   connection is dropped when a PING is not answered within 20 s.
//! - Eviction: a connection that is closed is replaced on next use; one
//!   that no request used for [`IDLE_TIMEOUT`] is dropped (by the next use
//!   or by a sweep), and hyper closes it once its open streams are done.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};

use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_rustls::TlsConnector;

use super::retry::Failure;
use super::{POOL_IDLE_TIMEOUT, start_sweeper, stream, tls};
use crate::body::ReclaimableBody;
use crate::errors::error_chain;

/// How long a connection no request used is kept.
const IDLE_TIMEOUT: Duration = POOL_IDLE_TIMEOUT;

const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

type H2cSender = SendRequest<ReclaimableBody>;

/// Opening a connection failed (TCP connect, timeout or handshake): no
/// request was sent on it.
#[derive(Clone, Debug)]
struct ConnectError {
    message: Arc<str>,
    timed_out: bool,
}

impl ConnectError {
    fn new(message: String) -> Self {
        Self { message: message.into(), timed_out: false }
    }

    /// The attempt's failure: nothing was sent.
    fn into_failure(self) -> Failure {
        Failure::Connect { message: self.message.to_string(), timed_out: self.timed_out }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// The HTTP/2 connections of one proxy.
pub(super) struct H2cPool {
    inner: Arc<Inner>,
    tls: TlsConnector,
}

/// An endpoint and whether its connection is TLS.
type Key = (SocketAddr, bool);

struct Inner {
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
}

/// One endpoint's connection.
struct Slot {
    /// Connect attempts finished on this slot, successful or not.
    attempts: AtomicU64,
    /// Held while connecting, so that one request connects and the
    /// others wait.
    state: tokio::sync::Mutex<State>,
}

struct State {
    sender: Option<H2cSender>,
    last_used: Instant,
    /// The latest failed connect attempt (its number) and why it failed.
    failure: Option<(u64, ConnectError)>,
}

impl State {
    /// The connection, when it is open and was used recently.
    fn usable(&self, now: Instant) -> Option<&H2cSender> {
        self.sender.as_ref().filter(|sender| !sender.is_closed() && now.duration_since(self.last_used) < IDLE_TIMEOUT)
    }
}

impl H2cPool {
    /// A pool; with a Tokio runtime at hand, also starts its sweeper (which
    /// ends with the pool).
    pub(super) fn new() -> Self {
        let inner = Arc::new(Inner { slots: Mutex::new(HashMap::new()) });
        start_sweeper(&inner, |inner| inner.sweep(Instant::now()));
        let tls = TlsConnector::from(Arc::new(tls::client_config(&[tls::ALPN_H2])));
        Self { inner, tls }
    }

    /// One attempt on the connection to `peer` (TLS when `tls`). A pooled
    /// connection that turns out closed before the request went out on it
    /// is replaced once by a new one.
    pub(super) async fn send(
        &self,
        peer: SocketAddr,
        tls: bool,
        connect_timeout: Duration,
        mut request: Request<ReclaimableBody>,
    ) -> Result<Response<Incoming>, Failure> {
        for _ in 0..2 {
            let mut sender = self.sender(peer, tls, connect_timeout).await.map_err(ConnectError::into_failure)?;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => {
                        tracing::debug!(%peer, error = %error_chain(error.error()), "h2 connection closed, reconnecting");
                        request = unsent;
                    }
                    None => {
                        let error = error.into_error();
                        return Err(Failure::Request {
                            message: error_chain(&error),
                            invalid_header: error.is_parse(),
                        });
                    }
                },
            }
        }
        // The replacement connection closed too before taking the request.
        let message = format!("h2 connections to {peer} close before taking requests");
        Err(Failure::Connect { message, timed_out: false })
    }

    /// A handle on the connection to `peer` (TLS when `tls`), opened within
    /// `connect_timeout` if there is none (or it is closed or idle for too
    /// long).
    async fn sender(&self, peer: SocketAddr, tls: bool, connect_timeout: Duration) -> Result<H2cSender, ConnectError> {
        let slot = self.slot((peer, tls));
        let finished_before = slot.attempts.load(Ordering::Acquire);
        let mut state = slot.state.lock().await;
        let now = Instant::now();
        if let Some(sender) = state.usable(now) {
            let sender = sender.clone();
            state.last_used = now;
            return Ok(sender);
        }
        state.sender = None;
        // A connect attempt that ended while this request waited failed:
        // it fails this request too (rather than each waiting request
        // trying, one after the other, an endpoint that does not answer).
        if let Some((attempt, error)) = &state.failure
            && *attempt > finished_before
        {
            return Err(error.clone());
        }
        let tls = tls.then_some(&self.tls);
        let result = connect(peer, tls, connect_timeout).await;
        let attempt = slot.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match result {
            Ok(sender) => {
                state.sender = Some(sender.clone());
                state.last_used = Instant::now();
                state.failure = None;
                Ok(sender)
            }
            Err(error) => {
                state.failure = Some((attempt, error.clone()));
                Err(error)
            }
        }
    }

    fn slot(&self, key: Key) -> Arc<Slot> {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Slot {
                    attempts: AtomicU64::new(0),
                    state: tokio::sync::Mutex::new(State { sender: None, last_used: Instant::now(), failure: None }),
                })
            })
            .clone()
    }
}

impl Inner {
    /// Drops connections that are closed or idle, and the slots of
    /// endpoints without a connection.
    fn sweep(&self, now: Instant) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|_, slot| {
            // In use by a request (possibly connecting): keep.
            if Arc::strong_count(slot) > 1 {
                return true;
            }
            match slot.state.try_lock() {
                Ok(state) => state.usable(now).is_some(),
                Err(_) => true,
            }
        });
    }
}

/// TCP connect, TLS handshake (with `tls`) and HTTP/2 handshake within
/// `timeout`; the connection runs in its own task.
async fn connect(peer: SocketAddr, tls: Option<&TlsConnector>, timeout: Duration) -> Result<H2cSender, ConnectError> {
    let handshake = async {
        let stream = stream::open(peer, tls).await.map_err(ConnectError::new)?;
        Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .handshake::<_, ReclaimableBody>(TokioIo::new(stream))
            .await
            .map_err(|error| ConnectError::new(format!("http2 handshake: {}", error_chain(&error))))
    };
    let (sender, connection) = tokio::time::timeout(timeout, handshake).await.map_err(|_| ConnectError {
        message: format!("connect timed out after {timeout:?}").into(),
        timed_out: true,
    })??;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%peer, error = %error_chain(&error), "h2 upstream connection failed");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_failure_is_a_connect_error_and_leaves_no_slot_behind() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = listener.local_addr().unwrap();
        drop(listener);
        let pool = H2cPool::new();
        let error = pool.sender(peer, false, Duration::from_secs(2)).await.unwrap_err();
        assert!(error.to_string().contains("tcp connect error"), "{error}");
        pool.inner.sweep(Instant::now());
        assert!(pool.inner.slots.lock().unwrap().is_empty());
    }
}
