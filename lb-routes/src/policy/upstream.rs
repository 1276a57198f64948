//! How a route talks to its upstream: `backend-protocol`, `upstream-vhost`,
//! `proxy-body-size`, the `proxy-*-timeout`s, `proxy-next-upstream`.
//!
//! `None` means "the proxy's default" (its command-line flags), so one
//! table serves whatever defaults the proxy was started with.

use std::time::Duration;

/// The default of `proxy-next-upstream-tries` (ingress-nginx's).
pub const DEFAULT_NEXT_UPSTREAM_TRIES: u32 = 3;

/// The upstream side of a route's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamPolicy {
    /// `backend-protocol`; `None`: the Service port's (`appProtocol`).
    pub protocol: Option<BackendProtocol>,
    /// `upstream-vhost`: the `Host` (HTTP/2: `:authority`) sent upstream,
    /// a valid `host[:port]`.
    pub vhost: Option<String>,
    /// `proxy-body-size`; `None`: the proxy's default.
    pub body_size: Option<BodySize>,
    /// `proxy-connect-timeout`; `None`: the proxy's default.
    pub connect_timeout: Option<Duration>,
    /// `proxy-read-timeout`: the wait for the response head and the
    /// longest gap between two reads of the response body; `None`: the
    /// proxy's default.
    pub read_timeout: Option<Duration>,
    /// `proxy-send-timeout`: the longest the upstream may leave the
    /// request body unread; `None`: the proxy's default (its read timeout).
    pub send_timeout: Option<Duration>,
    /// `proxy-next-upstream`.
    pub next_upstream: NextUpstream,
    /// `proxy-next-upstream-tries`: attempts in all, on distinct endpoints;
    /// 0: as many as there are endpoints.
    pub next_upstream_tries: u32,
    /// `proxy-next-upstream-timeout`: no new attempt starts after this
    /// much time since the first; `None`: no limit.
    pub next_upstream_timeout: Option<Duration>,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        Self {
            protocol: None,
            vhost: None,
            body_size: None,
            connect_timeout: None,
            read_timeout: None,
            send_timeout: None,
            next_upstream: NextUpstream::default(),
            next_upstream_tries: DEFAULT_NEXT_UPSTREAM_TRIES,
            next_upstream_timeout: None,
        }
    }
}

/// `backend-protocol`: how requests reach the endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendProtocol {
    /// Plain HTTP: HTTP/1.1, or h2c when the Service port's `appProtocol`
    /// says so.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// HTTP/2 with prior knowledge (h2c).
    Grpc,
    /// HTTP/2 over TLS (ALPN `h2`).
    Grpcs,
}

impl BackendProtocol {
    /// Whether the upstream connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, BackendProtocol::Https | BackendProtocol::Grpcs)
    }
}

/// `proxy-body-size`: the largest request body passed upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodySize {
    /// `0`: no limit.
    Unlimited,
    /// At most this many bytes; more is answered with 413.
    AtMost(u64),
}

impl BodySize {
    /// nginx's size syntax: bytes, or a `k`, `m` or `g` unit (any case);
    /// `0`: unlimited.
    pub fn parse(value: &str) -> Result<Self, String> {
        let bad = || "not a size (e.g. 100, 8k, 1m, 1g; 0: unlimited)".to_string();
        let (digits, unit) = match value.as_bytes().last() {
            Some(b'k' | b'K') => (&value[..value.len() - 1], 1 << 10),
            Some(b'm' | b'M') => (&value[..value.len() - 1], 1 << 20),
            Some(b'g' | b'G') => (&value[..value.len() - 1], 1 << 30),
            _ => (value, 1),
        };
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let bytes = digits.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)).ok_or_else(bad)?;
        Ok(if bytes == 0 { BodySize::Unlimited } else { BodySize::AtMost(bytes) })
    }

    /// The limit in bytes, `None` when unlimited.
    pub fn limit(self) -> Option<u64> {
        match self {
            BodySize::Unlimited => None,
            BodySize::AtMost(bytes) => Some(bytes),
        }
    }
}

/// `proxy-next-upstream`: when a failed attempt is retried on the next
/// endpoint. Whatever it says, a request whose body was already sent (so
/// cannot be sent again) is never retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextUpstream {
    /// `error`: no connection, or the connection failed before the
    /// response head.
    pub error: bool,
    /// `timeout`: connecting, sending the request or waiting for the
    /// response head timed out.
    pub timeout: bool,
    /// `invalid_header`: the response head was not valid HTTP.
    pub invalid_header: bool,
    /// `http_500`, `http_502`, …: responses with these statuses (the
    /// response is discarded when another endpoint is tried).
    pub statuses: Vec<u16>,
    /// `non_idempotent`: also retry POST, LOCK, PATCH once the request
    /// went out.
    pub non_idempotent: bool,
}

impl NextUpstream {
    /// `off`: one attempt only.
    pub fn off() -> Self {
        Self { error: false, timeout: false, invalid_header: false, statuses: Vec::new(), non_idempotent: false }
    }

    /// Whether a response with `status` is retried.
    pub fn retries_status(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }

    /// Nothing is retried.
    pub fn is_off(&self) -> bool {
        !self.error && !self.timeout && !self.invalid_header && self.statuses.is_empty()
    }
}

impl Default for NextUpstream {
    /// `error timeout` (ingress-nginx's default).
    fn default() -> Self {
        Self { error: true, timeout: true, ..Self::off() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_ingress_nginx_ones() {
        let policy = UpstreamPolicy::default();
        assert_eq!(policy.next_upstream_tries, 3);
        assert!(policy.next_upstream.error && policy.next_upstream.timeout);
        assert!(!policy.next_upstream.is_off() && NextUpstream::off().is_off());
        assert!(!policy.next_upstream.retries_status(502));
    }

    #[test]
    fn protocols_and_sizes() {
        assert!(BackendProtocol::Https.tls() && BackendProtocol::Grpcs.tls());
        assert!(!BackendProtocol::Http.tls() && !BackendProtocol::Grpc.tls());
        assert_eq!(BodySize::Unlimited.limit(), None);
        assert_eq!(BodySize::AtMost(8).limit(), Some(8));
    }
}
