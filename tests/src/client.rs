//! Clients that run inside a namespace: one-shot HTTP, a keep-alive HTTP
//! connection, and UDP request/response. Every call has a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::echo;
use crate::netns::in_netns;

/// Largest response head or body we accept.
const MAX_RESPONSE: usize = 1 << 20;

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The echo pod that answered (`x-pod-name`, else the body's first line).
    pub fn pod_name(&self) -> Option<String> {
        self.header(echo::POD_NAME_HEADER)
            .map(str::to_string)
            .or_else(|| echo::pod_from_body(&self.body).map(str::to_string))
    }
}

/// `GET /` to `addr` from namespace `ns`, `Connection: close`. Returns the
/// answering pod's name and the body; fails on a non-200 status.
pub fn http_get(ns: &str, addr: SocketAddr, timeout: Duration) -> Result<(String, String)> {
    let resp = http_request(ns, addr, "/", &[], timeout)?;
    if resp.status != 200 {
        bail!("GET http://{addr}/ from {ns}: status {}: {}", resp.status, resp.body);
    }
    let pod = resp.pod_name().ok_or_else(|| anyhow!("GET http://{addr}/ from {ns}: answer names no pod: {resp:?}"))?;
    Ok((pod, resp.body))
}

/// One request (`GET path`, extra headers; `Host` is `addr` unless a `Host`
/// header is given) on a fresh connection made in `ns`.
pub fn http_request(
    ns: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<HttpResponse> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect_in(ns, addr, timeout)?;
    let mut req = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut buf = Vec::new();
    exchange(&mut stream, req.as_bytes(), &mut buf, deadline)
        .with_context(|| format!("GET http://{addr}{path} from {ns}"))
}

fn connect_in(ns: &str, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let stream = in_netns(ns, || TcpStream::connect_timeout(&addr, timeout))?
        .with_context(|| format!("connecting to {addr} from {ns}"))?;
    stream.set_nodelay(true).ok();
    Ok(stream)
}

/// Writes `request` and reads one response, `buf` holding bytes read beyond
/// the previous response on the same connection.
fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>, deadline: Instant) -> Result<HttpResponse> {
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    stream.write_all(request).context("sending request")?;
    let head_end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos;
        }
        read_more(stream, buf, deadline)?
            .then_some(())
            .ok_or_else(|| anyhow!("connection closed before a full response head ({} bytes)", buf.len()))?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let (status, headers) = parse_head(&head)?;
    buf.drain(..head_end + 4);
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if let Some(len) = header("content-length") {
        let len: usize = len.trim().parse().context("bad content-length")?;
        if len > MAX_RESPONSE {
            bail!("body of {len} bytes is too large");
        }
        while buf.len() < len {
            if !read_more(stream, buf, deadline)? {
                bail!("connection closed after {} of {len} body bytes", buf.len());
            }
        }
        buf.drain(..len).collect::<Vec<u8>>()
    } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        read_chunked(stream, buf, deadline)?
    } else {
        while read_more(stream, buf, deadline)? {}
        std::mem::take(buf)
    };
    Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = find(buf, b"\r\n") {
                break p;
            }
            if !read_more(stream, buf, deadline)? {
                bail!("connection closed inside a chunked body");
            }
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        if body.len() + size > MAX_RESPONSE {
            bail!("chunked body too large");
        }
        while buf.len() < line_end + 2 + size + 2 {
            if !read_more(stream, buf, deadline)? {
                bail!("connection closed inside a chunk");
            }
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return Ok(body);
        }
    }
}

fn parse_head(head: &str) -> Result<(u16, Vec<(String, String)>)> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 response: {status_line:?}");
    }
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

