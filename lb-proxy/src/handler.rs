//! One request, in phases (after pingora's): [`request_filter`] (host,
//! path, route, HTTPS redirect), [`upstream_peer`] (endpoints),
//! [`upstream_request_filter`] (headers for the upstream), the upstream
//! exchange, [`upstream_response_filter`] (hop-by-hop, upgrades),
//! [`response_filter`] (headers on every response, ours too) and
//! [`logging`] (the access log line).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{EXPECT, HOST, SERVER, SET_COOKIE};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use lb_routes::{Backend, BackendTarget, HttpsRedirect, ObjectName, RequestLabels, RoutePolicy, RouteTable};

use crate::access_log;
use crate::body::{ProxyBody, ReadGapBody};
use crate::client_policy::{self, Admission};
use crate::errors::{ProxyError, SERVER_NAME, redirect_response};
use crate::forwarded::{self, ConnForwarded, Forwarded, Scheme, X_REQUEST_ID};
use crate::hop::{self, RequestHop};
use crate::limits;
use crate::metrics::{self, Observation, RequestMetrics};
use crate::request::{host_value, raw_host, redirect_location, upstream_path_and_query};
use crate::upgrade::{self, SpliceControl};
use crate::upstream::{self, Peers, Settings, UpstreamBody, UpstreamRequest, Upstreams};
use crate::{affinity, canary};

/// What all requests of one proxy share.
pub(crate) struct Shared {
    pub routes: Arc<ArcSwap<RouteTable>>,
    pub upstreams: Upstreams,
    /// The HTTPS listener's port, for redirects.
    pub https_port: u16,
    pub splice: SpliceControl,
    /// Rate and connection limits (`limit-*`), kept across route tables.
    pub limiters: Arc<crate::limits::Limiters>,
    /// The request families; `None`: metrics are off.
    pub metrics: Option<Arc<RequestMetrics>>,
}

/// The client connection a request came on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub client: SocketAddr,
    pub scheme: Scheme,
    /// Its forwarding header values, made once for all its requests.
    pub forwarded: ConnForwarded,
}

impl ConnInfo {
    /// The connection from `client` to the listener at `local`.
    pub(crate) fn new(client: SocketAddr, local: SocketAddr, scheme: Scheme) -> Self {
        Self { client, scheme, forwarded: ConnForwarded::new(client.ip(), local.port(), scheme) }
    }
}

/// What one request collects for its response and its log line.
#[derive(Debug)]
struct Session {
    request_id: HeaderValue,
    method: Method,
    version: Version,
    /// As the client sent it (see [`host_value`]).
    host: Option<HeaderValue>,
    /// As the client sent it (the log shows its path).
    uri: Uri,
    backend: Option<Arc<Backend>>,
    peer: Option<SocketAddr>,
    error: Option<String>,
    /// The affinity cookie to set on the response.
    set_cookie: Option<HeaderValue>,
    /// The CORS headers for the response (`enable-cors`).
    cors: Option<crate::cors::CorsHeaders>,
    /// What the request is counted under: its route's labels (or its
    /// virtual host's), once the table was consulted; none for a request
    /// that never got there (a `CONNECT`, a path that does not normalise).
    labels: Option<Arc<RequestLabels>>,
    /// When the request was sent upstream, if it was.
    upstream_start: Option<Instant>,
}

