//! Shutdown and handover: the listeners are shared (`SO_REUSEPORT`), listen
//! once routed when asked to, close at once on shutdown, and a draining
//! connection is closed after its next answer rather than under a request
//! the client is sending.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lb_proxy::{Proxy, ProxyConfig};
use lb_routes::{RouteTable, UpstreamProtocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const REQUEST: &[u8] = b"GET /x HTTP/1.1\r\nHost: a.com\r\n\r\n";

/// Reads one response (head and `Content-Length` body) from `stream`;
/// returns the head, lower-cased.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return head;
            }
        }
        let n = within(stream.read(&mut buf)).await.expect("reading a response");
        assert!(n > 0, "connection closed before a whole response: {:?}", String::from_utf8_lossy(&data));
        data.extend_from_slice(&buf[..n]);
    }
}

/// Whether the server closed `stream` (EOF or reset), waiting at most `STEP`.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(STEP, stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

/// A proxy whose shutdown the test triggers; `run` keeps going meanwhile.
async fn start_proxy(config: ProxyConfig, table: RouteTable) -> (Proxy, oneshot::Sender<()>, oneshot::Receiver<()>) {
    let (stop, stopped) = oneshot::channel();
    (Proxy::bind(config, table).await.unwrap(), stop, stopped)
}

#[tokio::test]
async fn a_kept_alive_connection_gets_its_next_answer_with_connection_close() {
    let echo = echo_backend("pod").await;
    let table = single(Some("a.com"), backend("web", vec![echo], UpstreamProtocol::Http1));
    let config = ProxyConfig { drain_idle: Duration::from_secs(5), shutdown_grace: Duration::from_secs(8), ..config() };
    let (proxy, stop, stopped) = start_proxy(config, table).await;
    let addr = proxy.http_addr();
    let run = tokio::spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    let mut client = within(TcpStream::connect(addr)).await.unwrap();
    client.write_all(REQUEST).await.unwrap();
    let head = read_response(&mut client).await;
    assert!(head.starts_with("http/1.1 200") && !head.contains("connection: close"), "{head}");

    // Drain while the connection is idle: the listener closes at once...
    stop.send(()).unwrap();
    let refused = async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    within(refused).await;
    // ...and the idle connection's next request is answered, then it closes.
    client.write_all(REQUEST).await.unwrap();
    let head = read_response(&mut client).await;
    assert!(head.starts_with("http/1.1 200") && head.contains("connection: close"), "{head}");
    assert!(closed(&mut client).await, "closed after the answer");
    within(run).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_drain_idle() {
    let echo = echo_backend("pod").await;
    let table = single(Some("a.com"), backend("web", vec![echo], UpstreamProtocol::Http1));
    let drain_idle = Duration::from_millis(300);
    let config = ProxyConfig { drain_idle, shutdown_grace: Duration::from_secs(8), ..config() };
    let (proxy, stop, stopped) = start_proxy(config, table).await;
    let addr = proxy.http_addr();
    let run = tokio::spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    // One connection that was served, one that never sent anything.
    let mut served = within(TcpStream::connect(addr)).await.unwrap();
    served.write_all(REQUEST).await.unwrap();
    read_response(&mut served).await;
    let mut silent = within(TcpStream::connect(addr)).await.unwrap();
    let start = Instant::now();
    stop.send(()).unwrap();
    assert!(closed(&mut served).await && closed(&mut silent).await);
    assert!(start.elapsed() >= drain_idle, "closed after {:?}, before drain_idle", start.elapsed());
    within(run).await.unwrap().unwrap();
}

#[tokio::test]
async fn listens_once_routed_and_shares_its_ports() {
    let echo = echo_backend("pod").await;
    let config = ProxyConfig { listen_when_routed: true, ..config() };
    let (proxy, stop, stopped) = start_proxy(config.clone(), RouteTable::empty()).await;
    let addr = proxy.http_addr();
    let routes = proxy.routes();
    let run = tokio::spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    // Bound, not listening: refused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "no connection before the first table");
    let listening = routes.clone();
    let waiter = tokio::spawn(async move { listening.listening().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "not listening before the first table");
    routes.update(single(Some("a.com"), backend("web", vec![echo], UpstreamProtocol::Http1)));
    within(waiter).await.unwrap();
    // Listening means accepted at once: no retry.
    let mut client = TcpStream::connect(addr).await.expect("listening once `listening` completes");
    client.write_all(REQUEST).await.unwrap();
    let answer = within(read_response(&mut client)).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");

    // A second proxy binds the same HTTP port beside it.
    let beside = ProxyConfig { http_addr: addr, ..config };
    let second = Proxy::bind(beside, RouteTable::empty()).await;
    assert!(second.is_ok(), "{:?}", second.err());
    stop.send(()).unwrap();
    within(run).await.unwrap().unwrap();
}
