//! Upstream side: endpoint choice, pooled connections, retries, the
//! route's upstream policy (`backend-protocol`, `upstream-vhost`,
//! `proxy-body-size`, the `proxy-*-timeout`s, `proxy-next-upstream`).
//!
//! - Endpoint choice: a random starting endpoint per request, then the
//!   following ones in order for retries (random rather than round-robin:
//!   backends are shared by many routes and tables, and a random start
//!   needs no per-backend state that would have to survive table swaps).
//! - Transport ([`Transport`]): HTTP/1.1 or HTTP/2, plain or TLS — the
//!   Service port's `appProtocol` unless `backend-protocol` says otherwise.
//! - Pools, created once per proxy and kept across route table swaps, both
//!   keyed by endpoint address and transport: a keep-alive HTTP/1.1 client
//!   (a `hyper_util` legacy client over `hyper-rustls` and `HttpConnector`,
//!   which connects to the request URI's scheme and authority, so that URI
//!   names the endpoint, `https` for TLS, and `Host` carries the client's
//!   host), and an [`H2cPool`] of HTTP/2 connections, one multiplexed
//!   connection per endpoint and transport. On HTTP/2 the request URI's
//!   authority becomes `:authority`, so it is the client's host (the
//!   endpoint address when the client sent none) and the `Host` header is
//!   dropped (RFC 9113 8.3.1: they must not differ; HTTP/2 and gRPC
//!   servers route by `:authority`). Upstream TLS: see
//!   [`upstream_tls`](crate::upstream_tls).
//! - Timeouts: the connect timeout per attempt (TLS handshake included),
//!   the send and read timeouts between operations (see
//!   [`upstream_timeouts`](crate::upstream_timeouts)).
//! - Retries (`proxy-next-upstream`, by default `error timeout`, at most
//!   `proxy-next-upstream-tries` attempts, one per endpoint): a failed
//!   connection (refused, unreachable, connect timeout) is retried for any
//!   request, because the request body is only handed to hyper through a
//!   [`ReclaimableBody`] that gives it back when nothing was sent. Once
//!   the request went out (an error or timeout before the response head,
//!   or a listed status), it is retried only when its body can be sent
//!   again (there is none, or no attempt took it) and its method is
//!   idempotent (or `non_idempotent` is listed); the discarded response of
//!   a listed status is not passed on. A pooled HTTP/2 connection found
//!   closed before the request went out on it is replaced by a new one to
//!   the same endpoint, for any request.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lb_routes::policy::{BackendProtocol, NextUpstream};
use lb_routes::{Backend, BackendTarget, RoutePolicy, UpstreamPolicy, UpstreamProtocol};
use rand::Rng;
use tokio::net::TcpStream;

use crate::body::{self, BoxError, LimitedBody, Progress, ReclaimableBody};
use crate::config::ProxyConfig;
use crate::errors::{ProxyError, error_chain};
use crate::h2c_pool::H2cPool;
use crate::resolve::Resolver;
use crate::upstream_timeouts::{self, Expired};
use crate::upstream_tls;

/// The most endpoints one request tries (`proxy-next-upstream-tries: 0`
/// means every endpoint, up to this many).
pub(crate) const MAX_ATTEMPTS: usize = 100;

/// How long an idle pooled upstream connection is kept (nginx's
/// `keepalive_timeout` for upstreams, as ingress-nginx sets it).
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type UpstreamClient = Client<Connector, ReclaimableBody>;

/// The upstream pools, resolver and defaults of one proxy.
pub(crate) struct Upstreams {
    http1: UpstreamClient,
    h2c: H2cPool,
    resolver: Resolver,
    defaults: Defaults,
}

/// The proxy's defaults for what routes do not say.
#[derive(Clone, Copy, Debug)]
struct Defaults {
    connect_timeout: Duration,
    response_timeout: Duration,
    body_limit: Option<u64>,
}

/// How requests reach an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transport {
    /// HTTP/2 (with prior knowledge, or by ALPN over TLS); else HTTP/1.1.
    pub http2: bool,
    pub tls: bool,
}

