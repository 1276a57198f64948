//! `lb-echo`: the stand-in for the users' echo pods.
//!
//! HTTP/1.1 (keep-alive) on every `--http` address: each request gets `200`,
//! header `x-pod-name: POD`, and a body `Request served by POD` followed by
//! the request line and headers. UDP on every `--udp` address: each datagram
//! gets `POD <payload>` back. Logs go to stderr.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lb_testbed::echo::{POD_NAME_HEADER, REMOTE_ADDR_HEADER, format_http_body, udp_reply};
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{SignalKind, signal};

/// Largest request body read (and discarded).
const MAX_REQUEST_BODY: usize = 1 << 20;

#[derive(Parser, Debug)]
#[command(name = "lb-echo", about = "Echo pod: answers HTTP and UDP with its pod name")]
struct Args {
    /// Pod name to answer with (default: env POD_NAME, else the hostname).
    #[arg(long, env = "POD_NAME")]
    name: Option<String>,
    /// HTTP listen address (repeatable; default 0.0.0.0:80).
    #[arg(long = "http", value_name = "ADDR")]
    http: Vec<SocketAddr>,
    /// UDP listen address (repeatable; default 0.0.0.0:5353).
    #[arg(long = "udp", value_name = "ADDR")]
    udp: Vec<SocketAddr>,
    /// Log every request.
    #[arg(short, long)]
    verbose: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("lb-echo: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(mut args: Args) -> Result<()> {
    let pod: Arc<str> = match args.name.take() {
        Some(n) => n.into(),
        None => hostname().into(),
    };
    if args.http.is_empty() {
        args.http.push("0.0.0.0:80".parse()?);
    }
    if args.udp.is_empty() {
        args.udp.push("0.0.0.0:5353".parse()?);
    }
    for addr in &args.http {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding HTTP {addr}"))?;
        eprintln!("lb-echo {pod}: HTTP on {addr}");
        tokio::spawn(serve_http(listener, pod.clone(), args.verbose));
    }
    for addr in &args.udp {
        let socket = UdpSocket::bind(addr).await.with_context(|| format!("binding UDP {addr}"))?;
        eprintln!("lb-echo {pod}: UDP on {addr}");
        tokio::spawn(serve_udp(socket, pod.clone(), args.verbose));
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("lb-echo {pod}: shutting down");
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

async fn serve_http(listener: TcpListener, pod: Arc<str>, verbose: bool) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("lb-echo {pod}: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let pod = pod.clone();
        tokio::spawn(async move {
            let service = service_fn(|req| answer(req, pod.clone(), remote, verbose));
            if let Err(e) = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await
                && verbose
            {
                eprintln!("lb-echo {pod}: connection from {remote}: {e}");
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    pod: Arc<str>,
    remote: SocketAddr,
    verbose: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // Read (and drop) any request body so the connection can be reused.
    let _ = Limited::new(body, MAX_REQUEST_BODY).collect().await;
    let request_line = format!("{} {} {:?}", parts.method, parts.uri, parts.version);
    if verbose {
        eprintln!("lb-echo {pod}: {remote} {request_line}");
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let text = format_http_body(&pod, &request_line, &headers);
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(POD_NAME_HEADER, pod.as_ref())
        .header(REMOTE_ADDR_HEADER, remote.to_string())
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"bad pod name\n"))));
    Ok(response)
}

async fn serve_udp(socket: UdpSocket, pod: Arc<str>, verbose: bool) {
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if verbose {
                    eprintln!("lb-echo {pod}: UDP {n} bytes from {from}");
                }
                if let Err(e) = socket.send_to(&udp_reply(&pod, &buf[..n]), from).await {
                    eprintln!("lb-echo {pod}: UDP reply to {from}: {e}");
                }
            }
            Err(e) => {
                eprintln!("lb-echo {pod}: UDP receive: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
