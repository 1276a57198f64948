//! Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection, so
//! the proxy removes them in both directions and lets hyper frame each side
//! itself (`Transfer-Encoding` is never forwarded: hyper re-frames bodies,
//! which is also what keeps a `Content-Length` / `Transfer-Encoding`
//! disagreement from turning into request smuggling).

use http::header::{
    CONNECTION, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Always hop-by-hop, whatever `Connection` says.
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TRANSFER_ENCODING,
    TE,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// `Proxy`, removed from requests (httpoxy).
const PROXY: HeaderName = HeaderName::from_static("proxy");

/// Never removed because `Connection` names them: a client must not be able
/// to strip the routing host or the body framing on the upstream side.
const PROTECTED: [HeaderName; 2] = [HOST, http::header::CONTENT_LENGTH];

/// Whether the comma-separated `Connection` values hold `token`
/// (case-insensitive).
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Removes `Connection`, every header it names, and the fixed hop-by-hop
/// set.
fn strip(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        // The fixed set goes anyway (`keep-alive`, `upgrade`: the usual
        // tokens need no name of their own).
        .filter(|token| !HOP_BY_HOP.iter().any(|name| token.eq_ignore_ascii_case(name.as_str())))
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .filter(|name| !PROTECTED.contains(name))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the upstream request keeps of the hop-by-hop set.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestHop {
    /// The request is an HTTP/1.1 upgrade: forward `Upgrade` with
    /// `Connection: upgrade`.
    pub upgrade: Option<HeaderValue>,
    /// The upstream speaks HTTP/2 and the client asked for trailers: keep
    /// `te: trailers` (gRPC needs it; it is the only `TE` HTTP/2 allows).
    pub te_trailers: bool,
}

/// Whether the client's `TE` header holds the `trailers` token.
pub(crate) fn te_has_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("trailers"))
}

/// Filters the request headers for the upstream: the hop-by-hop set,
/// `Trailer`, and `Proxy` (httpoxy: a backend CGI would take it for
/// `HTTP_PROXY`).
pub(crate) fn strip_request(headers: &mut HeaderMap, keep: &RequestHop) {
    strip(headers);
    headers.remove(TRAILER);
    headers.remove(PROXY);
    if let Some(upgrade) = &keep.upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade.clone());
    }
    if keep.te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// Filters the upstream's response headers for the client. `Trailer` is
/// kept (hyper needs it to send trailers to HTTP/1.1 clients). On a `101`
/// the `Upgrade` header goes back with `Connection: upgrade`.
pub(crate) fn strip_response(headers: &mut HeaderMap, switching_protocols: bool) {
    let upgrade = if switching_protocols { headers.get(UPGRADE).cloned() } else { None };
    strip(headers);
    debug_assert!(!headers.contains_key(TRANSFER_ENCODING));
    if let Some(upgrade) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn request_loses_hop_by_hop_and_named_headers() {
        let mut headers = map(&[
            ("host", "a.com"),
            ("connection", "keep-alive, X-Foo"),
            ("connection", "x-bar"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("upgrade", "websocket"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy", "http://evil:8080"),
            ("user-agent", "curl/8"),
            ("authorization", "Bearer t"),
        ]);
        strip_request(&mut headers, &RequestHop::default());
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "host", "user-agent"]);
    }

    #[test]
    fn connection_cannot_strip_host_or_content_length() {
        let mut headers = map(&[("host", "a.com"), ("content-length", "3"), ("connection", "host, content-length")]);
        strip_request(&mut headers, &RequestHop::default());
        assert_eq!(headers["host"], "a.com");
        assert_eq!(headers["content-length"], "3");
        assert!(!headers.contains_key("connection"));
    }

    #[test]
    fn upgrade_is_kept_when_upgrading() {
        let mut headers = map(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket"), ("x-a", "1")]);
        assert!(connection_has(&headers, "upgrade"));
        let keep = RequestHop { upgrade: headers.get(UPGRADE).cloned(), te_trailers: false };
        strip_request(&mut headers, &keep);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["x-a"], "1");
    }

    #[test]
    fn te_trailers_is_kept_for_h2() {
        let mut headers = map(&[("te", "trailers, deflate;q=0.5")]);
        assert!(te_has_trailers(&headers));
        strip_request(&mut headers, &RequestHop { upgrade: None, te_trailers: true });
        assert_eq!(headers["te"], "trailers");
        assert!(!te_has_trailers(&map(&[("te", "gzip")])));
        assert!(te_has_trailers(&map(&[("te", "Trailers")])));
    }

    #[test]
    fn response_filter() {
        let mut headers = map(&[
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("trailer", "grpc-status"),
            ("content-type", "text/html"),
        ]);
        strip_response(&mut headers, false);
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "trailer"]);

        let mut headers = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-accept", "x")]);
        strip_response(&mut headers, true);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["sec-websocket-accept"], "x");
    }
}
