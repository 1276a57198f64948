//! One request's upstream settings: its route's upstream policy
//! (`backend-protocol`, `upstream-vhost`, `proxy-body-size`, the
//! `proxy-*-timeout`s, `proxy-next-upstream`) over the proxy's defaults.

use std::time::Duration;

use http::HeaderValue;
use lb_routes::policy::{BackendProtocol, NextUpstream};
use lb_routes::{RoutePolicy, UpstreamPolicy, UpstreamProtocol};

use super::peers::MAX_ATTEMPTS;
use crate::config::ProxyConfig;

/// The proxy's defaults for what routes do not say.
#[derive(Clone, Copy, Debug)]
pub(super) struct Defaults {
    connect_timeout: Duration,
    response_timeout: Duration,
    body_limit: Option<u64>,
}

/// How requests reach an endpoint: HTTP/1.1 or HTTP/2, plain or TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transport {
    /// HTTP/2 (with prior knowledge, or by ALPN over TLS); else HTTP/1.1.
    pub http2: bool,
    pub tls: bool,
}

impl Transport {
    /// The Service port's protocol (`appProtocol`), unless
    /// `backend-protocol` says otherwise (`HTTP` keeps the port's).
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

impl Defaults {
    pub(super) fn new(config: &ProxyConfig) -> Self {
        Self {
            connect_timeout: config.upstream_connect_timeout,
            response_timeout: config.upstream_response_timeout,
            body_limit: config.proxy_body_size,
        }
    }

    /// The settings of a request to a backend of `port` protocol under
    /// `policy` (none: the default backend's, the proxy's defaults).
    pub(super) fn settings(&self, policy: Option<&RoutePolicy>, port: UpstreamProtocol) -> Settings {
        let default = UpstreamPolicy::default();
        let upstream = policy.map_or(&default, |p| &p.upstream);
        let tries = match upstream.next_upstream_tries {
            _ if upstream.next_upstream.is_off() => 1,
            0 => MAX_ATTEMPTS,
            n => usize::try_from(n).unwrap_or(MAX_ATTEMPTS).min(MAX_ATTEMPTS),
        };
        Settings {
            transport: Transport::of(port, upstream.protocol),
            vhost: upstream.vhost.as_deref().and_then(|v| HeaderValue::from_str(v).ok()),
            body_limit: upstream.body_size.map_or(self.body_limit, |size| size.limit()),
            connect_timeout: upstream.connect_timeout.unwrap_or(self.connect_timeout),
            read_timeout: upstream.read_timeout.unwrap_or(self.response_timeout),
            send_timeout: upstream.send_timeout.unwrap_or(self.response_timeout),
            next: upstream.next_upstream.clone(),
            tries,
            next_timeout: upstream.next_upstream_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: Transport = Transport { http2: false, tls: false };
    const H2C: Transport = Transport { http2: true, tls: false };

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

    #[test]
    fn settings_over_defaults() {
        let config = ProxyConfig { proxy_body_size: Some(1 << 20), ..ProxyConfig::default() };
        let defaults = Defaults::new(&config);
        let settings = defaults.settings(None, UpstreamProtocol::Http1);
        assert_eq!((settings.tries, settings.body_limit), (3, Some(1 << 20)));
        assert_eq!(settings.read_timeout, config.upstream_response_timeout);
        assert_eq!(settings.connect_timeout, config.upstream_connect_timeout);
        let mut policy = RoutePolicy::default();
        policy.upstream.body_size = Some(lb_routes::policy::BodySize::Unlimited);
        policy.upstream.next_upstream_tries = 0;
        policy.upstream.read_timeout = Some(Duration::from_secs(1));
        policy.upstream.vhost = Some("internal:8080".into());
        let settings = defaults.settings(Some(&policy), UpstreamProtocol::Http1);
        assert_eq!((settings.tries, settings.body_limit), (MAX_ATTEMPTS, None));
        assert_eq!(settings.read_timeout, Duration::from_secs(1));
        assert_eq!(settings.send_timeout, config.upstream_response_timeout);
        assert_eq!(settings.vhost.unwrap(), "internal:8080");
        policy.upstream.next_upstream = NextUpstream::off();
        assert_eq!(defaults.settings(Some(&policy), UpstreamProtocol::Http1).tries, 1);
    }
}