impl Transport {
    /// The Service port's protocol, unless `backend-protocol` says
    /// otherwise (`HTTP` keeps the port's).
    pub(crate) fn of(port: UpstreamProtocol, annotation: Option<BackendProtocol>) -> Self {
        let port_http2 = port == UpstreamProtocol::H2c;
        match annotation {
            None | Some(BackendProtocol::Http) => Transport { http2: port_http2, tls: false },
            Some(BackendProtocol::Https) => Transport { http2: false, tls: true },
            Some(BackendProtocol::Grpc) => Transport { http2: true, tls: false },
            Some(BackendProtocol::Grpcs) => Transport { http2: true, tls: true },
        }
    }
}

/// One request's upstream settings: its route's policy over the proxy's
/// defaults.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub transport: Transport,
    /// `upstream-vhost`, as the `Host` to send.
    pub vhost: Option<HeaderValue>,
    /// The largest request body, in bytes.
    pub body_limit: Option<u64>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    pub next: NextUpstream,
    /// Attempts at most (1 ..= [`MAX_ATTEMPTS`]).
    pub tries: usize,
    pub next_timeout: Option<Duration>,
}

/// What goes upstream, minus the body.
#[derive(Debug)]
pub(crate) struct UpstreamRequest {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub transport: Transport,
}

/// The endpoints of one request, in attempt order.
#[derive(Debug)]
pub(crate) struct Peers(pub Vec<SocketAddr>);

