//! The headers the proxy adds for the upstream: `X-Forwarded-*`,
//! `X-Real-IP` and `X-Request-ID`.
//!
//! Client-sent forwarding headers are not trusted (ingress-nginx's default
//! `use-forwarded-headers: false`): they are replaced, never appended to.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng;

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
pub(crate) const X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-sent `X-Request-ID` the proxy keeps.
const MAX_REQUEST_ID_LEN: usize = 200;

/// The scheme of the listener a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The forwarding header values of one client connection, the same for
/// all its requests: made once, when it is accepted.
#[derive(Debug)]
pub(crate) struct ConnForwarded {
    /// `X-Forwarded-For` and `X-Real-IP`.
    client_ip: HeaderValue,
    /// `X-Forwarded-Port`.
    port: HeaderValue,
    scheme: Scheme,
}

impl ConnForwarded {
    /// `client_ip`: the TCP peer's address (an IPv4-mapped IPv6 address is
    /// shown as IPv4); `port`: the listener's local port.
    pub(crate) fn new(client_ip: IpAddr, port: u16, scheme: Scheme) -> Self {
        let client_ip = HeaderValue::from_str(&client_ip.to_canonical().to_string())
            .expect("an IP address is a valid header value");
        Self { client_ip, port: HeaderValue::from(port), scheme }
    }
}

/// What the forwarding headers say about the client side.
#[derive(Debug)]
pub(crate) struct Forwarded<'a> {
    pub conn: &'a ConnForwarded,
    /// The host as the client sent it (`Host` or `:authority`).
    pub host: Option<&'a HeaderValue>,
    pub request_id: &'a HeaderValue,
}

/// Sets (replacing any client-sent value) the forwarding headers.
pub(crate) fn set_forwarded(headers: &mut HeaderMap, info: &Forwarded<'_>) {
    let conn = info.conn;
    headers.insert(X_FORWARDED_FOR, conn.client_ip.clone());
    headers.insert(X_REAL_IP, conn.client_ip.clone());
    match info.host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
        None => headers.remove(X_FORWARDED_HOST),
    };
    headers.insert(X_FORWARDED_PORT, conn.port.clone());
    let scheme = HeaderValue::from_static(conn.scheme.as_str());
    headers.insert(X_FORWARDED_PROTO, scheme.clone());
    headers.insert(X_FORWARDED_SCHEME, scheme.clone());
    headers.insert(X_SCHEME, scheme);
    headers.insert(X_REQUEST_ID, info.request_id.clone());
}

/// The request's id: the client's `X-Request-ID` when it is sane (one
/// value, 1 to 200 visible ASCII characters), else a new random one.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(X_REQUEST_ID).iter();
    match (sent.next(), sent.next()) {
        (Some(id), None) if is_sane_request_id(id.as_bytes()) => id.clone(),
        _ => new_request_id(),
    }
}

fn is_sane_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

/// 128 random bits as 32 lowercase hex digits (the format of nginx's
/// `$request_id`).
pub(crate) fn new_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&hex(rand::rng().random())).expect("hex is a valid header value")
}

/// `id` as 32 lowercase hex digits (`{id:032x}`, without a `String`).
fn hex(id: u128) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0; 32];
    for (at, digit) in text.iter_mut().enumerate() {
        let shift = 4 * (31 - at);
        *digit = DIGITS[usize::from((id >> shift) as u8 & 0xf)];
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_replace_client_values() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("7.7.7.7"));
        headers.insert(X_REAL_IP, HeaderValue::from_static("6.6.6.6"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let id = HeaderValue::from_static("abc");
        let host = HeaderValue::from_static("A.com:8080");
        let conn = ConnForwarded::new("::ffff:10.1.2.3".parse().unwrap(), 80, Scheme::Http);
        let info = Forwarded { conn: &conn, host: Some(&host), request_id: &id };
        set_forwarded(&mut headers, &info);
        assert_eq!(headers.get_all(X_FORWARDED_FOR).iter().collect::<Vec<_>>(), ["10.1.2.3"]);
        assert_eq!(headers[X_REAL_IP], "10.1.2.3");
        assert_eq!(headers[X_FORWARDED_HOST], "A.com:8080");
        assert_eq!(headers[X_FORWARDED_PORT], "80");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_SCHEME], "http");
        assert_eq!(headers[X_SCHEME], "http");
        assert_eq!(headers[X_REQUEST_ID], "abc");
    }

    #[test]
    fn no_host_removes_forwarded_host() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.com"));
        let id = new_request_id();
        let conn = ConnForwarded::new("::1".parse().unwrap(), 443, Scheme::Https);
        let info = Forwarded { conn: &conn, host: None, request_id: &id };
        set_forwarded(&mut headers, &info);
        assert!(!headers.contains_key(X_FORWARDED_HOST));
        assert_eq!(headers[X_FORWARDED_FOR], "::1");
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn request_id_kept_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("my-id-42"));
        assert_eq!(request_id(&headers), "my-id-42");
    }

    #[test]
    fn request_id_replaced_when_not_sane() {
        for bad in ["", "has space", &"x".repeat(201)] {
            let mut headers = HeaderMap::new();
            headers.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&headers);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        }
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(request_id(&headers).len(), 32);
        let mut headers = HeaderMap::new();
        headers.append(X_REQUEST_ID, HeaderValue::from_static("a"));
        headers.append(X_REQUEST_ID, HeaderValue::from_static("b"));
        assert_eq!(request_id(&headers).len(), 32);
        assert!(is_sane_request_id("x".repeat(200).as_bytes()));
    }

    #[test]
    fn ids_are_32_hex_digits() {
        for id in [0, 1, 0xfedc_ba98_7654_3210_0123_4567_89ab_cdef, u128::MAX] {
            assert_eq!(hex(id), format!("{id:032x}").as_bytes());
        }
    }

    #[test]
    fn new_ids_differ() {
        assert_ne!(new_request_id(), new_request_id());
        assert_eq!(request_id(&HeaderMap::new()).len(), 32);
    }
}