/// Answers one client request (never fails: errors become responses);
/// with metrics on, also the request's observation, to finish when the
/// response body is done.
pub(crate) async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    request: Request<Incoming>,
) -> (Response<ProxyBody>, Option<Observation>) {
    let start = Instant::now();
    let request_bytes = shared.metrics.as_ref().map(|_| {
        let declared = http_body::Body::size_hint(request.body()).exact();
        metrics::request_bytes(request.method(), request.uri(), request.headers(), declared)
    });
    let mut session = Session {
        request_id: forwarded::request_id(request.headers()),
        method: request.method().clone(),
        version: request.version(),
        host: host_value(request.uri(), request.headers()),
        uri: request.uri().clone(),
        backend: None,
        peer: None,
        error: None,
        set_cookie: None,
        cors: None,
        labels: None,
        upstream_start: None,
    };
    let response = match proxy(shared, conn, &mut session, request).await {
        Ok(response) => response,
        Err(error) => {
            session.error = Some(error.to_string());
            error.into_response()
        }
    };
    let response = response_filter(response, &session);
    logging(conn, &session, response.status(), start);
    let observation = shared.metrics.as_ref().map(|metrics| {
        metrics.observe(&metrics::Answered {
            labels: session.labels.take().unwrap_or_else(RequestLabels::nowhere),
            method: &session.method,
            status: response.status().as_u16(),
            start,
            upstream_start: session.upstream_start,
            request_bytes: request_bytes.unwrap_or(0),
            response_headers: response.headers(),
        })
    });
    (response, observation)
}

async fn proxy(
    shared: &Shared,
    conn: &ConnInfo,
    session: &mut Session,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (backend, path_and_query, policy, ingress) = match request_filter(shared, conn, session, &request)? {
        Decision::Redirect(code, location) => return Ok(redirect_response(code, location)),
        Decision::Proxy { backend, path_and_query, policy, ingress } => (backend, path_and_query, policy, ingress),
    };
    session.backend = Some(Arc::clone(&backend));
    let slot = match &policy {
        Some(p) => {
            let request_head = (request.method(), request.headers());
            match client_policy::admit(
                &shared.limiters,
                &p.client,
                ingress.as_ref(),
                conn.client.ip(),
                request_head,
                &mut session.cors,
            )? {
                Admission::Answer(response) => return Ok(response),
                Admission::Proceed(slot) => slot,
            }
        }
        None => None,
    };
    let settings = shared.upstreams.settings(policy.as_deref(), backend.protocol);
    upstream::check_declared_body(request.body(), &settings)?;
    let mut peers = upstream_peer(shared, &backend, settings.tries).await?;
    let affinity = policy.as_ref().and_then(|p| p.affinity.as_ref());
    let sticky = affinity.and_then(|a| match &backend.target {
        BackendTarget::Endpoints(endpoints) => affinity::sticky(a, request.headers(), endpoints),
        BackendTarget::ExternalName { .. } => None,
    });
    if let Some(sticky) = sticky {
        peers = affinity::first(peers, sticky);
    }
    let (upstream_request, body, client_upgrade) =
        upstream_request_filter(conn, session, request, path_and_query, &settings)?;
    session.upstream_start = Some(Instant::now());
    let (response, peer) = match shared.upstreams.send(upstream_request, body, &peers, &settings).await {
        Ok(answer) => answer,
        Err((error, peer)) => {
            session.peer = peer;
            return Err(error);
        }
    };
    session.peer = Some(peer);
    if let Some(affinity) = affinity
        && sticky != Some(peer)
        && (sticky.is_none() || affinity.change_on_failure)
    {
        session.set_cookie = affinity::set_cookie(affinity, peer);
    }
    let response = upstream_response_filter(shared, response, client_upgrade, peer, settings.read_timeout)?;
    Ok(limits::hold(response, slot))
}

/// Where a request goes.
#[derive(Debug)]
enum Decision {
    /// Plain HTTP on a TLS host, `app-root`, `permanent-redirect`, …
    Redirect(StatusCode, HeaderValue),
    /// To `backend`, with the path to send (see `lb_routes::Route::upstream_path`)
    /// and the original query (`None`: they make no valid URI, a 400 once
    /// the request is admitted)
    /// and the route's policy; its Ingress when the policy has limits
    /// (their zones are the Ingress's).
    Proxy {
        backend: Arc<Backend>,
        path_and_query: Option<PathAndQuery>,
        policy: Option<Arc<RoutePolicy>>,
        ingress: Option<ObjectName>,
    },
}

