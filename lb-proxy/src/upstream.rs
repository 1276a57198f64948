//! Upstream side: endpoint choice, pooled connections, retries.
//!
//! - Endpoint choice: a random starting endpoint per request, then the
//!   following ones in order for retries (random rather than round-robin:
//!   backends are shared by many routes and tables, and a random start
//!   needs no per-backend state that would have to survive table swaps).
//! - Pools, created once per proxy and kept across route table swaps, both
//!   keyed by endpoint address: a keep-alive HTTP/1.1 client (a
//!   `hyper_util` legacy client over `HttpConnector`, which connects to
//!   the request URI's authority, so that URI names the endpoint and `Host`
//!   carries the client's host), and an [`H2cPool`] of HTTP/2 (prior
//!   knowledge) connections, one multiplexed connection per endpoint. On
//!   HTTP/2 the request URI's authority becomes `:authority`, so it is the
//!   client's host (the endpoint address when the client sent none) and
//!   the `Host` header is dropped (RFC 9113 8.3.1: they must not differ;
//!   HTTP/2 and gRPC servers route by `:authority`).
//! - Retries, at most [`MAX_ATTEMPTS`] attempts, one per endpoint: a failed
//!   connection (refused, unreachable, connect timeout) is retried for any
//!   request, because the request body is only handed to hyper through a
//!   [`ReclaimableBody`] that gives it back when nothing was sent; a
//!   reused keep-alive connection that the upstream closed before
//!   answering is retried only for idempotent requests without a body (the
//!   upstream may have seen the request; nginx's `proxy_next_upstream
//!   error` does the same). A pooled HTTP/2 connection found closed before
//!   the request went out on it is replaced by a new one to the same
//!   endpoint, for any request. The response timeout bounds each attempt,
//!   connecting included.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lb_routes::{Backend, BackendTarget, UpstreamProtocol};
use rand::Rng;

use crate::errors::{BoxError, ProxyError};
use crate::h2c_pool::H2cPool;
use crate::resolve::Resolver;

/// The most endpoints one request tries.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// How long an idle pooled upstream connection is kept (nginx's
/// `keepalive_timeout` for upstreams, as ingress-nginx sets it).
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type UpstreamClient = Client<HttpConnector, ReclaimableBody>;

/// The upstream pools and resolver of one proxy.
pub(crate) struct Upstreams {
    http1: UpstreamClient,
    h2c: H2cPool,
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
            .build(connector);
        let h2c = H2cPool::new(connect_timeout);
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
        let bodiless = body.is_end_stream();
        let retry_after_send = bodiless && request.method.is_idempotent();
        let body = ReclaimableBody::new(body);
        let mut last = None;
        for (attempt, &peer) in peers.0.iter().enumerate() {
            last = Some(peer);
            let more = attempt + 1 < peers.0.len();
            let upstream = upstream_request(&request, peer, body.clone_unpolled())
                .map_err(|_| (ProxyError::Upstream(format!("cannot build the URI for {peer}")), Some(peer)))?;
            let exchange = async {
                match request.protocol {
                    UpstreamProtocol::Http1 => self.http1.request(upstream).await.map_err(AttemptError::from_legacy),
                    UpstreamProtocol::H2c => self.send_h2c(peer, upstream).await,
                }
            };
            let error = match tokio::time::timeout(self.response_timeout, exchange).await {
                Ok(Ok(response)) => return Ok((response, peer)),
                Ok(Err(error)) => error,
                Err(_) => return Err((ProxyError::Timeout, Some(peer))),
            };
            let retry = match &error {
                AttemptError::Connect(_) => body.reclaimable(),
                AttemptError::Request { closed_early, .. } => retry_after_send && *closed_early,
            };
            tracing::debug!(%peer, error = %error, retry = retry && more, "upstream attempt failed");
            if !(retry && more) {
                let failure = match error {
                    AttemptError::Connect(_) => ProxyError::Connect(peer.to_string()),
                    AttemptError::Request { message, .. } => ProxyError::Upstream(message),
                };
                return Err((failure, Some(peer)));
            }
        }
        Err((ProxyError::Connect("no endpoint".into()), last))
    }
}

impl Upstreams {
    /// One attempt on the h2c connection to `peer`. A pooled connection
    /// that turns out closed before the request went out on it is replaced
    /// once by a new one.
    async fn send_h2c(
        &self,
        peer: SocketAddr,
        mut upstream: Request<ReclaimableBody>,
    ) -> Result<Response<Incoming>, AttemptError> {
        for _ in 0..2 {
            let mut sender = self.h2c.sender(peer).await.map_err(|error| AttemptError::Connect(error.to_string()))?;
            match sender.try_send_request(upstream).await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => {
                        tracing::debug!(%peer, error = %error_chain(error.error()), "h2c connection closed, reconnecting");
                        upstream = unsent;
                    }
                    None => {
                        let error = error.into_error();
                        return Err(AttemptError::Request {
                            message: error_chain(&error),
                            closed_early: hyper_closed_early(&error),
                        });
                    }
                },
            }
        }
        // The replacement connection closed too before taking the request.
        Err(AttemptError::Connect(format!("h2c connections to {peer} close before taking requests")))
    }
}

