//! Upstream side: endpoint choice, pooled clients, retries.
//!
//! - Endpoint choice: a random starting endpoint per request, then the
//!   following ones in order for retries (random rather than round-robin:
//!   backends are shared by many routes and tables, and a random start
//!   needs no per-backend state that would have to survive table swaps).
//! - Pools: one keep-alive HTTP/1.1 client and one HTTP/2 (prior knowledge)
//!   client, both `hyper_util` legacy clients over `HttpConnector`, created
//!   once per proxy and kept across route table swaps; pools are keyed by
//!   endpoint address.
//! - Retries, at most [`MAX_ATTEMPTS`] attempts, one per endpoint: a failed
//!   connection (refused, unreachable, connect timeout) is retried for any
//!   request, because the request body is only handed to hyper through a
//!   [`ReclaimableBody`] that gives it back when nothing was sent; a
//!   reused keep-alive connection that the upstream closed before
//!   answering is retried only for idempotent requests without a body (the
//!   upstream may have seen the request; nginx's `proxy_next_upstream
//!   error` does the same).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lb_routes::{Backend, BackendTarget, UpstreamProtocol};
use rand::Rng;

use crate::errors::{BoxError, ProxyError};
use crate::resolve::Resolver;

/// The most endpoints one request tries.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// How long an idle pooled upstream connection is kept (nginx's
/// `keepalive_timeout` for upstreams, as ingress-nginx sets it).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type UpstreamClient = Client<HttpConnector, ReclaimableBody>;

/// The upstream clients and resolver of one proxy.
pub(crate) struct Upstreams {
    http1: UpstreamClient,
    h2c: UpstreamClient,
    resolver: Resolver,
    response_timeout: Duration,
}

/// What goes upstream, minus the body.
#[derive(Debug)]
pub(crate) struct UpstreamRequest {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub protocol: UpstreamProtocol,
}

/// The endpoints of one request, in attempt order.
#[derive(Debug)]
pub(crate) struct Peers(pub Vec<SocketAddr>);

impl Upstreams {
    pub(crate) fn new(connect_timeout: Duration, response_timeout: Duration, dns_servers: &[SocketAddr]) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .http2_only(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(20))
            .build(connector);
        let resolver = Resolver::new(dns_servers, connect_timeout);
        Self { http1, h2c, resolver, response_timeout }
    }

    /// The endpoints to try for `backend`: up to [`MAX_ATTEMPTS`], from a
    /// random start. No endpoints: 503; an `ExternalName` that does not
    /// resolve: 502.
    pub(crate) async fn peers(&self, backend: &Backend) -> Result<Peers, ProxyError> {
        match &backend.target {
            BackendTarget::Endpoints(endpoints) if endpoints.is_empty() => {
                Err(ProxyError::NoEndpoints(backend.service.to_string()))
            }
            BackendTarget::Endpoints(endpoints) => Ok(Peers(attempt_order(endpoints, random_start(endpoints.len())))),
            BackendTarget::ExternalName { host, port } => {
                let ips = self.resolver.resolve(host).await.ok_or_else(|| ProxyError::Unresolvable(host.clone()))?;
                let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, *port)).collect();
                Ok(Peers(attempt_order(&addrs, random_start(addrs.len()))))
            }
        }
    }

    /// Sends the request to the first peer that takes it. Returns the
    /// response head (body streaming) and the peer that answered; on error
    /// the last peer tried.
    pub(crate) async fn send(
        &self,
        request: UpstreamRequest,
        body: Incoming,
        peers: &Peers,
    ) -> Result<(Response<Incoming>, SocketAddr), (ProxyError, Option<SocketAddr>)> {
        let client = match request.protocol {
            UpstreamProtocol::Http1 => &self.http1,
            UpstreamProtocol::H2c => &self.h2c,
        };
        let version = match request.protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::H2c => Version::HTTP_2,
        };
        let bodiless = body.is_end_stream();
        let retry_after_send = bodiless && request.method.is_idempotent();
        let body = ReclaimableBody::new(body);
        let mut last = None;
        for (attempt, &peer) in peers.0.iter().enumerate() {
            last = Some(peer);
            let more = attempt + 1 < peers.0.len();
            let uri = upstream_uri(peer, &request.path_and_query)
                .map_err(|_| (ProxyError::Upstream(format!("cannot build the URI for {peer}")), Some(peer)))?;
            let mut upstream = Request::new(body.clone_unpolled());
            *upstream.method_mut() = request.method.clone();
            *upstream.uri_mut() = uri;
            *upstream.version_mut() = version;
            *upstream.headers_mut() = request.headers.clone();
            let error = match tokio::time::timeout(self.response_timeout, client.request(upstream)).await {
                Ok(Ok(response)) => return Ok((response, peer)),
                Ok(Err(error)) => error,
                Err(_) => return Err((ProxyError::Timeout, Some(peer))),
            };
            let retry = if error.is_connect() { body.reclaimable() } else { retry_after_send && closed_early(&error) };
            tracing::debug!(%peer, error = %error_chain(&error), retry = retry && more, "upstream attempt failed");
            if !(retry && more) {
                let failure = if error.is_connect() {
                    ProxyError::Connect(peer.to_string())
                } else {
                    ProxyError::Upstream(error_chain(&error))
                };
                return Err((failure, Some(peer)));
            }
        }
        Err((ProxyError::Connect("no endpoint".into()), last))
    }
}