/// Host, path, route. Loads the route table once; the request keeps only
/// the chosen backend, so a table swapped in meanwhile never affects it.
fn request_filter(
    shared: &Shared,
    conn: &ConnInfo,
    session: &mut Session,
    request: &Request<Incoming>,
) -> Result<Decision, ProxyError> {
    if request.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    let host = raw_host(request.uri(), request.headers())?.and_then(lb_routes::host::normalize_host);
    let raw_path = match request.uri().path() {
        "" => "/",
        path => path,
    };
    let path = lb_routes::normalize_path(raw_path)?;
    let table = shared.routes.load();
    let selected = table.select(host.as_deref(), &path);
    session.labels = Some(match (selected.route, selected.host) {
        (Some(route), _) => Arc::clone(&route.labels),
        (None, Some(vhost)) => Arc::clone(&vhost.labels),
        (None, None) => RequestLabels::nowhere(),
    });
    // `app-root` is the host's (nginx: server level, before any location).
    if let Some(root) = selected.host.and_then(|v| v.app_root.as_deref()).filter(|root| *root != "/")
        && path == "/"
        && let Some(location) = app_root_location(conn.scheme, request, root)
    {
        return Ok(Decision::Redirect(StatusCode::FOUND, location));
    }
    let policy = selected.route.map(|r| &*r.policy);
    let tls_host = selected.host.is_some_and(|vhost| vhost.tls_redirect);
    let (to_https, code) = match policy {
        Some(p) => match p.https_redirect {
            HttpsRedirect::WithTls => (tls_host, p.https_redirect_code),
            HttpsRedirect::Never => (false, p.https_redirect_code),
            HttpsRedirect::Always => (true, p.https_redirect_code),
        },
        None => (tls_host, lb_routes::policy::DEFAULT_HTTPS_REDIRECT_CODE),
    };
    if conn.scheme == Scheme::Http
        && to_https
        && let Some(host) = &host
    {
        let original = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        if let Some(location) = redirect_location(host, shared.https_port, original) {
            return Ok(Decision::Redirect(redirect_code(code), location));
        }
    }
    if let Some(redirect) = policy.and_then(|p| p.redirect.as_ref())
        && let Ok(location) = HeaderValue::try_from(redirect.location.as_str())
    {
        return Ok(Decision::Redirect(redirect_code(redirect.code), location));
    }
    let backend = match selected.route {
        Some(route) => {
            let backend = canary::backend(route, request.headers());
            if let Some(canary) = &route.canary_labels
                && !Arc::ptr_eq(backend, &route.backend)
            {
                session.labels = Some(Arc::clone(canary));
            }
            Arc::clone(backend)
        }
        None => selected.backend.cloned().ok_or(ProxyError::NoRoute)?,
    };
    let upstream = match selected.route {
        Some(route) => route.upstream_path(raw_path, &path),
        None => Cow::Borrowed(lb_routes::upstream_path(raw_path, &path)),
    };
    let path_and_query = upstream_path_and_query(request.uri(), &upstream);
    let ingress = selected.route.filter(|r| r.policy.client.limits.is_some()).map(|r| r.ingress.clone());
    let policy = selected.route.map(|r| Arc::clone(&r.policy));
    Ok(Decision::Proxy { backend, path_and_query, policy, ingress })
}

/// `{scheme}://{Host as sent}{root}` (nginx: `$scheme://$http_host`).
fn app_root_location(scheme: Scheme, request: &Request<Incoming>, root: &str) -> Option<HeaderValue> {
    let host = raw_host(request.uri(), request.headers()).ok().flatten()?;
    let scheme = if scheme == Scheme::Https { "https" } else { "http" };
    HeaderValue::try_from(format!("{scheme}://{host}{root}")).ok()
}

/// A redirect status (the compiler only lets 3xx through).
fn redirect_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).ok().filter(StatusCode::is_redirection).unwrap_or(StatusCode::PERMANENT_REDIRECT)
}

/// The endpoints to try (at most `tries`).
async fn upstream_peer(shared: &Shared, backend: &Backend, tries: usize) -> Result<Peers, ProxyError> {
    shared.upstreams.peers(backend, tries).await
}

