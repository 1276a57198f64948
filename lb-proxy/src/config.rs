//! The proxy's settings.

use std::net::SocketAddr;
use std::time::Duration;

/// The proxy's settings. [`Default`] gives the values below (nginx-like).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Plain HTTP listener. Default `0.0.0.0:80`.
    pub http_addr: SocketAddr,
    /// TLS listener. Default `0.0.0.0:443`.
    pub https_addr: SocketAddr,
    /// Time to read a request head (slowloris); on keep-alive connections
    /// counted from the next request's first byte. A new connection that
    /// sends no complete request within it is closed. Default 10 s.
    pub client_header_timeout: Duration,
    /// A client connection with no request in flight for this long is
    /// closed (gracefully). Default 75 s.
    pub client_idle_timeout: Duration,
    /// Default 10 s.
    pub tls_handshake_timeout: Duration,
    /// Per upstream connection attempt (and bound on a DNS lookup).
    /// Default 5 s.
    pub upstream_connect_timeout: Duration,
    /// From sending a request to the upstream's response head: 504 after.
    /// Also the longest gap between two reads of a response body, and the
    /// longest the upstream may leave the request body unread
    /// (`proxy-read-timeout`, `proxy-send-timeout` override it per route).
    /// Default 60 s.
    pub upstream_response_timeout: Duration,
    /// The largest request body passed upstream (`proxy-body-size`
    /// overrides it per route); bigger ones get 413. Default: no limit
    /// (the `lb` binary's `--proxy-body-size` defaults to 1m, as
    /// ingress-nginx).
    pub proxy_body_size: Option<u64>,
    /// The HTTP/1.1 read buffer (at least 8 KiB) and the HTTP/2 header list
    /// limit: a bigger request head is answered with 431. Default 32 KiB.
    pub max_request_header_bytes: usize,
    /// Name servers for `ExternalName` backends (UDP and TCP); empty: the
    /// system's `resolv.conf`.
    pub dns_servers: Vec<SocketAddr>,
    /// How long [`Proxy::run`] drains after its shutdown signal before it
    /// closes what is left (upgraded connections included). Default 10 s.
    ///
    /// [`Proxy::run`]: crate::Proxy::run
    pub shutdown_grace: Duration,
    /// While draining, how long a connection with no request in flight is
    /// kept open for its next request (answered, then the connection
    /// closed: `Connection: close` on HTTP/1.1, GOAWAY on HTTP/2) before it
    /// is closed idle. Closing a kept-alive connection at once races with a
    /// request the client is sending; busy clients send within this time.
    /// At most `shutdown_grace`. Default 1 s.
    pub drain_idle: Duration,
    /// Listen only once a route table was given with
    /// [`RouteHandle::update`] (the sockets are bound by [`Proxy::bind`]
    /// either way, so a taken port still fails there). A proxy started
    /// beside another one on the same ports (`SO_REUSEPORT`) then takes no
    /// connection before it can route it. Default `false`: listen at once.
    ///
    /// [`RouteHandle::update`]: crate::RouteHandle::update
    /// [`Proxy::bind`]: crate::Proxy::bind
    pub listen_when_routed: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([0, 0, 0, 0], 80)),
            https_addr: SocketAddr::from(([0, 0, 0, 0], 443)),
            client_header_timeout: Duration::from_secs(10),
            client_idle_timeout: Duration::from_secs(75),
            tls_handshake_timeout: Duration::from_secs(10),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            proxy_body_size: None,
            max_request_header_bytes: 32 * 1024,
            dns_servers: Vec::new(),
            shutdown_grace: Duration::from_secs(10),
            drain_idle: Duration::from_secs(1),
            listen_when_routed: false,
        }
    }
}
