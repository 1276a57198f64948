//! The admin listener (`--admin-addr`): `/healthz` answers 200 while the
//! process runs; `/readyz` answers 200 once the first snapshot is applied
//! (the data path and the route table are filled), 503 before; `/metrics`
//! serves the Prometheus families ([`crate::metrics`]).
//!
//! The port is shared (`SO_REUSEPORT`) with a new agent started beside
//! this one during an upgrade, so either may answer a request: every
//! answer names the agent's process in `X-Lb-Pid`. On SIGTERM the agent
//! closes the listener (`lb run` ends the [`serve`] task).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

use crate::metrics::{Format, Metrics};

/// `--ready-file`: present while the agent is ready.
pub struct ReadyFile(Option<std::path::PathBuf>);

impl ReadyFile {
    pub fn new(path: Option<std::path::PathBuf>) -> Self {
        Self(path)
    }

    /// Creates the file (the agent is ready).
    pub fn set(&self) -> Result<()> {
        let Some(path) = &self.0 else { return Ok(()) };
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("--ready-file {}: cannot write", path.display()))
    }

    /// Removes the file (the agent stops); a missing file is no error.
    pub fn clear(&self) {
        let Some(path) = &self.0 else { return };
        if let Err(e) = std::fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("--ready-file {}: cannot remove: {e}", path.display());
        }
    }
}

/// Response header naming the process that answered.
pub const PID_HEADER: &str = "x-lb-pid";

/// Binds the admin listener (shared with `SO_REUSEPORT`); serving starts
/// with [`serve`].
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    lb_proxy::sockets::listen_shared(addr).with_context(|| format!("--admin-addr {addr}: cannot listen"))
}

/// Serves `/healthz`, `/readyz` and `/metrics` forever; `ready` says
/// whether the agent is ready.
pub async fn serve(listener: TcpListener, ready: watch::Receiver<bool>, metrics: Arc<Metrics>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!("admin accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let ready = ready.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let ready = *ready.borrow();
                let response = answer(&request, ready, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let timeout = std::time::Duration::from_secs(30);
            if let Ok(Err(e)) = tokio::time::timeout(timeout, connection).await {
                debug!(%peer, "admin connection: {e}");
            }
        });
    }
}

fn answer(request: &Request<Incoming>, ready: bool, metrics: &Metrics) -> Response<Full<Bytes>> {
    if let (&Method::GET | &Method::HEAD, "/metrics") = (request.method(), request.uri().path()) {
        let accept = request.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok());
        let format = Format::from_accept(accept);
        let mut response = Response::new(Full::new(Bytes::from(metrics.encode(format))));
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
        response.headers_mut().insert(PID_HEADER, HeaderValue::from(std::process::id()));
        return response;
    }
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") if ready => (StatusCode::OK, "ready\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: the first snapshot is not applied yet\n")
        }
        (_, "/healthz" | "/readyz" | "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n"),
        _ => (StatusCode::NOT_FOUND, "not found: try /healthz, /readyz or /metrics\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response.headers_mut().insert(PID_HEADER, HeaderValue::from(std::process::id()));
    response
}
