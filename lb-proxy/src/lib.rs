//! The L7 proxy: what replaces ingress-nginx.
//!
//! - Listeners (`listener`): plain HTTP (HTTP/1.1, and
//!   HTTP/2 with prior knowledge) and TLS (rustls, ALPN `h2` and
//!   `http/1.1`, certificate by SNI from the current route table, else a
//!   self-signed default certificate).
//! - Requests (`handler`): routed over an
//!   [`lb_routes::RouteTable`] that [`RouteHandle::update`] swaps
//!   atomically; each request loads the table once, at its start.
//! - Upstreams (`upstream`): a pooled keep-alive
//!   HTTP/1.1 client and one multiplexed HTTP/2 (h2c) connection per
//!   endpoint, the endpoint chosen per request, retries on connection
//!   failures, `ExternalName` backends resolved through DNS.
//! - Upgrades (WebSocket...) are spliced in their own tasks.
//! - Listeners are shared ([`sockets`]): `SO_REUSEPORT`,
//!   so a new proxy can listen beside an old one, which then closes its
//!   listeners and drains ([`Proxy::run`]).
//!
//! ```no_run
//! # async fn demo(table: lb_routes::RouteTable, next: lb_routes::RouteTable) -> anyhow::Result<()> {
//! let proxy = lb_proxy::Proxy::bind(lb_proxy::ProxyConfig::default(), table).await?;
//! let routes = proxy.routes();
//! let server = tokio::spawn(proxy.run(async { let _ = tokio::signal::ctrl_c().await; }));
//! routes.update(next);
//! server.await??;
//! # Ok(()) }
//! ```

pub mod access_log;
mod affinity;
mod body;
mod canary;
mod client_policy;
mod config;
mod conn;
mod cookies;
mod cors;
mod errors;
mod forwarded;
mod handler;
mod hop;
mod limits;
mod listener;
pub mod metrics;
mod request;
mod resolve;
pub mod sockets;
mod streams;
mod tls;
mod upgrade;
mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use lb_routes::RouteTable;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::handler::Shared;
use crate::listener::ClientLimits;
use crate::upgrade::SpliceControl;
use crate::upstream::Upstreams;

pub use crate::config::ProxyConfig;

/// Swaps the proxy's route table. Cheap to clone; usable from any thread.
#[derive(Clone, Debug)]
pub struct RouteHandle {
    table: Arc<ArcSwap<RouteTable>>,
    /// `true` after the first [`update`](Self::update).
    routed: Arc<watch::Sender<bool>>,
    /// `true` once both listeners listen (connections are queued, not
    /// refused).
    listening: Arc<watch::Sender<bool>>,
}

impl RouteHandle {
    /// Replaces the whole table atomically: requests that already started
    /// finish with the table they loaded (their backend), new requests and
    /// TLS handshakes see the new one; open connections (upgraded ones
    /// included) are not touched.
    pub fn update(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
        self.routed.send_replace(true);
    }

    /// The table in use now.
    pub fn current(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Completes once the proxy listens on both ports: with
    /// [`ProxyConfig::listen_when_routed`] that is after the first
    /// [`update`](Self::update), in the proxy's own task, so an agent waits
    /// for this before it says it is ready. Never completes if the proxy
    /// stops before listening.
    pub async fn listening(&self) {
        let mut listening = self.listening.subscribe();
        // The sender lives in `self`: this cannot fail.
        let _ = listening.wait_for(|listening| *listening).await;
    }
}

/// A bound proxy, ready to [run](Proxy::run).
pub struct Proxy {
    config: ProxyConfig,
    http: Listener,
    https: Listener,
    http_addr: SocketAddr,
    https_addr: SocketAddr,
    routes: RouteHandle,
    acceptor: TlsAcceptor,
    metrics: Option<Arc<metrics::RequestMetrics>>,
}

/// A proxy's socket: bound, and listening at once or once routed.
enum Listener {
    Bound(TcpSocket),
    Listening(TcpListener),
}

impl Listener {
    fn bind(addr: SocketAddr, listen: bool, what: &str) -> anyhow::Result<Self> {
        let error = || format!("cannot listen on {addr} ({what})");
        let socket = sockets::bind_shared(addr).with_context(error)?;
        Ok(if listen {
            Listener::Listening(socket.listen(sockets::BACKLOG).with_context(error)?)
        } else {
            Listener::Bound(socket)
        })
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Listener::Bound(socket) => socket.local_addr(),
            Listener::Listening(listener) => listener.local_addr(),
        }
    }