impl Upstreams {
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        let mut http = HttpConnector::new();
        // The connect timeout is the route's: see `Connector`.
        http.set_connect_timeout(None);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.enforce_http(false);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(upstream_tls::client_config(&[]))
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let connector = Connector { https, default_timeout: config.upstream_connect_timeout };
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        let resolver = Resolver::new(&config.dns_servers, config.upstream_connect_timeout);
        let defaults = Defaults {
            connect_timeout: config.upstream_connect_timeout,
            response_timeout: config.upstream_response_timeout,
            body_limit: config.proxy_body_size,
        };
        Self { http1, h2c: H2cPool::new(), resolver, defaults }
    }

    /// The settings of a request to a backend of `port` protocol under
    /// `policy` (none: the default backend's, the proxy's defaults).
    pub(crate) fn settings(&self, policy: Option<&RoutePolicy>, port: UpstreamProtocol) -> Settings {
        let default = UpstreamPolicy::default();
        let upstream = policy.map_or(&default, |p| &p.upstream);
        let d = &self.defaults;
        let tries = match upstream.next_upstream_tries {
            _ if upstream.next_upstream.is_off() => 1,
            0 => MAX_ATTEMPTS,
            n => usize::try_from(n).unwrap_or(MAX_ATTEMPTS).min(MAX_ATTEMPTS),
        };
        Settings {
            transport: Transport::of(port, upstream.protocol),
            vhost: upstream.vhost.as_deref().and_then(|v| HeaderValue::from_str(v).ok()),
            body_limit: upstream.body_size.map_or(d.body_limit, |size| size.limit()),
            connect_timeout: upstream.connect_timeout.unwrap_or(d.connect_timeout),
            read_timeout: upstream.read_timeout.unwrap_or(d.response_timeout),
            send_timeout: upstream.send_timeout.unwrap_or(d.response_timeout),
            next: upstream.next_upstream.clone(),
            tries,
            next_timeout: upstream.next_upstream_timeout,
        }
    }

    /// The endpoints to try for `backend`: up to `tries`, from a random
    /// start. No endpoints: 503; an `ExternalName` that does not resolve:
    /// 502.
    pub(crate) async fn peers(&self, backend: &Backend, tries: usize) -> Result<Peers, ProxyError> {
        match &backend.target {
            BackendTarget::Endpoints(endpoints) if endpoints.is_empty() => {
                Err(ProxyError::NoEndpoints(backend.service.to_string()))
            }
            BackendTarget::Endpoints(endpoints) => {
                Ok(Peers(attempt_order(endpoints, random_start(endpoints.len()), tries)))
            }
            BackendTarget::ExternalName { host, port } => {
                let ips = self.resolver.resolve(host).await.ok_or_else(|| ProxyError::Unresolvable(host.clone()))?;
                let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, *port)).collect();
                Ok(Peers(attempt_order(&addrs, random_start(addrs.len()), tries)))
            }
        }
    }

    /// Sends the request to the first peer that takes it (see the module's
    /// retries). Returns the response head (body streaming) and the peer
    /// that answered; on error the last peer tried.
    pub(crate) async fn send(
        &self,
        request: UpstreamRequest,
        body: Incoming,
        peers: &Peers,
        settings: &Settings,
    ) -> Result<(Response<Incoming>, SocketAddr), (ProxyError, Option<SocketAddr>)> {
        let replayable_method = request.method.is_idempotent() || settings.next.non_idempotent;
        let body = LimitedBody::new(body, settings.body_limit);
        let too_large = body.exceeded_flag();
        let body = ReclaimableBody::new(body);
        let started = Instant::now();
        let attempts = peers.0.len().min(settings.tries);
        for (attempt, &peer) in peers.0.iter().take(attempts).enumerate() {
            let more = attempt + 1 < attempts && settings.next_timeout.is_none_or(|limit| started.elapsed() < limit);
            let progress = Progress::new(body.is_end_stream());
            let upstream = upstream_request(&request, peer, body.for_attempt(progress.clone()))
                .map_err(|_| (ProxyError::Upstream(format!("cannot build the URI for {peer}")), Some(peer)))?;
            let exchange = async {
                if request.transport.http2 {
                    self.send_h2(peer, request.transport.tls, settings.connect_timeout, upstream).await
                } else {
                    CONNECT_TIMEOUT
                        .scope(settings.connect_timeout, self.http1.request(upstream))
                        .await
                        .map_err(Failure::from_legacy)
                }
            };
            let outcome = tokio::select! {
                biased;
                outcome = exchange => outcome,
                expired = upstream_timeouts::expired(&progress, settings.read_timeout, settings.send_timeout) => Err(Failure::Expired(expired)),
            };
            let (failure, response) = match outcome {
                Ok(response) if settings.next.retries_status(response.status().as_u16()) => {
                    (Failure::Status(response.status().as_u16()), Some(response))
                }
                Ok(response) => return Ok((response, peer)),
                Err(failure) => (failure, None),
            };
            if too_large.load(Ordering::Acquire) {
                return Err((ProxyError::BodyTooLarge, Some(peer)));
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

    /// One attempt on the HTTP/2 connection to `peer`. A pooled connection
    /// that turns out closed before the request went out on it is replaced
    /// once by a new one.
    async fn send_h2(
        &self,
        peer: SocketAddr,
        tls: bool,
        connect_timeout: Duration,
        mut upstream: Request<ReclaimableBody>,
    ) -> Result<Response<Incoming>, Failure> {
        for _ in 0..2 {
            let mut sender = self
                .h2c
                .sender(peer, tls, connect_timeout)
                .await
                .map_err(|error| Failure::Connect { timed_out: error.timed_out(), message: error.to_string() })?;
            match sender.try_send_request(upstream).await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => {
                        tracing::debug!(%peer, error = %error_chain(error.error()), "h2 connection closed, reconnecting");
                        upstream = unsent;
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
}

/// The declared body of a request is over the limit of `settings`: 413
/// before anything goes upstream.
pub(crate) fn check_declared_body(body: &Incoming, settings: &Settings) -> Result<(), ProxyError> {
    if body::declared_over(&body.size_hint(), settings.body_limit) {
        return Err(ProxyError::BodyTooLarge);
    }
    Ok(())
}

tokio::task_local! {
    /// The connect timeout of the request the legacy client connects for.
    static CONNECT_TIMEOUT: Duration;
}

/// The HTTP/1.1 client's connector: plain or TLS by the URI's scheme, in
/// the connect timeout of the request that asks for the connection (read
/// when the client starts connecting, in that request's task).
#[derive(Clone)]
struct Connector {
    https: HttpsConnector<HttpConnector>,
    default_timeout: Duration,
}

/// A connect that did not finish in time.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out after {0:?}")]
struct ConnectTimedOut(Duration);

type Connecting = Pin<Box<dyn Future<Output = Result<MaybeHttpsStream<TokioIo<TcpStream>>, BoxError>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.https.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let timeout = CONNECT_TIMEOUT.try_with(|t| *t).unwrap_or(self.default_timeout);
        let connecting = self.https.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(ConnectTimedOut(timeout)) as BoxError),
            }
        })
    }
}

