//! Upstream side (after pingora's `connectors`): one request's endpoints,
//! its attempts on pooled connections, its retries, under the route's
//! upstream policy.
//!
//! - [`settings`]: the route's upstream policy over the proxy's defaults,
//!   and the [`Transport`] (HTTP/1.1 or HTTP/2, plain or TLS: the Service
//!   port's `appProtocol` unless `backend-protocol` says otherwise).
//! - [`peers`]: which endpoints a request tries, in which order.
//! - [`request`]: the request each attempt sends.
//! - Pools, created once per proxy and kept across route table swaps, both
//!   keyed by endpoint address and transport: [`h1`], keep-alive HTTP/1.1
//!   connections driven by the requests that use them, and [`h2`], one
//!   multiplexed HTTP/2 connection per endpoint; both open theirs with
//!   [`stream`] (TCP, then [`tls`] for the TLS ones).
//! - [`response`]: the response body, which drives its HTTP/1.1 connection
//!   and gives it back to the pool at its end.
//! - Timeouts: the connect timeout per attempt (TLS handshake included),
//!   the send and read timeouts between operations ([`timeouts`]).
//! - [`retry`]: which failed attempts are tried again on the next
//!   endpoint.

mod h1;
mod h2;
mod peers;
mod request;
mod response;
mod retry;
mod settings;
mod stream;
mod timeouts;
mod tls;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Response;
use http_body::Body as _;
use hyper::body::Incoming;
use lb_routes::{Backend, RoutePolicy, UpstreamProtocol};

use self::h1::H1Pool;
use self::h2::H2cPool;
use self::retry::{Failure, retryable};
use self::settings::Defaults;
use crate::body::{self, LimitedBody, Progress, ReclaimableBody};
use crate::config::ProxyConfig;
use crate::errors::ProxyError;
use crate::resolve::Resolver;

pub(crate) use self::peers::{MAX_ATTEMPTS, Peers};
pub(crate) use self::request::UpstreamRequest;
pub(crate) use self::response::UpstreamBody;
pub(crate) use self::settings::Settings;

/// How long an idle pooled upstream connection is kept (nginx's
/// `keepalive_timeout` for upstreams, as ingress-nginx sets it).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the pools drop idle and closed connections.
const SWEEP_INTERVAL: Duration = Duration::from_secs(15);

/// With a Tokio runtime at hand, runs `sweep` on `pool` every
/// [`SWEEP_INTERVAL`] until the pool is dropped.
fn start_sweeper<T: Send + Sync + 'static>(pool: &std::sync::Arc<T>, sweep: fn(&T)) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let pool = std::sync::Arc::downgrade(pool);
    runtime.spawn(async move {
        let mut interval = tokio::time::interval(SWEEP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            sweep(&pool);
        }
    });
}

/// The upstream pools, resolver and defaults of one proxy.
pub(crate) struct Upstreams {
    http1: H1Pool,
    h2c: H2cPool,
    resolver: Resolver,
    defaults: Defaults,
}

impl Upstreams {
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        Self {
            http1: H1Pool::new(),
            h2c: H2cPool::new(),
            resolver: Resolver::new(&config.dns_servers, config.upstream_connect_timeout),
            defaults: Defaults::new(config),
        }
    }

    /// The settings of a request to a backend of `port` protocol under
    /// `policy` (none: the default backend's, the proxy's defaults).
    pub(crate) fn settings(&self, policy: Option<&RoutePolicy>, port: UpstreamProtocol) -> Settings {
        self.defaults.settings(policy, port)
    }

    /// The endpoints to try for `backend` (see [`Peers::for_backend`]).
    pub(crate) async fn peers(&self, backend: &Backend, tries: usize) -> Result<Peers, ProxyError> {
        Peers::for_backend(backend, tries, &self.resolver).await
    }

    /// Sends the request to the first peer that takes it (see [`retry`]).
    /// Returns the response head (body streaming) and the peer that
    /// answered; on error the last peer tried.
    pub(crate) async fn send(
        &self,
        mut request: UpstreamRequest,
        body: Incoming,
        peers: &Peers,
        settings: &Settings,
    ) -> Result<(Response<UpstreamBody>, SocketAddr), (ProxyError, Option<SocketAddr>)> {
        let replayable_method = request.method.is_idempotent() || settings.next.non_idempotent;
        let body = LimitedBody::new(body, settings.body_limit);
        let client_fault = body.fault();
        let body = ReclaimableBody::new(body);
        let started = Instant::now();
        let attempts = peers.0.len().min(settings.tries);
        for (attempt, &peer) in peers.0.iter().take(attempts).enumerate() {
            let more = attempt + 1 < attempts && settings.next_timeout.is_none_or(|limit| started.elapsed() < limit);
            let progress = Progress::new(body.is_end_stream());
            let upstream = request
                .for_peer(peer, body.for_attempt(progress.clone()), !more)
                .map_err(|_| (ProxyError::Upstream(format!("cannot build the URI for {peer}")), Some(peer)))?;
            let tls = request.transport.tls;
            let exchange = async {
                if request.transport.http2 {
                    // Boxed, so that HTTP/1.1 requests' futures do not carry its size.
                    let response = Box::pin(self.h2c.send(peer, tls, settings.connect_timeout, upstream)).await?;
                    Ok(response.map(UpstreamBody::without_connection))
                } else {
                    self.http1.send(peer, tls, settings.connect_timeout, upstream).await
                }
            };
            let outcome = tokio::select! {
                biased;
                outcome = exchange => outcome,
                expired = timeouts::expired(&progress, settings.read_timeout, settings.send_timeout) => Err(Failure::Expired(expired)),
            };
            let (failure, response) = match outcome {
                Ok(response) if settings.next.retries_status(response.status().as_u16()) => {
                    (Failure::Status(response.status().as_u16()), Some(response))
                }
                Ok(response) => return Ok((response, peer)),
                Err(failure) => (failure, None),
            };
            // The attempt failed because the client's body did: the client
            // is answered for its own fault (413, 400), never retried.
            if let Some(fault) = client_fault.get() {
                tracing::debug!(%peer, failure = %failure, "the client's request body failed");
                return Err((fault.to_error(), Some(peer)));
            }
            let retry = more && retryable(&settings.next, &failure, replayable_method, body.reclaimable());
            tracing::debug!(%peer, failure = %failure, retry, "upstream attempt failed");
            if !retry {
                return match response {
                    // The last endpoint's answer, as it is.
                    Some(response) => Ok((response, peer)),
                    None => Err((failure.into_error(peer), Some(peer))),
                };
            }
        }
        Err((ProxyError::Connect("no endpoint".into()), peers.0.first().copied()))
    }
}

/// The declared body of a request is over the limit of `settings`: 413
/// before anything goes upstream.
pub(crate) fn check_declared_body(body: &Incoming, settings: &Settings) -> Result<(), ProxyError> {
    if body::declared_over(&body.size_hint(), settings.body_limit) {
        return Err(ProxyError::BodyTooLarge);
    }
    Ok(())
}
