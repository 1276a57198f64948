//! HTTP/1.1 upstreams: a keep-alive pool (a `hyper_util` legacy client over
//! `hyper-rustls` and `HttpConnector`) that connects to the request URI's
//! scheme and authority and pools by them, so that URI names the endpoint
//! (`https` for TLS: see [`tls`](super::tls)). Each connection is opened
//! within the connect timeout of the request that asks for it (TLS
//! handshake included).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::retry::Failure;
use super::{POOL_IDLE_TIMEOUT, tls};
use crate::body::{BoxError, ReclaimableBody};
use crate::errors::error_chain;

/// The HTTP/1.1 connections of one proxy, keyed by endpoint and transport.
pub(super) struct H1Pool {
    client: Client<Connector, ReclaimableBody>,
}

impl H1Pool {
    /// A pool whose connections are opened within `default_timeout` when
    /// a request does not say (see [`Connector`]).
    pub(super) fn new(default_timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        // The connect timeout is the route's: see `Connector`.
        http.set_connect_timeout(None);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.enforce_http(false);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(&[]))
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let connector = Connector { https, default_timeout };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Self { client }
    }

    /// One attempt, on a pooled connection to the endpoint `request`'s URI
    /// names or on a new one opened within `connect_timeout`.
    pub(super) async fn send(
        &self,
        request: Request<ReclaimableBody>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, Failure> {
        CONNECT_TIMEOUT.scope(connect_timeout, self.client.request(request)).await.map_err(failure)
    }
}

tokio::task_local! {
    /// The connect timeout of the request the legacy client connects for.
    static CONNECT_TIMEOUT: Duration;
}

/// The HTTP/1.1 client's connector: plain or TLS by the URI's scheme, in
/// the connect timeout of the request that asks for the connection (read
/// when the client starts connecting, in that request's task).
#[derive(Clone)]
struct Connector {
    https: HttpsConnector<HttpConnector>,
    default_timeout: Duration,
}

/// A connect that did not finish in time.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out after {0:?}")]
struct ConnectTimedOut(Duration);

type Connecting = Pin<Box<dyn Future<Output = Result<MaybeHttpsStream<TokioIo<TcpStream>>, BoxError>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.https.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let timeout = CONNECT_TIMEOUT.try_with(|t| *t).unwrap_or(self.default_timeout);
        let connecting = self.https.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(ConnectTimedOut(timeout)) as BoxError),
            }
        })
    }
}

/// The failure of an attempt, from the legacy client's error.
fn failure(error: hyper_util::client::legacy::Error) -> Failure {
    if error.is_connect() {
        let timed_out = has_cause::<ConnectTimedOut>(&error);
        Failure::Connect { message: error_chain(&error), timed_out }
    } else {
        let invalid_header = has_cause_where(&error, |e: &hyper::Error| e.is_parse());
        Failure::Request { message: error_chain(&error), invalid_header }
    }
}

fn has_cause<E: std::error::Error + 'static>(error: &dyn std::error::Error) -> bool {
    has_cause_where(error, |_: &E| true)
}

fn has_cause_where<E: std::error::Error + 'static>(error: &dyn std::error::Error, test: impl Fn(&E) -> bool) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(found) = cause.downcast_ref::<E>() {
            return test(found);
        }
        source = cause.source();
    }
    false
}