/// Why one attempt did not give the response.
enum Failure {
    /// No connection: nothing was sent.
    Connect {
        message: String,
        timed_out: bool,
    },
    /// Failed after the request (maybe) went out, before the response
    /// head; `invalid_header`: the head was not valid HTTP.
    Request {
        message: String,
        invalid_header: bool,
    },
    Expired(Expired),
    /// A response with a status `proxy-next-upstream` lists.
    Status(u16),
}

impl Failure {
    fn from_legacy(error: hyper_util::client::legacy::Error) -> Self {
        if error.is_connect() {
            let timed_out = has_cause::<ConnectTimedOut>(&error);
            Failure::Connect { message: error_chain(&error), timed_out }
        } else {
            let invalid_header = has_cause_where(&error, |e: &hyper::Error| e.is_parse());
            Failure::Request { message: error_chain(&error), invalid_header }
        }
    }

    fn into_error(self, peer: SocketAddr) -> ProxyError {
        match self {
            Failure::Connect { timed_out: true, .. } => ProxyError::ConnectTimeout(peer.to_string()),
            Failure::Connect { .. } => ProxyError::Connect(peer.to_string()),
            Failure::Request { message, .. } => ProxyError::Upstream(message),
            Failure::Expired(Expired::Read) => ProxyError::Timeout,
            Failure::Expired(Expired::Send) => ProxyError::SendTimeout,
            Failure::Expired(Expired::ClientBody) => ProxyError::ClientBodyTimeout,
            Failure::Status(status) => ProxyError::Upstream(format!("status {status}")),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect { message, .. } | Failure::Request { message, .. } => f.write_str(message),
            Failure::Expired(expired) => write!(f, "{expired:?} timeout"),
            Failure::Status(status) => write!(f, "status {status}"),
        }
    }
}

/// Whether `failure` is tried again on the next endpoint. `replayable`:
/// the method may be sent twice; `reclaimable`: the body can be.
fn retryable(next: &NextUpstream, failure: &Failure, replayable: bool, reclaimable: bool) -> bool {
    if !reclaimable {
        return false;
    }
    match failure {
        Failure::Connect { timed_out: false, .. } => next.error,
        Failure::Connect { timed_out: true, .. } => next.timeout,
        Failure::Request { invalid_header: true, .. } => replayable && next.invalid_header,
        Failure::Request { invalid_header: false, .. } => replayable && next.error,
        Failure::Expired(Expired::Read | Expired::Send) => replayable && next.timeout,
        Failure::Expired(Expired::ClientBody) => false,
        Failure::Status(status) => replayable && next.retries_status(*status),
    }
}

fn has_cause<E: std::error::Error + 'static>(error: &dyn std::error::Error) -> bool {
    has_cause_where(error, |_: &E| true)
}

fn has_cause_where<E: std::error::Error + 'static>(error: &dyn std::error::Error, test: impl Fn(&E) -> bool) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(found) = cause.downcast_ref::<E>() {
            return test(found);
        }
        source = cause.source();
    }
    false
}

