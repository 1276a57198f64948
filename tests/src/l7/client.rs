//! Clients for the L7 tests: HTTP/1.1 and h2c (hyper), HTTPS with SNI and
//! ALPN (tokio-rustls), WebSocket (tokio-tungstenite) and raw TCP. Every
//! operation is bounded in time.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::certs::{CertInfo, TestCa, cert_info};
use crate::echo::{EchoRequest, POD_NAME_HEADER, parse_body};

/// Default bound of one request (connect, send, whole response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response body read.
const MAX_BODY: usize = 4 << 20;

/// A request to send.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    /// Request target (path and query), sent as is.
    pub path: String,
    /// Host header / `:authority`; default: the address connected to.
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub timeout: Duration,
}

impl Req {
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.into(),
            host: None,
            headers: Vec::new(),
            body: Bytes::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path)
    }

    pub fn post(path: &str, body: impl Into<Bytes>) -> Self {
        Self { body: body.into(), ..Self::new(Method::POST, path) }
    }

    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.into());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn build(&self, version: Version, scheme: &str, default_host: &str) -> Result<Request<Full<Bytes>>> {
        let host = self.host.as_deref().unwrap_or(default_host);
        let mut b = Request::builder().method(self.method.clone()).version(version);
        b = if version == Version::HTTP_2 {
            b.uri(format!("{scheme}://{host}{}", self.path))
        } else {
            b.uri(self.path.as_str()).header(http::header::HOST, host)
        };
        for (n, v) in &self.headers {
            b = b.header(n.as_str(), v.as_str());
        }
        Ok(b.body(Full::new(self.body.clone()))?)
    }
}

/// A response.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Resp {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The echo pod's description of the request it received.
    pub fn echo(&self) -> Result<EchoRequest> {
        parse_body(&self.text()).ok_or_else(|| anyhow!("not an echo answer: {self}"))
    }

    /// The echo pod that answered (`x-pod-name`).
    pub fn pod(&self) -> Option<String> {
        self.header(POD_NAME_HEADER).map(str::to_string)
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut body = self.text();
        if body.len() > 600 {
            body.truncate(600);
            body.push_str("...");
        }
        write!(f, "{} {} {:?} {body:?}", self.version, self.status, self.headers)
    }
}

async fn bounded<T>(timeout: Duration, what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(timeout, f).await.map_err(|_| anyhow!("{what}: timed out after {timeout:?}"))?
}

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    connect_from(addr, None).await
}

/// Connects to `addr`, from `local` (any port) if given.
async fn connect_from(addr: SocketAddr, local: Option<Ipv4Addr>) -> Result<TcpStream> {
    let s = match local {
        None => TcpStream::connect(addr).await,
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((ip, 0)))?;
            socket.connect(addr).await
        }
    }
    .with_context(|| format!("connecting to {addr} (from {local:?})"))?;
    s.set_nodelay(true).ok();
    Ok(s)
}

async fn read_response(resp: http::Response<hyper::body::Incoming>) -> Result<Resp> {
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the response body (status {}): {e}", parts.status))?
        .to_bytes();
    Ok(Resp {
        status: parts.status.as_u16(),
        version: format!("{:?}", parts.version),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body,
    })
}

