//! Reading the client's request: the host it names, the path sent
//! upstream, and the HTTPS redirect target.

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Uri};

use crate::errors::ProxyError;

/// The host as the client sent it (port and case kept): the URI's authority
/// when it has one (HTTP/2 `:authority`, HTTP/1.1 absolute-form, which RFC
/// 9112 3.2.2 says wins over `Host`), else the `Host` header. Two `Host`
/// headers are an error (400, as nginx does); a `Host` that is not visible
/// ASCII counts as none.
pub(crate) fn raw_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Result<Option<&'a str>, ProxyError> {
    if let Some(authority) = uri.authority() {
        let authority = authority.as_str();
        // Userinfo (`user@host`) is not part of the host.
        let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        return Ok(Some(host));
    }
    let mut values = headers.get_all(HOST).iter();
    match (values.next(), values.next()) {
        (_, Some(_)) => Err(ProxyError::DuplicateHost),
        (Some(host), None) => Ok(host.to_str().ok()),
        (None, None) => Ok(None),
    }
}

/// The host as the client sent it ([`raw_host`]) as a header value, for
/// the `Host` and `X-Forwarded-Host` the upstream gets: the `Host` header
/// itself, or the URI's authority. `None` when there is none or it is not
/// valid (the request is then refused with a 400, or routed without host).
pub(crate) fn host_value(uri: &Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    let host = raw_host(uri, headers).ok()??;
    match uri.authority() {
        None => headers.get(HOST).cloned(),
        Some(_) => HeaderValue::from_str(host).ok(),
    }
}

/// The upstream request's path and query: the path to send and the
/// original query byte for byte (`?` kept even when the query is empty).
pub(crate) fn upstream_path_and_query(uri: &Uri, path: &str) -> Option<PathAndQuery> {
    let query = uri.path_and_query().and_then(|pq| pq.as_str().find('?').map(|at| &pq.as_str()[at..])).unwrap_or("");
    if query.is_empty()
        && uri.path() == path
        && let Some(pq) = uri.path_and_query()
    {
        return Some(pq.clone());
    }
    PathAndQuery::try_from(format!("{path}{query}")).ok()
}

/// `https://{host}[:{port}]{path_and_query}` for the 308 of a TLS host.
/// `host` is the normalised host (no port); the port is written only when
/// the HTTPS listener is not on 443. The path and query are the client's
/// own (nginx's `$request_uri`).
pub(crate) fn redirect_location(host: &str, https_port: u16, path_and_query: &str) -> Option<HeaderValue> {
    let location = if https_port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{https_port}{path_and_query}")
    };
    HeaderValue::try_from(location).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for host in hosts {
            map.append(HOST, HeaderValue::from_str(host).unwrap());
        }
        map
    }

    #[test]
    fn host_from_header_for_origin_form() {
        let uri: Uri = "/a?b".parse().unwrap();
        assert_eq!(raw_host(&uri, &headers(&["A.com:8080"])).unwrap(), Some("A.com:8080"));
        assert_eq!(raw_host(&uri, &headers(&[])).unwrap(), None);
        assert!(matches!(raw_host(&uri, &headers(&["a.com", "b.com"])), Err(ProxyError::DuplicateHost)));
        let mut odd = HeaderMap::new();
        odd.insert(HOST, HeaderValue::from_bytes(b"caf\xc3\xa9.com").unwrap());
        assert_eq!(raw_host(&uri, &odd).unwrap(), None);
    }

    #[test]
    fn host_from_authority_wins() {
        let uri: Uri = "http://b.com:81/x".parse().unwrap();
        assert_eq!(raw_host(&uri, &headers(&["a.com"])).unwrap(), Some("b.com:81"));
        let uri: Uri = "http://user:pw@c.com/x".parse().unwrap();
        assert_eq!(raw_host(&uri, &HeaderMap::new()).unwrap(), Some("c.com"));
        let uri: Uri = "https://[::1]:8443/".parse().unwrap();
        assert_eq!(raw_host(&uri, &HeaderMap::new()).unwrap(), Some("[::1]:8443"));
    }

    #[test]
    fn host_values_are_the_raw_host() {
        let uri: Uri = "/a".parse().unwrap();
        assert_eq!(host_value(&uri, &headers(&["A.com:8080"])).unwrap(), "A.com:8080");
        assert_eq!(host_value(&uri, &headers(&[])), None);
        assert_eq!(host_value(&uri, &headers(&["a.com", "b.com"])), None);
        let uri: Uri = "http://user:pw@c.com:81/x".parse().unwrap();
        assert_eq!(host_value(&uri, &headers(&["a.com"])).unwrap(), "c.com:81");
    }

    #[test]
    fn upstream_path_keeps_query_bytes() {
        let uri: Uri = "/a/./b?x=%2f&y".parse().unwrap();
        assert_eq!(upstream_path_and_query(&uri, "/a/b").unwrap(), "/a/b?x=%2f&y");
        let uri: Uri = "/a?".parse().unwrap();
        assert_eq!(upstream_path_and_query(&uri, "/a").unwrap(), "/a?");
        let uri: Uri = "/plain".parse().unwrap();
        assert_eq!(upstream_path_and_query(&uri, "/plain").unwrap(), "/plain");
        let uri: Uri = "http://h/q?z=1".parse().unwrap();
        assert_eq!(upstream_path_and_query(&uri, "/q").unwrap(), "/q?z=1");
    }

    #[test]
    fn redirect_target() {
        assert_eq!(redirect_location("a.com", 443, "/x?y=1").unwrap(), "https://a.com/x?y=1");
        assert_eq!(redirect_location("a.com", 8443, "/").unwrap(), "https://a.com:8443/");
        assert_eq!(redirect_location("[::1]", 443, "/").unwrap(), "https://[::1]/");
    }
}
