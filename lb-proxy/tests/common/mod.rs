//! Test support: a proxy on loopback port 0, route tables, real hyper
//! backends, raw sockets and clients (HTTP/1.1, h2c, TLS with ALPN).
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lb_proxy::{Proxy, ProxyConfig, RouteHandle};
use lb_routes::{
    Backend, BackendTarget, HostPattern, ObjectName, PathType, Route, RouteTable, RouteTableBuilder, ServicePortRef,
    UpstreamProtocol,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

pub async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(STEP, future).await.expect("test step timed out")
}

/// A running proxy.
pub struct TestProxy {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub routes: RouteHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestProxy {
    /// Signals shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        within(self.task.take().unwrap()).await.unwrap().unwrap();
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub fn config() -> ProxyConfig {
    ProxyConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        https_addr: "127.0.0.1:0".parse().unwrap(),
        upstream_connect_timeout: Duration::from_secs(2),
        upstream_response_timeout: Duration::from_secs(5),
        dns_servers: vec!["127.0.0.1:9".parse().unwrap()],
        shutdown_grace: Duration::from_secs(2),
        ..ProxyConfig::default()
    }
}

pub async fn start(table: RouteTable) -> TestProxy {
    start_with(config(), table).await
}

pub async fn start_with(config: ProxyConfig, table: RouteTable) -> TestProxy {
    let proxy = Proxy::bind(config, table).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (http, https, routes) = (proxy.http_addr(), proxy.https_addr(), proxy.routes());
    let task = tokio::spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    TestProxy { http, https, routes, stop: Some(stop), task: Some(task) }
}

// ---- route tables ----

pub fn backend(name: &str, endpoints: Vec<SocketAddr>, protocol: UpstreamProtocol) -> Arc<Backend> {
    Arc::new(Backend {
        service: ServicePortRef {
            service: ObjectName { namespace: "default".into(), name: name.into() },
            port: "80".into(),
        },
        target: BackendTarget::Endpoints(endpoints),
        protocol,
    })
}

pub fn external(name: &str, host: &str, port: u16) -> Arc<Backend> {
    Arc::new(Backend {
        service: ServicePortRef {
            service: ObjectName { namespace: "default".into(), name: name.into() },
            port: "80".into(),
        },
        target: BackendTarget::ExternalName { host: host.into(), port },
        protocol: UpstreamProtocol::Http1,
    })
}

pub fn route(path: &str, path_type: PathType, backend: Arc<Backend>) -> Route {
    Route::new(ObjectName { namespace: "default".into(), name: "ing".into() }, path.into(), path_type, backend)
}

pub fn host(name: &str) -> HostPattern {
    HostPattern::parse(name).unwrap()
}

/// A table with one prefix route `/` for `host` (or the host-less rules).
pub fn single(host_name: Option<&str>, backend: Arc<Backend>) -> RouteTable {
    let mut builder = RouteTableBuilder::new();
    let pattern = host_name.map(host);
    builder.add_route(pattern.as_ref(), route("/", PathType::Prefix, backend)).unwrap();
    builder.build()
}

// ---- backends ----

/// Serves HTTP/1.1 and h2c (auto) with `handler` until the test ends.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(request).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// What the echo backend reports: `backend=NAME`, `method=`, `uri=`,
/// `version=`, `body=` and one `h:name=value` line per header.
pub async fn echo_request(name: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut text = format!(
        "backend={name}\nmethod={}\nuri={}\nversion={:?}\n",
        request.method(),
        request.uri(),
        request.version()
    );
    for (header, value) in request.headers() {
        text.push_str(&format!("h:{}={}\n", header, String::from_utf8_lossy(value.as_bytes())));
    }
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    text.push_str(&format!("body={}\n", String::from_utf8_lossy(&body)));
    Response::builder()
        .header("server", "backend-server")
        .header("x-backend", name)
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

/// An echo backend (see [`echo_request`]); `/slow` answers after 3 s.
pub async fn echo_backend(name: &'static str) -> SocketAddr {
    serve(move |request: Request<Incoming>| async move {
        if request.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        echo_request(name, request).await
    })
    .await
}

/// An echo backend that counts the requests it sees.
pub async fn counting_backend(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let addr = serve(move |request: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            echo_request(name, request).await
        }
    })
    .await;
    (addr, count)
}

/// A loopback address nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---- clients ----

/// A parsed response.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The echo backend's `h:name=value` line for `name`.
    pub fn seen(&self, name: &str) -> Vec<String> {
        let prefix = format!("h:{name}=");
        self.body.lines().filter_map(|line| line.strip_prefix(&prefix)).map(str::to_owned).collect()
    }

    pub fn field(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}=");
        self.body.lines().find_map(|line| line.strip_prefix(&prefix)).map(str::to_owned)
    }
}

pub async fn answer(response: Response<Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = within(body.collect()).await.unwrap().to_bytes();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// One HTTP/1.1 request on a new connection.
pub async fn h1(addr: SocketAddr, request: Request<Full<Bytes>>) -> Answer {
    let stream = within(TcpStream::connect(addr)).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let response = within(sender.send_request(request)).await.unwrap();
    answer(response).await
}

/// `GET path` with `Host: host` over HTTP/1.1.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Answer {
    h1(addr, Request::get(path).header("host", host).body(Full::default()).unwrap()).await
}

/// Writes `bytes` raw and reads until the proxy closes (or `wait` passes).
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = within(TcpStream::connect(addr)).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// ---- TLS ----

/// Accepts any server certificate (the tests look at which one came).
#[derive(Debug)]
pub struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn tls_connector(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS connection with SNI `server_name` (an IP: no SNI is sent).
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let stream = within(TcpStream::connect(addr)).await.unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    within(tls_connector(alpn).connect(name, stream)).await.unwrap()
}

/// The certificate the server presented.
pub fn presented(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

/// A self-signed certificate for `names`, as the route table holds it.
pub fn certified_key(names: &[&str]) -> Arc<rustls::sign::CertifiedKey> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(rustls::sign::CertifiedKey::from_der(vec![cert.der().clone()], key, &provider).unwrap())
}