/// Reads what is available; `false` on EOF. Fails past the deadline.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Result<bool> {
    if buf.len() > MAX_RESPONSE {
        bail!("response larger than {MAX_RESPONSE} bytes");
    }
    stream.set_read_timeout(Some(remaining(deadline)?))?;
    let mut chunk = [0u8; 8192];
    let n = match stream.read(&mut chunk) {
        Ok(n) => n,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            bail!("timed out waiting for the response ({} bytes so far)", buf.len())
        }
        Err(e) => return Err(e).context("reading response"),
    };
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

fn remaining(deadline: Instant) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("timed out");
    }
    Ok(left)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A keep-alive HTTP connection opened from a namespace, to send requests on
/// later (e.g. to check that an open connection survives a config change).
pub struct KeepAliveConn {
    stream: TcpStream,
    buf: Vec<u8>,
    peer: SocketAddr,
    timeout: Duration,
}

impl KeepAliveConn {
    /// Connects from `ns` to `addr`; `timeout` applies to the connect and to each request.
    pub fn open(ns: &str, addr: SocketAddr, timeout: Duration) -> Result<Self> {
        Ok(Self { stream: connect_in(ns, addr, timeout)?, buf: Vec::new(), peer: addr, timeout })
    }

    /// Our side of the connection.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.stream.local_addr()?)
    }

    /// The address we connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Sends `GET path` on this connection and reads the answer.
    pub fn get(&mut self, path: &str) -> Result<HttpResponse> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n", self.peer);
        let deadline = Instant::now() + self.timeout;
        exchange(&mut self.stream, req.as_bytes(), &mut self.buf, deadline)
            .with_context(|| format!("GET http://{}{path} on a kept-alive connection", self.peer))
    }

    /// Like [`get`](Self::get) for `/`, returning the answering pod's name.
    pub fn get_pod(&mut self) -> Result<String> {
        let resp = self.get("/")?;
        resp.pod_name().ok_or_else(|| anyhow!("answer names no pod: {resp:?}"))
    }
}

/// Sends `payload` over UDP from `ns` to `addr` (a connected socket: only
/// answers from `addr` count) and returns the answer. Up to 3 sends within
/// `timeout`.
pub fn udp_request(ns: &str, addr: SocketAddr, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    const ATTEMPTS: u32 = 3;
    let socket = in_netns(ns, || -> std::io::Result<UdpSocket> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.connect(addr)?;
        Ok(s)
    })?
    .with_context(|| format!("UDP socket to {addr} in {ns}"))?;
    let deadline = Instant::now() + timeout;
    let per_try = timeout / ATTEMPTS;
    let mut buf = vec![0u8; 65536];
    let mut last_err = None;
    for _ in 0..ATTEMPTS {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(per_try.min(left).max(Duration::from_millis(1))))?;
        if let Err(e) = socket.send(payload) {
            last_err = Some(e);
            std::thread::sleep(Duration::from_millis(20).min(left));
            continue;
        }
        match socket.recv(&mut buf) {
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(e) => last_err = Some(e),
        }
    }
    Err(anyhow!(
        "no UDP answer from {addr} to {ns} within {timeout:?} ({ATTEMPTS} tries): {}",
        last_err.map_or("timed out".to_string(), |e| e.to_string())
    ))
}

/// [`udp_request`] to an echo pod: returns (pod name, echoed payload).
pub fn udp_echo(ns: &str, addr: SocketAddr, payload: &str, timeout: Duration) -> Result<(String, String)> {
    let reply = udp_request(ns, addr, payload.as_bytes(), timeout)?;
    let (pod, echoed) = echo::parse_udp_reply(&reply)
        .ok_or_else(|| anyhow!("malformed UDP echo {:?}", String::from_utf8_lossy(&reply)))?;
    Ok((pod, String::from_utf8_lossy(&echoed).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_head() {
        let (status, headers) = parse_head("HTTP/1.1 200 OK\r\nX-Pod-Name: p1\r\ncontent-length: 3").unwrap();
        assert_eq!(status, 200);
        assert_eq!(headers[0], ("x-pod-name".to_string(), "p1".to_string()));
        assert!(parse_head("SSH-2.0").is_err());
    }
}
