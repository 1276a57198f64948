//! The listeners of the health check node ports.
//!
//! Each port is served by its own task, which owns the listening socket and
//! the connections accepted on it: closing a port ends the task, which
//! closes the socket and every connection. What a port reports is in a
//! watch channel, so a new count never reopens the socket.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use super::HealthCheck;
use super::response::answer;
use crate::diagnostics::Diagnostic;

/// How long a connection may last (as on the admin listener).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the health check node ports of this node (see
/// [`compile_health_checks`](super::compile_health_checks)). Dropping it
/// closes every port.
pub struct HealthCheckServer {
    bind: IpAddr,
    open: BTreeMap<u16, OpenPort>,
    /// Ports that could not be opened at the last update: a warning is
    /// logged when a port starts failing, not at every retry.
    failing: BTreeSet<u16>,
}

/// A port being served.
struct OpenPort {
    check: watch::Sender<HealthCheck>,
    task: JoinHandle<()>,
}

impl HealthCheckServer {
    /// A server listening on `bind` (`0.0.0.0`, all addresses, in the
    /// agent), with no port open yet.
    pub fn new(bind: IpAddr) -> Self {
        Self { bind, open: BTreeMap::new(), failing: BTreeSet::new() }
    }

    /// Serves exactly `checks`: closes the ports not in it (their
    /// connections too), updates what the others report without reopening
    /// them, and opens the new ones (with `SO_REUSEADDR` and
    /// `SO_REUSEPORT`). A port that cannot be opened is logged and left
    /// closed until the next update, which tries again; it is also returned
    /// as a diagnostic of its Service, for whoever reports them.
    pub async fn update(&mut self, checks: BTreeMap<u16, HealthCheck>) -> Vec<Diagnostic> {
        let unwanted: Vec<u16> = self.open.keys().copied().filter(|port| !checks.contains_key(port)).collect();
        for port in unwanted {
            if let Some(open) = self.open.remove(&port) {
                let check = open.check.borrow().clone();
                open.close().await;
                info!(port, service = %format!("{}/{}", check.namespace, check.name), "health check port closed");
            }
        }
        self.failing.retain(|port| checks.contains_key(port));
        let mut diagnostics = Vec::new();
        for (port, check) in checks {
            if let Some(open) = self.open.get(&port) {
                open.check.send_if_modified(|current| {
                    let changed = *current != check;
                    *current = check;
                    changed
                });
                continue;
            }
            let service = format!("{}/{}", check.namespace, check.name);
            let addr = SocketAddr::new(self.bind, port);
            match listen(addr) {
                Ok(listener) => {
                    if self.failing.remove(&port) {
                        info!(port, %service, "health check port open after earlier failures");
                    } else {
                        debug!(port, %service, "health check port open");
                    }
                    self.open.insert(port, OpenPort::serve(listener, check));
                }
                Err(e) => {
                    if self.failing.insert(port) {
                        warn!(port, %service, "health check port: cannot listen on {addr}: {e}; retried at the next update");
                    } else {
                        debug!(port, %service, "health check port: still cannot listen on {addr}: {e}");
                    }
                    let message = format!("cannot listen on {addr} on this node: {e}; load balancers' probes fail");
                    let field = "spec.healthCheckNodePort";
                    diagnostics.push(Diagnostic::for_object("Service", &check.namespace, &check.name, field, message));
                }
            }
        }
        diagnostics
    }

    /// The ports being served, in order.
    pub fn ports(&self) -> Vec<u16> {
        self.open.keys().copied().collect()
    }
}

impl OpenPort {
    fn serve(listener: TcpListener, check: HealthCheck) -> Self {
        let (check, reports) = watch::channel(check);
        Self { check, task: tokio::spawn(accept(listener, reports)) }
    }

    /// Ends the task and waits until its socket and connections are closed.
    async fn close(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for OpenPort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listening socket on `addr`, sharable with another agent (handing
/// listeners over between two agents) through `SO_REUSEPORT`.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    lb_proxy::sockets::listen_shared(addr)
}

/// Accepts and serves connections until the task is aborted; the
/// connections end with it.
async fn accept(listener: TcpListener, reports: watch::Receiver<HealthCheck>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, reports.clone()));
                }
                Err(e) => {
                    debug!("health check accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, reports: watch::Receiver<HealthCheck>) {
    let service = service_fn(move |_request| {
        let response = answer(&reports.borrow());
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        debug!(%peer, "health check connection: {e}");
    }
}