/// Why one attempt failed.
#[derive(Debug)]
enum AttemptError {
    /// No connection: nothing was sent.
    Connect(String),
    /// Failed after the request (maybe) went out; `closed_early`: the
    /// connection closed before the response head.
    Request { message: String, closed_early: bool },
}

impl AttemptError {
    fn from_legacy(error: hyper_util::client::legacy::Error) -> Self {
        if error.is_connect() {
            AttemptError::Connect(error_chain(&error))
        } else {
            AttemptError::Request { message: error_chain(&error), closed_early: closed_early(&error) }
        }
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Connect(message) | AttemptError::Request { message, .. } => f.write_str(message),
        }
    }
}

/// The request for one attempt. HTTP/1.1: the absolute URI the legacy
/// client needs (it connects to and pools by its authority, and sends the
/// origin form), `Host` as the client sent it. HTTP/2: the URI's authority
/// is `:authority`, so it is the client's host (see [`h2c_authority`]) and
/// the `Host` header goes.
fn upstream_request(
    request: &UpstreamRequest,
    peer: SocketAddr,
    body: ReclaimableBody,
) -> Result<Request<ReclaimableBody>, http::Error> {
    let mut headers = request.headers.clone();
    let (authority, version) = match request.protocol {
        UpstreamProtocol::Http1 => (peer_authority(peer)?, Version::HTTP_11),
        UpstreamProtocol::H2c => {
            let authority = match h2c_authority(headers.get(HOST)) {
                Some(authority) => authority,
                None => peer_authority(peer)?,
            };
            headers.remove(HOST);
            (authority, Version::HTTP_2)
        }
    };
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority)
        .path_and_query(request.path_and_query.clone())
        .build()?;
    let mut upstream = Request::new(body);
    *upstream.method_mut() = request.method.clone();
    *upstream.uri_mut() = uri;
    *upstream.version_mut() = version;
    *upstream.headers_mut() = headers;
    Ok(upstream)
}

fn peer_authority(peer: SocketAddr) -> Result<Authority, http::Error> {
    Ok(Authority::try_from(peer.to_string())?)
}

/// `:authority` for an HTTP/2 upstream: the `Host` the proxy forwards,
/// when it is a valid authority without userinfo (RFC 9113 8.3.1 forbids
/// it there).
fn h2c_authority(host: Option<&HeaderValue>) -> Option<Authority> {
    let host = host?.as_bytes();
    if host.is_empty() || host.contains(&b'@') {
        return None;
    }
    Authority::try_from(host).ok()
}

/// The upstream closed a connection before its response head (typically a
/// pooled keep-alive connection its server had just timed out).
fn closed_early(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
            return hyper_closed_early(hyper_error);
        }
        source = cause.source();
    }
    false
}

fn hyper_closed_early(error: &hyper::Error) -> bool {
    error.is_incomplete_message() || error.is_canceled()
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

    fn request(protocol: UpstreamProtocol, host: Option<&'static str>) -> UpstreamRequest {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(HOST, HeaderValue::from_static(host));
        }
        headers.insert("x-other", HeaderValue::from_static("1"));
        UpstreamRequest { method: Method::GET, path_and_query: PathAndQuery::from_static("/a?b=1"), headers, protocol }
    }

    fn uri_and_host(protocol: UpstreamProtocol, host: Option<&'static str>, peer: &str) -> (String, Option<String>) {
        let body = ReclaimableBody {
            slot: Arc::new(Mutex::new(None)),
            taken: None,
            end_stream: true,
            hint: SizeHint::with_exact(0),
        };
        let upstream = upstream_request(&request(protocol, host), peer.parse().unwrap(), body).unwrap();
        assert_eq!(upstream.headers()["x-other"], "1");
        let host = upstream.headers().get(HOST).map(|host| host.to_str().unwrap().to_owned());
        (upstream.uri().to_string(), host)
    }

    #[test]
    fn http1_uri_names_the_peer() {
        let (uri, host) = uri_and_host(UpstreamProtocol::Http1, Some("a.com"), "10.0.0.1:80");
        assert_eq!((uri.as_str(), host.as_deref()), ("http://10.0.0.1:80/a?b=1", Some("a.com")));
        let (uri, _) = uri_and_host(UpstreamProtocol::Http1, None, "[fd00::1]:8080");
        assert_eq!(uri, "http://[fd00::1]:8080/a?b=1");
    }

    #[test]
    fn h2c_authority_is_the_client_host() {
        let (uri, host) = uri_and_host(UpstreamProtocol::H2c, Some("a.com:8443"), "10.0.0.1:80");
        assert_eq!((uri.as_str(), host), ("http://a.com:8443/a?b=1", None));
        // No usable host: the endpoint.
        for missing in [None, Some("user@a.com"), Some("a b")] {
            let (uri, host) = uri_and_host(UpstreamProtocol::H2c, missing, "[fd00::1]:8080");
            assert_eq!((uri.as_str(), host), ("http://[fd00::1]:8080/a?b=1", None), "{missing:?}");
        }
    }
}
