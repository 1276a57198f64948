//! CORS for routes with `enable-cors`, as ingress-nginx answers: a
//! preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//! from an allowed origin is answered here with 204 and never reaches the
//! upstream; every other response to an allowed origin gets the CORS
//! headers (replacing the upstream's). With `cors-allow-origin: *` (the
//! default) every request is allowed and the headers say `*`; with a list
//! the request's `Origin` is echoed when it matches one, and requests from
//! other origins get no CORS headers (a preflight from them is proxied).

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD,
    CONTENT_TYPE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use lb_routes::policy::{AllowedOrigins, Cors};

use crate::body::{ProxyBody, full};

/// The CORS headers of one response.
#[derive(Debug)]
pub(crate) struct CorsHeaders {
    /// `None`: the origin is not allowed; only `Vary: Origin` is sent.
    allowed: Option<Allowed>,
    /// The answer depends on `Origin` (a list of origins).
    vary: bool,
}

#[derive(Debug)]
struct Allowed {
    origin: HeaderValue,
    credentials: bool,
    methods: HeaderValue,
    headers: HeaderValue,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

impl CorsHeaders {
    /// The headers for a request with `request_headers` to a route with `cors`.
    pub(crate) fn for_request(cors: &Cors, request_headers: &HeaderMap) -> Self {
        let origin = request_headers.get(ORIGIN);
        let (allowed_origin, vary) = match cors.origins() {
            AllowedOrigins::Any => (Some(HeaderValue::from_static("*")), false),
            AllowedOrigins::List(_) => {
                let matched = origin.filter(|o| cors.origins().allows(o.to_str().ok()));
                (matched.cloned(), true)
            }
        };
        let allowed = allowed_origin.map(|origin| Allowed {
            origin,
            credentials: cors.credentials(),
            methods: cors.allow_methods().clone(),
            headers: cors.allow_headers().clone(),
            expose: cors.expose_headers().cloned(),
            max_age: cors.max_age().clone(),
        });
        Self { allowed, vary }
    }

    /// Whether the request's origin may make cross-origin requests.
    pub(crate) fn is_allowed(&self) -> bool {
        self.allowed.is_some()
    }

    /// Sets the headers on a response (replacing the upstream's CORS
    /// headers, as `more_set_headers` does).
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        if self.vary {
            headers.append(VARY, HeaderValue::from_static("Origin"));
        }
        let Some(allowed) = &self.allowed else { return };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed.origin.clone());
        if allowed.credentials {
            headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, allowed.methods.clone());
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allowed.headers.clone());
        if let Some(expose) = &allowed.expose {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        headers.insert(ACCESS_CONTROL_MAX_AGE, allowed.max_age.clone());
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(ORIGIN) && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to an allowed preflight: 204 with ingress-nginx's
/// `Content-Type`, empty (the CORS headers are added by the response
/// filter). No `Content-Length: 0`: RFC 9110 forbids it on a 204, and
/// hyper drops it.
pub(crate) fn preflight_response() -> Response<ProxyBody> {
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain charset=UTF-8"));
    response
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;
    use lb_routes::policy::{CorsSpec, CorsToken, OriginPattern};

    use super::*;

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (n.parse::<http::HeaderName>().unwrap(), HeaderValue::from_str(v).unwrap())).collect()
    }

    fn applied(cors: &Cors, pairs: &[(&str, &str)]) -> HeaderMap {
        let mut out = HeaderMap::new();
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("https://upstream.example"));
        CorsHeaders::for_request(cors, &request(pairs)).apply(&mut out);
        out
    }

    #[test]
    fn any_origin_gets_a_star() {
        let cors = Cors::new(CorsSpec::default());
        let out = applied(&cors, &[]);
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_METHODS], "GET, PUT, POST, DELETE, PATCH, OPTIONS");
        assert_eq!(out[ACCESS_CONTROL_MAX_AGE], "1728000");
        assert!(!out.contains_key(ACCESS_CONTROL_EXPOSE_HEADERS) && !out.contains_key(VARY));
        assert_eq!(out.get_all(ACCESS_CONTROL_ALLOW_ORIGIN).iter().count(), 1, "the upstream's is replaced");
    }

    #[test]
    fn a_list_echoes_a_matching_origin_only() {
        let spec = CorsSpec {
            origins: AllowedOrigins::List(vec![OriginPattern::parse("https://*.example.com").unwrap()]),
            expose: vec![CorsToken::exposed("X-Total").unwrap()],
            credentials: false,
            ..CorsSpec::default()
        };
        let cors = Cors::new(spec);
        let out = applied(&cors, &[("origin", "https://app.example.com")]);
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(out[ACCESS_CONTROL_EXPOSE_HEADERS], "X-Total");
        assert_eq!(out[VARY], "Origin");
        assert!(!out.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS));
        let other = CorsHeaders::for_request(&cors, &request(&[("origin", "https://evil.com")]));
        assert!(!other.is_allowed());
        let mut out = HeaderMap::new();
        other.apply(&mut out);
        assert_eq!(out.len(), 1, "only Vary: {out:?}");
        assert!(!CorsHeaders::for_request(&cors, &HeaderMap::new()).is_allowed());
    }

    #[test]
    fn preflights() {
        let pre = request(&[("origin", "https://a.com"), ("access-control-request-method", "PUT")]);
        assert!(is_preflight(&Method::OPTIONS, &pre));
        assert!(!is_preflight(&Method::GET, &pre));
        assert!(!is_preflight(&Method::OPTIONS, &request(&[("origin", "https://a.com")])));
        let response = preflight_response();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(response.body().is_end_stream());
    }
}
