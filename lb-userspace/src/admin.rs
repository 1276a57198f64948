//! The admin listener (`--admin-addr`): `/healthz` answers 200 while the
//! process runs; `/readyz` answers 200 once the first snapshot is applied
//! (the data path and the route table are filled), 503 before; `/metrics`
//! serves the Prometheus families ([`crate::metrics`]); `/inspect/*` what
//! `lb inspect` shows, in JSON ([`crate::inspect`]).
//!
//! The port is shared (`SO_REUSEPORT`) with a new agent started beside
//! this one during an upgrade, so either may answer a request: every
//! answer names the agent's process in `X-Lb-Pid`. On SIGTERM the agent
//! closes the listener (`lb run` ends the [`serve`] task).

use std::convert::Infallible;
use std::net::SocketAddr;

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

use crate::inspect::Inspector;
use crate::metrics::Format;

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

/// Serves `/healthz`, `/readyz`, `/metrics` and `/inspect/*` forever;
/// `ready` says whether the agent is ready.
pub async fn serve(listener: TcpListener, ready: watch::Receiver<bool>, inspector: Inspector) {
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
        let inspector = inspector.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let ready = *ready.borrow();
                let inspector = inspector.clone();
                async move {
                    let mut response = answer(&request, ready, &inspector).await;
                    response.headers_mut().insert(PID_HEADER, HeaderValue::from(std::process::id()));
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let timeout = std::time::Duration::from_secs(30);
            if let Ok(Err(e)) = tokio::time::timeout(timeout, connection).await {
                debug!(%peer, "admin connection: {e}");
            }
        });
    }
}

async fn answer(request: &Request<Incoming>, ready: bool, inspector: &Inspector) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let readable = matches!(*request.method(), Method::GET | Method::HEAD);
    if readable && path == "/metrics" {
        let accept = request.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok());
        let format = Format::from_accept(accept);
        let body = match inspector.metrics_text(format).await {
            Ok(body) => body,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the data path: {e:#}\n")),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
        return response;
    }
    if readable && let Some(what) = path.strip_prefix("/inspect/") {
        let query = Query::parse(request.uri().query().unwrap_or(""));
        let answer = match what {
            "services" => inspector.services().await.map(|r| json(&r)),
            "conntrack" => {
                let limit = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(DEFAULT_FLOW_LIMIT);
                inspector
                    .conntrack(query.get("service").map(str::to_string), limit.min(MAX_FLOW_LIMIT))
                    .await
                    .map(|r| json(&r))
            }
            "routes" => Ok(json(&inspector.routes())),
            "diagnostics" => Ok(json(&inspector.diagnostics())),
            _ => {
                return text(
                    StatusCode::NOT_FOUND,
                    "not found: try /inspect/services, conntrack, routes or diagnostics\n".into(),
                );
            }
        };
        return match answer {
            Ok(body) => {
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")),
        };
    }
    let (status, body) = match (readable, path) {
        (true, "/healthz") => (StatusCode::OK, "ok\n"),
        (true, "/readyz") if ready => (StatusCode::OK, "ready\n"),
        (true, "/readyz") => (StatusCode::SERVICE_UNAVAILABLE, "not ready: the first snapshot is not applied yet\n"),
        (false, "/healthz" | "/readyz" | "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n"),
        _ => (StatusCode::NOT_FOUND, "not found: try /healthz, /readyz, /metrics or /inspect/services\n"),
    };
    text(status, body.into())
}

/// `lb inspect conntrack`'s default `--limit`, and the most one request
/// may ask for.
const DEFAULT_FLOW_LIMIT: usize = 100;
const MAX_FLOW_LIMIT: usize = 100_000;

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("the reports serialize")
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A query string's `key=value` pairs (decoded).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Self {
        Self(form_urlencoded::parse(query.as_bytes()).into_owned().collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}