    fn listen(self) -> std::io::Result<TcpListener> {
        match self {
            Listener::Bound(socket) => socket.listen(sockets::BACKLOG),
            Listener::Listening(listener) => Ok(listener),
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("http_addr", &self.http_addr)
            .field("https_addr", &self.https_addr)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Binds both listeners, shared with `SO_REUSEPORT` (errors here, e.g.
    /// a port taken by another program, are returned before serving), and
    /// generates the default self-signed certificate. They listen now, or
    /// with [`ProxyConfig::listen_when_routed`] once routed.
    pub async fn bind(config: ProxyConfig, routes: RouteTable) -> anyhow::Result<Proxy> {
        let now = !config.listen_when_routed;
        let http = Listener::bind(config.http_addr, now, "HTTP")?;
        let https = Listener::bind(config.https_addr, now, "HTTPS")?;
        let http_addr = http.local_addr()?;
        let https_addr = https.local_addr()?;
        let table = Arc::new(ArcSwap::from_pointee(routes));
        let default_cert = tls::default_certificate().context("cannot generate the default certificate")?;
        let tls_config = tls::server_config(tls::SniResolver::new(table.clone(), default_cert))?;
        let routes = RouteHandle {
            table,
            routed: Arc::new(watch::Sender::new(false)),
            listening: Arc::new(watch::Sender::new(false)),
        };
        let acceptor = TlsAcceptor::from(tls_config);
        Ok(Proxy { config, http, https, http_addr, https_addr, routes, acceptor, metrics: None })
    }

    /// Counts every request in `metrics` (off by default).
    pub fn with_metrics(mut self, metrics: Arc<metrics::RequestMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The bound plain HTTP address (port 0 resolved).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound TLS address (port 0 resolved).
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The handle that swaps the route table.
    pub fn routes(&self) -> RouteHandle {
        self.routes.clone()
    }

    /// Serves until `shutdown` completes, then closes its listeners at once
    /// (connections still in their accept queues go to another listener of
    /// the port if the kernel migrates them: `net.ipv4.tcp_migrate_req`)
    /// and drains: a connection with a request in flight is closed after
    /// its response (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY), an idle
    /// one after its next request or [`ProxyConfig::drain_idle`]; the call
    /// returns when they and the upgraded connections are done, or after
    /// `shutdown_grace`, when whatever is left is closed.
    ///
    /// With [`ProxyConfig::listen_when_routed`] it listens only once the
    /// first route table is given.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Proxy { config, http, https, http_addr, https_addr, routes, acceptor, metrics } = self;
        tokio::pin!(shutdown);
        if config.listen_when_routed {
            let mut routed = routes.routed.subscribe();
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                // The sender lives in `routes`: this cannot fail.
                _ = routed.wait_for(|routed| *routed) => {}
            }
        }
        let http = http.listen().with_context(|| format!("cannot listen on {http_addr} (HTTP)"))?;
        let https = https.listen().with_context(|| format!("cannot listen on {https_addr} (HTTPS)"))?;
        tracing::debug!(%http_addr, %https_addr, "L7 proxy accepting");
        routes.listening.send_replace(true);
        let routes = routes.table;
        let (drain_tx, drain_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task and splice holds a sender: `recv` returns
        // `None` once all are gone.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let upstreams = Upstreams::new(&config);
        // Rate-limit state outlives route tables; pruned while the proxy runs.
        let limiters = Arc::new(limits::Limiters::default());
        let pruner = tokio::spawn(limits::prune_periodically(Arc::downgrade(&limiters)));
        let log_flusher = tokio::spawn(access_log::flush_periodically());
        let shared = Arc::new(Shared {
            routes,
            upstreams,
            https_port: https_addr.port(),
            splice: SpliceControl { alive: alive_tx, stop: stop_rx },
            limiters: limiters.clone(),
            metrics,
        });
        let limits = ClientLimits {
            header_timeout: config.client_header_timeout,
            idle_timeout: config.client_idle_timeout,
            tls_handshake_timeout: config.tls_handshake_timeout,
            max_header_bytes: config.max_request_header_bytes,
            drain_idle: config.drain_idle.min(config.shutdown_grace),
        };
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = http.accept() => match accepted {
                    Ok((stream, client)) => {
                        connections.spawn(listener::serve_plain(stream, client, shared.clone(), limits, drain_rx.clone()));
                    }
                    Err(error) => accept_failed(&error).await,
                },
                accepted = https.accept() => match accepted {
                    Ok((stream, client)) => {
                        let acceptor = acceptor.clone();
                        connections.spawn(listener::serve_tls(stream, client, acceptor, shared.clone(), limits, drain_rx.clone()));
                    }
                    Err(error) => accept_failed(&error).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // Closed at once: new connections go to the other listeners of the
        // ports (a new agent's), if any.
        drop((http, https));
        tracing::info!(connections = connections.len(), "L7 proxy listeners closed, draining");
        let _ = drain_tx.send(true);
        drop(shared);
        let drained = tokio::time::timeout(config.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
            alive_rx.recv().await;
        })
        .await;
        if drained.is_err() {
            tracing::info!(connections = connections.len(), "L7 proxy shutdown grace over, closing the rest");
        }
        let _ = stop_tx.send(true);
        pruner.abort();
        connections.shutdown().await;
        log_flusher.abort();
        access_log::flush();
        Ok(())
    }
}

/// Accept errors (e.g. out of file descriptors) are logged and retried
/// after a pause, so the loop does not spin.
async fn accept_failed(error: &std::io::Error) {
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
