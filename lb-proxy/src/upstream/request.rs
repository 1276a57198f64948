//! The request each attempt sends. HTTP/1.1: the origin form (the pool
//! connects to the endpoint it is given), and `Host` carries the client's
//! host, or the endpoint's address when the client sent none (HTTP/1.0).
//! HTTP/2: the URI's authority becomes
//! `:authority`, so it is the client's host (the endpoint address when the
//! client sent none) and the `Host` header is dropped (RFC 9113 8.3.1:
//! they must not differ; HTTP/2 and gRPC servers route by `:authority`).

use std::net::SocketAddr;

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};

use super::settings::Transport;

/// What goes upstream, minus the body.
#[derive(Debug)]
pub(crate) struct UpstreamRequest {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub transport: Transport,
}

impl UpstreamRequest {
    /// The request for one attempt on `peer`, with `body`: HTTP/1.1, the
    /// origin form and `Host` as the client sent it (or `upstream-vhost`);
    /// HTTP/2, the URI's authority is that host (see [`h2c_authority`]) and
    /// the `Host` header goes. `last`: no attempt follows, so this one
    /// takes the headers instead of a copy.
    pub(super) fn for_peer<B>(&mut self, peer: SocketAddr, body: B, last: bool) -> Result<Request<B>, http::Error> {
        let mut headers = if last { std::mem::take(&mut self.headers) } else { self.headers.clone() };
        let (uri, version) = if self.transport.http2 {
            let authority = match h2c_authority(headers.get(HOST)) {
                Some(authority) => authority,
                None => peer_authority(peer)?,
            };
            headers.remove(HOST);
            let scheme = if self.transport.tls { Scheme::HTTPS } else { Scheme::HTTP };
            let uri = Uri::builder()
                .scheme(scheme)
                .authority(authority)
                .path_and_query(self.path_and_query.clone())
                .build()?;
            (uri, Version::HTTP_2)
        } else {
            if !headers.contains_key(HOST) {
                headers.insert(HOST, HeaderValue::try_from(peer.to_string())?);
            }
            (Uri::from(self.path_and_query.clone()), Version::HTTP_11)
        };
        let mut upstream = Request::new(body);
        *upstream.method_mut() = self.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.version_mut() = version;
        *upstream.headers_mut() = headers;
        Ok(upstream)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let upstream = request(transport, host).for_peer(peer.parse().unwrap(), (), true).unwrap();
        assert_eq!(upstream.headers()["x-other"], "1");
        let host = upstream.headers().get(HOST).map(|host| host.to_str().unwrap().to_owned());
        (upstream.uri().to_string(), host)
    }

    #[test]
    fn only_the_last_attempt_takes_the_headers() {
        let mut request = request(H1, Some("a.com"));
        let peer = "10.0.0.1:80".parse().unwrap();
        let first = request.for_peer(peer, (), false).unwrap();
        assert_eq!(first.headers(), &request.headers);
        let last = request.for_peer(peer, (), true).unwrap();
        assert_eq!(last.headers(), first.headers());
        assert!(request.headers.is_empty());
    }

    #[test]
    fn http1_has_the_origin_form_and_a_host() {
        let (uri, host) = uri_and_host(H1, Some("a.com"), "10.0.0.1:80");
        assert_eq!((uri.as_str(), host.as_deref()), ("/a?b=1", Some("a.com")));
        // No Host from the client (HTTP/1.0): the endpoint's address.
        let (uri, host) = uri_and_host(H1, None, "[fd00::1]:8080");
        assert_eq!((uri.as_str(), host.as_deref()), ("/a?b=1", Some("[fd00::1]:8080")));
        let (uri, _) = uri_and_host(Transport { http2: false, tls: true }, Some("a.com"), "10.0.0.1:443");
        assert_eq!(uri, "/a?b=1");
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
}