/// A client connection speaking HTTP/1.1 or HTTP/2 (kept alive for several requests).
pub struct Conn {
    sender: Sender,
    default_host: String,
    scheme: &'static str,
    local: Option<SocketAddr>,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    async fn handshake<S>(io: S, h2: bool, scheme: &'static str, default_host: String) -> Result<Self>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let sender = if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await.context("HTTP/2 handshake")?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await.context("HTTP/1 handshake")?;
            tokio::spawn(conn.with_upgrades());
            Sender::H1(sender)
        };
        Ok(Self { sender, default_host, scheme, local: None })
    }

    /// A plaintext HTTP/1.1 connection.
    pub async fn h1(addr: SocketAddr) -> Result<Self> {
        Self::plain(addr, false).await
    }

    /// A plaintext HTTP/2 connection with prior knowledge (h2c).
    pub async fn h2c(addr: SocketAddr) -> Result<Self> {
        Self::plain(addr, true).await
    }

    /// A plaintext HTTP/1.1 connection from source address `local`.
    pub async fn h1_from(addr: SocketAddr, local: Ipv4Addr) -> Result<Self> {
        Self::plain_from(addr, false, Some(local)).await
    }

    async fn plain(addr: SocketAddr, h2: bool) -> Result<Self> {
        Self::plain_from(addr, h2, None).await
    }

    async fn plain_from(addr: SocketAddr, h2: bool, from: Option<Ipv4Addr>) -> Result<Self> {
        bounded(DEFAULT_TIMEOUT, &format!("connecting to {addr}"), async {
            let stream = connect_from(addr, from).await?;
            let local = stream.local_addr().ok();
            let mut conn = Self::handshake(stream, h2, "http", addr.to_string()).await?;
            conn.local = local;
            Ok(conn)
        })
        .await
    }

    /// Our side of the TCP connection.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    pub fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// Whether the server closed the connection.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// Sends `req` and reads the whole response.
    pub async fn send(&mut self, req: &Req) -> Result<Resp> {
        let what = format!("{} {}", req.method, req.path);
        let timeout = req.timeout;
        bounded(timeout, &what, async {
            let resp = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.context("connection not ready")?;
                    s.send_request(req.build(Version::HTTP_11, self.scheme, &self.default_host)?).await?
                }
                Sender::H2(s) => {
                    s.ready().await.context("connection not ready")?;
                    s.send_request(req.build(Version::HTTP_2, self.scheme, &self.default_host)?).await?
                }
            };
            read_response(resp).await
        })
        .await
        .with_context(|| what.clone())
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn send_h1(addr: SocketAddr, req: &Req) -> Result<Resp> {
    Conn::h1(addr).await?.send(req).await
}

/// One HTTP/2 (prior knowledge) request on a fresh connection.
pub async fn send_h2c(addr: SocketAddr, req: &Req) -> Result<Resp> {
    Conn::h2c(addr).await?.send(req).await
}

/// What a TLS handshake showed.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// The server's (leaf) certificate.
    pub cert: CertInfo,
    pub cert_der: Vec<u8>,
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
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

/// How to connect over TLS.
#[derive(Clone, Copy)]
pub struct TlsOpts<'a> {
    /// SNI (also the default Host); an IP address sends no SNI.
    pub sni: &'a str,
    /// ALPN protocols offered, e.g. `["h2", "http/1.1"]`.
    pub alpn: &'a [&'a str],
    /// Verify the server against this CA (and `sni`); `None` accepts any certificate.
    pub ca: Option<&'a TestCa>,
}

impl<'a> TlsOpts<'a> {
    /// SNI `sni`, ALPN http/1.1, no verification.
    pub fn new(sni: &'a str) -> Self {
        Self { sni, alpn: &["http/1.1"], ca: None }
    }

    pub fn alpn(mut self, alpn: &'a [&'a str]) -> Self {
        self.alpn = alpn;
        self
    }

    pub fn verify(mut self, ca: &'a TestCa) -> Self {
        self.ca = Some(ca);
        self
    }
}

/// A TLS handshake with `addr`.
pub async fn tls_connect(addr: SocketAddr, opts: TlsOpts<'_>) -> Result<(TlsStream<TcpStream>, TlsInfo)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let mut config = match opts.ca {
        Some(ca) => builder.with_root_certificates(ca.root_store()).with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let server_name = ServerName::try_from(opts.sni.to_string()).with_context(|| format!("SNI {:?}", opts.sni))?;
    let what = format!("TLS handshake with {addr} (SNI {})", opts.sni);
    bounded(DEFAULT_TIMEOUT, &what, async {
        let tcp = connect(addr).await?;
        let tls = TlsConnector::from(Arc::new(config)).connect(server_name, tcp).await.context("handshake")?;
        let (_, session) = tls.get_ref();
        let cert_der = session.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
        let info = TlsInfo {
            alpn: session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
            cert: cert_info(&cert_der)?,
            cert_der,
        };
        Ok((tls, info))
    })
    .await
    .with_context(|| what.clone())
}

/// A TLS connection to `addr`, speaking what ALPN negotiated (h2, else HTTP/1.1).
pub async fn tls_conn(addr: SocketAddr, opts: TlsOpts<'_>) -> Result<(Conn, TlsInfo)> {
    let (tls, info) = tls_connect(addr, opts).await?;
    let local = tls.get_ref().0.local_addr().ok();
    let h2 = info.alpn.as_deref() == Some("h2");
    let mut conn = Conn::handshake(tls, h2, "https", opts.sni.to_string()).await?;
    conn.local = local;
    Ok((conn, info))
}