/// The request for one attempt. HTTP/1.1: the absolute URI the legacy
/// client needs (it connects to and pools by its scheme and authority, and
/// sends the origin form), `Host` as the client sent it (or
/// `upstream-vhost`). HTTP/2: the URI's authority is `:authority`, so it
/// is that host (see [`h2c_authority`]) and the `Host` header goes.
fn upstream_request<B>(request: &UpstreamRequest, peer: SocketAddr, body: B) -> Result<Request<B>, http::Error> {
    let mut headers = request.headers.clone();
    let (authority, version) = if request.transport.http2 {
        let authority = match h2c_authority(headers.get(HOST)) {
            Some(authority) => authority,
            None => peer_authority(peer)?,
        };
        headers.remove(HOST);
        (authority, Version::HTTP_2)
    } else {
        (peer_authority(peer)?, Version::HTTP_11)
    };
    let scheme = if request.transport.tls { Scheme::HTTPS } else { Scheme::HTTP };
    let uri =
        Uri::builder().scheme(scheme).authority(authority).path_and_query(request.path_and_query.clone()).build()?;
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

fn random_start(len: usize) -> usize {
    if len <= 1 { 0 } else { rand::rng().random_range(0..len) }
}

/// Up to `tries` distinct endpoints, starting at `start` and wrapping
/// around.
fn attempt_order(endpoints: &[SocketAddr], start: usize, tries: usize) -> Vec<SocketAddr> {
    let len = endpoints.len();
    (0..len.min(tries)).map(|i| endpoints[(start + i) % len]).collect()
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
        assert_eq!(attempt_order(&endpoints, 3, 3), vec![endpoints[3], endpoints[4], endpoints[0]]);
        assert_eq!(attempt_order(&endpoints, 3, 1), vec![endpoints[3]]);
        assert_eq!(attempt_order(&endpoints, 0, MAX_ATTEMPTS), endpoints);
        let two = addrs(2);
        assert_eq!(attempt_order(&two, 1, 3), vec![two[1], two[0]]);
        assert_eq!(attempt_order(&addrs(1), 0, 3).len(), 1);
    }

    #[test]
    fn random_start_in_range() {
        assert_eq!(random_start(0), 0);
        assert_eq!(random_start(1), 0);
        for _ in 0..100 {
            assert!(random_start(3) < 3);
        }
    }

    const H1: Transport = Transport { http2: false, tls: false };
    const H2C: Transport = Transport { http2: true, tls: false };

    fn request(transport: Transport, host: Option<&'static str>) -> UpstreamRequest {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(HOST, HeaderValue::from_static(host));
        }
        headers.insert("x-other", HeaderValue::from_static("1"));
        UpstreamRequest { method: Method::GET, path_and_query: PathAndQuery::from_static("/a?b=1"), headers, transport }
    }

    fn uri_and_host(transport: Transport, host: Option<&'static str>, peer: &str) -> (String, Option<String>) {
        let upstream = upstream_request(&request(transport, host), peer.parse().unwrap(), ()).unwrap();
        assert_eq!(upstream.headers()["x-other"], "1");
        let host = upstream.headers().get(HOST).map(|host| host.to_str().unwrap().to_owned());
        (upstream.uri().to_string(), host)
    }

    #[test]
    fn http1_uri_names_the_peer() {
        let (uri, host) = uri_and_host(H1, Some("a.com"), "10.0.0.1:80");
        assert_eq!((uri.as_str(), host.as_deref()), ("http://10.0.0.1:80/a?b=1", Some("a.com")));
        let (uri, _) = uri_and_host(H1, None, "[fd00::1]:8080");
        assert_eq!(uri, "http://[fd00::1]:8080/a?b=1");
        // TLS: the https scheme, so the pool never mixes it with plain ones.
        let (uri, _) = uri_and_host(Transport { http2: false, tls: true }, Some("a.com"), "10.0.0.1:443");
        assert_eq!(uri, "https://10.0.0.1:443/a?b=1");
    }

    #[test]
    fn h2c_authority_is_the_client_host() {
        let (uri, host) = uri_and_host(H2C, Some("a.com:8443"), "10.0.0.1:80");
        assert_eq!((uri.as_str(), host), ("http://a.com:8443/a?b=1", None));
        let (uri, _) = uri_and_host(Transport { http2: true, tls: true }, Some("a.com"), "10.0.0.1:80");
        assert_eq!(uri, "https://a.com/a?b=1");
        // No usable host: the endpoint.
        for missing in [None, Some("user@a.com"), Some("a b")] {
            let (uri, host) = uri_and_host(H2C, missing, "[fd00::1]:8080");
            assert_eq!((uri.as_str(), host), ("http://[fd00::1]:8080/a?b=1", None), "{missing:?}");
        }
    }

    #[test]
    fn transports() {
        use BackendProtocol::*;
        let h1 = UpstreamProtocol::Http1;
        let h2c = UpstreamProtocol::H2c;
        assert_eq!(Transport::of(h1, None), H1);
        assert_eq!(Transport::of(h2c, None), H2C);
        assert_eq!(Transport::of(h2c, Some(Http)), H2C, "HTTP keeps the port's appProtocol");
        assert_eq!(Transport::of(h1, Some(Grpc)), H2C);
        assert_eq!(Transport::of(h2c, Some(Https)), Transport { http2: false, tls: true });
        assert_eq!(Transport::of(h1, Some(Grpcs)), Transport { http2: true, tls: true });
    }

    fn status(code: u16) -> Failure {
        Failure::Status(code)
    }

    #[test]
    fn retry_rules() {
        let default = NextUpstream::default();
        let refused = || Failure::Connect { message: String::new(), timed_out: false };
        let connect_timeout = || Failure::Connect { message: String::new(), timed_out: true };
        let reset = || Failure::Request { message: String::new(), invalid_header: false };
        let garbage = || Failure::Request { message: String::new(), invalid_header: true };
        // Nothing was sent: any method, as long as the body is still there.
        assert!(retryable(&default, &refused(), false, true));
        assert!(retryable(&default, &connect_timeout(), false, true));
        assert!(!retryable(&default, &refused(), true, false));
        // Sent: idempotent methods only (or non_idempotent listed).
        assert!(retryable(&default, &reset(), true, true));
        assert!(!retryable(&default, &reset(), false, true));
        assert!(retryable(&default, &Failure::Expired(Expired::Read), true, true));
        assert!(!retryable(&default, &Failure::Expired(Expired::ClientBody), true, true));
        assert!(!retryable(&default, &garbage(), true, true));
        assert!(!retryable(&default, &status(503), true, true));
        let statuses = NextUpstream { statuses: vec![503], invalid_header: true, ..NextUpstream::off() };
        assert!(retryable(&statuses, &status(503), true, true));
        assert!(!retryable(&statuses, &status(503), false, true));
        assert!(!retryable(&statuses, &status(503), true, false));
        assert!(!retryable(&statuses, &status(502), true, true));
        assert!(retryable(&statuses, &garbage(), true, true));
        assert!(!retryable(&statuses, &refused(), true, true), "error not listed");
        let off = NextUpstream::off();
        for failure in [refused(), connect_timeout(), reset(), Failure::Expired(Expired::Read), status(503)] {
            assert!(!retryable(&off, &failure, true, true), "{failure}");
        }
    }

    #[tokio::test]
    async fn settings_over_defaults() {
        let config = ProxyConfig { proxy_body_size: Some(1 << 20), ..ProxyConfig::default() };
        let upstreams = Upstreams::new(&config);
        let defaults = upstreams.settings(None, UpstreamProtocol::Http1);
        assert_eq!((defaults.tries, defaults.body_limit), (3, Some(1 << 20)));
        assert_eq!(defaults.read_timeout, config.upstream_response_timeout);
        assert_eq!(defaults.connect_timeout, config.upstream_connect_timeout);
        let mut policy = RoutePolicy::default();
        policy.upstream.body_size = Some(lb_routes::policy::BodySize::Unlimited);
        policy.upstream.next_upstream_tries = 0;
        policy.upstream.read_timeout = Some(Duration::from_secs(1));
        policy.upstream.vhost = Some("internal:8080".into());
        let settings = upstreams.settings(Some(&policy), UpstreamProtocol::Http1);
        assert_eq!((settings.tries, settings.body_limit), (MAX_ATTEMPTS, None));
        assert_eq!(settings.read_timeout, Duration::from_secs(1));
        assert_eq!(settings.send_timeout, config.upstream_response_timeout);
        assert_eq!(settings.vhost.unwrap(), "internal:8080");
        policy.upstream.next_upstream = NextUpstream::off();
        assert_eq!(upstreams.settings(Some(&policy), UpstreamProtocol::Http1).tries, 1);
    }
}