/// The absolute URI the legacy client needs (it connects to and pools by
/// its authority, and sends the origin form to HTTP/1.1 upstreams).
fn upstream_uri(peer: SocketAddr, path_and_query: &PathAndQuery) -> Result<Uri, http::Error> {
    let authority = Authority::try_from(peer.to_string())?;
    Uri::builder().scheme(Scheme::HTTP).authority(authority).path_and_query(path_and_query.clone()).build()
}

/// The upstream closed a connection before its response head (typically a
/// pooled keep-alive connection its server had just timed out).
fn closed_early(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
            return hyper_error.is_incomplete_message() || hyper_error.is_canceled();
        }
        source = cause.source();
    }
    false
}

/// `error: cause: cause` for logs.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn random_start(len: usize) -> usize {
    if len <= 1 { 0 } else { rand::rng().random_range(0..len) }
}

/// Up to [`MAX_ATTEMPTS`] distinct endpoints, starting at `start` and
/// wrapping around.
fn attempt_order(endpoints: &[SocketAddr], start: usize) -> Vec<SocketAddr> {
    let len = endpoints.len();
    (0..len.min(MAX_ATTEMPTS)).map(|i| endpoints[(start + i) % len]).collect()
}

/// The client's request body, shared by the attempts of one request: the
/// first attempt that polls it takes it; an attempt that failed before
/// polling (a connect failure) leaves it in place for the next one. Size
/// hint and end-of-stream are answered from a snapshot until it is taken,
/// so hyper frames every attempt the same way.
pub(crate) struct ReclaimableBody {
    slot: Arc<Mutex<Option<Incoming>>>,
    taken: Option<Incoming>,
    end_stream: bool,
    hint: SizeHint,
}

impl ReclaimableBody {
    fn new(body: Incoming) -> Self {
        let end_stream = body.is_end_stream();
        let hint = body.size_hint();
        Self { slot: Arc::new(Mutex::new(Some(body))), taken: None, end_stream, hint }
    }

    /// A handle on the same body for one attempt.
    fn clone_unpolled(&self) -> Self {
        Self { slot: self.slot.clone(), taken: None, end_stream: self.end_stream, hint: self.hint }
    }

    /// No attempt took the body yet (or there is none to send).
    fn reclaimable(&self) -> bool {
        self.end_stream || self.slot.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

impl Body for ReclaimableBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.taken.is_none() {
            let taken = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            self.taken = taken;
        }
        match self.taken.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => self.end_stream,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => self.hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n).map(|i| SocketAddr::from(([10, 0, 0, 1], 8000 + i))).collect()
    }

    #[test]
    fn attempt_order_wraps_and_caps() {
        let endpoints = addrs(5);
        assert_eq!(attempt_order(&endpoints, 3), vec![endpoints[3], endpoints[4], endpoints[0]]);
        let two = addrs(2);
        assert_eq!(attempt_order(&two, 1), vec![two[1], two[0]]);
        assert_eq!(attempt_order(&addrs(1), 0).len(), 1);
    }

    #[test]
    fn random_start_in_range() {
        assert_eq!(random_start(0), 0);
        assert_eq!(random_start(1), 0);
        for _ in 0..100 {
            assert!(random_start(3) < 3);
        }
    }

    #[test]
    fn uri_for_peers() {
        let pq = PathAndQuery::from_static("/a?b=1");
        assert_eq!(upstream_uri("10.0.0.1:80".parse().unwrap(), &pq).unwrap(), "http://10.0.0.1:80/a?b=1");
        assert_eq!(upstream_uri("[fd00::1]:8080".parse().unwrap(), &pq).unwrap(), "http://[fd00::1]:8080/a?b=1");
    }
}
