//! The HTTP/1.1 upstream pool, seen from a backend that counts its
//! connections: keep-alive reuse, connections the backend closed, parallel
//! requests, and responses a client abandoned.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use http::StatusCode;
use lb_routes::UpstreamProtocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the raw backend answers.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Close each connection after its first answer, without saying so.
    close_after_answer: bool,
    /// Wait this long before answering.
    delay: Duration,
}

const KEEP: Behaviour = Behaviour { close_after_answer: false, delay: Duration::ZERO };

/// A backend that answers `conn=N` (N: which connection, from 1) to every
/// request head; `/big` gets the head of a 1 MB body and its first 1000
/// bytes, the rest a second later.
async fn backend(behaviour: Behaviour) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let conn = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(answer_all(socket, conn, behaviour));
        }
    });
    (addr, accepted)
}

async fn answer_all(mut socket: TcpStream, conn: usize, behaviour: Behaviour) {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head: Vec<u8> = seen.drain(..end + 4).collect();
        tokio::time::sleep(behaviour.delay).await;
        let written = if head.starts_with(b"GET /big ") {
            let start = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", 1_000_000);
            let mut ok =
                socket.write_all(start.as_bytes()).await.is_ok() && socket.write_all(&[b'x'; 1000]).await.is_ok();
            tokio::time::sleep(Duration::from_secs(1)).await;
            ok = ok && socket.write_all(&vec![b'y'; 999_000]).await.is_ok();
            ok
        } else {
            let body = format!("conn={conn}");
            let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            socket.write_all(answer.as_bytes()).await.is_ok()
        };
        if !written || behaviour.close_after_answer {
            return;
        }
    }
}

#[tokio::test]
async fn requests_one_after_the_other_share_one_upstream_connection() {
    let (addr, accepted) = backend(KEEP).await;
    let proxy = start(single(None, common::backend("a", vec![addr], UpstreamProtocol::Http1))).await;
    for _ in 0..5 {
        // Each on a new client connection: the upstream one is the pool's.
        let answer = get(proxy.http, "a", "/").await;
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "conn=1"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_costs_no_request() {
    let (addr, accepted) = backend(Behaviour { close_after_answer: true, ..KEEP }).await;
    let proxy = start(single(None, common::backend("a", vec![addr], UpstreamProtocol::Http1))).await;
    for n in 1..=4 {
        let answer = get(proxy.http, "a", "/").await;
        assert_eq!((answer.status, answer.body), (StatusCode::OK, format!("conn={n}")));
        // The close reaches the proxy while the connection is idle.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    proxy.shutdown().await;
}

#[tokio::test]
async fn parallel_requests_open_their_own_connections_and_the_pool_keeps_them() {
    let (addr, accepted) = backend(Behaviour { delay: Duration::from_millis(300), ..KEEP }).await;
    let proxy = start(single(None, common::backend("a", vec![addr], UpstreamProtocol::Http1))).await;
    let (a, b, c) = tokio::join!(get(proxy.http, "a", "/"), get(proxy.http, "a", "/"), get(proxy.http, "a", "/"));
    let mut served: Vec<String> = [a, b, c].into_iter().map(|answer| answer.body).collect();
    served.sort();
    assert_eq!(served, ["conn=1", "conn=2", "conn=3"]);
    for _ in 0..3 {
        assert_eq!(get(proxy.http, "a", "/").await.status, StatusCode::OK);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "the later requests reuse the three");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_response_the_client_abandons_takes_its_upstream_connection_along() {
    let (addr, accepted) = backend(KEEP).await;
    let proxy = start(single(None, common::backend("a", vec![addr], UpstreamProtocol::Http1))).await;
    // The client reads the head and the first bytes, then goes away.
    let partial = raw(proxy.http, b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n", Duration::from_millis(300)).await;
    assert!(partial.starts_with("HTTP/1.1 200 OK"), "{partial}");
    // The next request must not get the rest of that body.
    let answer = get(proxy.http, "a", "/").await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "conn=2"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    proxy.shutdown().await;
}