/// The upstream request: same method, the upstream path with the original
/// query, the client's headers minus hop-by-hop ones, `Host` as the client
/// sent it (or `upstream-vhost`), and the forwarding headers. Takes the
/// client's upgrade handle when the request is an upgrade an HTTP/1.1
/// upstream can take.
fn upstream_request_filter(
    conn: &ConnInfo,
    session: &Session,
    mut request: Request<Incoming>,
    path_and_query: Option<PathAndQuery>,
    settings: &Settings,
) -> Result<(UpstreamRequest, Incoming, Option<OnUpgrade>), ProxyError> {
    let transport = settings.transport;
    let upgrade = if transport.http2 { None } else { upgrade::requested(&request) };
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
    let te_trailers = transport.http2 && hop::te_has_trailers(request.headers());
    let (parts, body) = request.into_parts();
    let mut headers = parts.headers;
    hop::strip_request(&mut headers, &RequestHop { upgrade, te_trailers });
    // hyper already answered `100-continue` (when the body is read).
    headers.remove(EXPECT);
    if parts.uri.authority().is_some() {
        // HTTP/2 `:authority` or absolute-form: that is the host.
        if let Some(host) = &session.host {
            headers.insert(HOST, host.clone());
        }
    }
    forwarded::set_forwarded(
        &mut headers,
        &Forwarded { conn: &conn.forwarded, host: session.host.as_ref(), request_id: &session.request_id },
    );
    // After X-Forwarded-Host, which keeps the client's host.
    if let Some(vhost) = &settings.vhost {
        headers.insert(HOST, vhost.clone());
    }
    let path_and_query = path_and_query.ok_or(ProxyError::BadPath(lb_routes::PathError::BadEncoding))?;
    let request = UpstreamRequest { method: parts.method, path_and_query, headers, transport };
    Ok((request, body, client_upgrade))
}

/// The upstream's response for the client: hop-by-hop headers removed; a
/// `101` to an upgrade request starts the splice; the body fails when the
/// upstream is silent for `read_timeout`.
fn upstream_response_filter(
    shared: &Shared,
    mut response: Response<UpstreamBody>,
    client_upgrade: Option<OnUpgrade>,
    peer: SocketAddr,
    read_timeout: Duration,
) -> Result<Response<ProxyBody>, ProxyError> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ProxyError::Upstream("101 Switching Protocols to a request without upgrade".into()));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        upgrade::splice(client_upgrade, upstream_upgrade, shared.splice.clone(), peer);
    }
    let (mut parts, body) = response.into_parts();
    hop::strip_response(&mut parts.headers, switching);
    // The client side's version is hyper's business.
    parts.version = Version::HTTP_11;
    Ok(Response::from_parts(parts, ReadGapBody::new(body, read_timeout).boxed_unsync()))
}

/// Headers on every response: `Server: lb` and the request's id.
fn response_filter(mut response: Response<ProxyBody>, session: &Session) -> Response<ProxyBody> {
    let headers = response.headers_mut();
    headers.insert(SERVER, SERVER_NAME);
    headers.insert(X_REQUEST_ID, session.request_id.clone());
    if let Some(cookie) = &session.set_cookie {
        headers.append(SET_COOKIE, cookie.clone());
    }
    if let Some(cors) = &session.cors {
        cors.apply(headers);
    }
    response
}

/// One line per request in the access log ([`access_log`]; duration: until
/// the response head).
fn logging(conn: &ConnInfo, session: &Session, status: StatusCode, start: Instant) {
    if !access_log::enabled() {
        return;
    }
    let backend: &dyn std::fmt::Display = match &session.backend {
        Some(backend) => &backend.service,
        None => &"-",
    };
    access_log::record(&access_log::Entry {
        client: conn.client.ip(),
        scheme: conn.scheme.as_str(),
        version: session.version,
        method: &session.method,
        host: session.host.as_ref().and_then(|host| host.to_str().ok()).unwrap_or("-"),
        path: session.uri.path(),
        status: status.as_u16(),
        backend,
        upstream: session.peer,
        duration: start.elapsed(),
        request_id: session.request_id.to_str().unwrap_or("-"),
        error: session.error.as_deref().unwrap_or(""),
    });
}