/// One request over a fresh TLS connection.
pub async fn send_tls(addr: SocketAddr, opts: TlsOpts<'_>, req: &Req) -> Result<(TlsInfo, Resp)> {
    let (mut conn, info) = tls_conn(addr, opts).await?;
    let resp = conn.send(req).await?;
    Ok((info, resp))
}

/// A WebSocket client over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Opens `ws://host/path` on a connection to `addr`; returns the socket and
/// the handshake response's headers.
pub async fn ws_connect(addr: SocketAddr, host: &str, path: &str) -> Result<(Ws, Vec<(String, String)>)> {
    let what = format!("WebSocket ws://{host}{path} via {addr}");
    bounded(DEFAULT_TIMEOUT, &what, async {
        let tcp = connect(addr).await?;
        let request = format!("ws://{host}{path}").into_client_request()?;
        let (ws, resp) = tokio_tungstenite::client_async(request, tcp).await?;
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        Ok((ws, headers))
    })
    .await
    .with_context(|| what.clone())
}

/// Sends a text message and returns the next text message received.
pub async fn ws_roundtrip(ws: &mut Ws, text: &str) -> Result<String> {
    bounded(DEFAULT_TIMEOUT, "WebSocket round trip", async {
        ws.send(Message::text(text)).await.context("sending")?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
                Some(Ok(Message::Close(c))) => bail!("closed by the server: {c:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e).context("receiving"),
                None => bail!("connection ended"),
            }
        }
    })
    .await
}

/// A raw TCP connection for hand-written bytes.
pub struct RawConn {
    stream: TcpStream,
    pub received: Vec<u8>,
}

impl RawConn {
    pub async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = bounded(DEFAULT_TIMEOUT, "connect", connect(addr)).await?;
        Ok(Self { stream, received: Vec::new() })
    }

    /// Writes `bytes` (fails if the peer reset the connection).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        bounded(DEFAULT_TIMEOUT, "write", async {
            self.stream.write_all(bytes).await?;
            Ok(self.stream.flush().await?)
        })
        .await
    }

    /// Reads until the peer closes, `idle` passes without data, or `max` passes.
    /// Returns whether the peer closed (EOF or reset).
    pub async fn read_until_idle(&mut self, idle: Duration, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match tokio::time::timeout(idle.min(left), self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.received.extend_from_slice(&buf[..n]),
                Err(_) => return false,
            }
        }
    }

    /// The responses received so far.
    pub fn responses(&self) -> Vec<RawResponse> {
        parse_responses(&self.received)
    }
}

/// Sends `bytes` on a fresh connection and reads until the server closes or
/// stays idle for `idle`: the responses and whether the server closed.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], idle: Duration) -> Result<(Vec<RawResponse>, bool)> {
    let mut conn = RawConn::open(addr).await?;
    conn.write(bytes).await?;
    let closed = conn.read_until_idle(idle, DEFAULT_TIMEOUT).await;
    Ok((conn.responses(), closed))
}

/// A response parsed from raw bytes.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body ended before its declared length.
    pub truncated: bool,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Splits HTTP/1.x responses (Content-Length, chunked or close-delimited bodies).
pub fn parse_responses(mut data: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.split_whitespace();
        if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
            break;
        }
        let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else { break };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        data = &data[end + 4..];
        let mut resp = RawResponse { status, headers, body: Vec::new(), truncated: false };
        let chunked = resp.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = resp.header("content-length").and_then(|v| v.parse::<usize>().ok());
        if (100..200).contains(&status) || status == 204 || status == 304 {
        } else if chunked {
            loop {
                let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
                    resp.truncated = true;
                    data = &[];
                    break;
                };
                let size_text = String::from_utf8_lossy(&data[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
                if data.len() < line_end + 2 + size + 2 {
                    resp.body.extend_from_slice(&data[(line_end + 2).min(data.len())..]);
                    resp.truncated = true;
                    data = &[];
                    break;
                }
                resp.body.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
                data = &data[line_end + 2 + size + 2..];
                if size == 0 {
                    break;
                }
            }
        } else if let Some(len) = length {
            let n = len.min(data.len());
            resp.body = data[..n].to_vec();
            resp.truncated = n < len;
            data = &data[n..];
        } else {
            resp.body = data.to_vec();
            data = &[];
        }
        out.push(resp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pipelined_raw_responses() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nxy";
        let r = parse_responses(raw);
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].status, r[0].body.as_slice()), (200, &b"abc"[..]));
        assert_eq!((r[1].status, r[1].body.as_slice(), r[1].truncated), (404, &b"hi"[..], false));
        assert!(r[2].truncated);
    }
}
