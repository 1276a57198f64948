//! Upgraded connections are spliced and survive route table swaps.

mod common;

use std::net::SocketAddr;

use common::*;
use lb_routes::{RouteTable, UpstreamProtocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers any request head with `101` and then echoes bytes; the head it
/// saw is sent first, after the `101`, as one line `HEAD:<len>`.
async fn upgrade_echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                let ok = head.contains("\r\nupgrade: echo\r\n") && head.contains("\r\nconnection: upgrade\r\n");
                let reply = if ok {
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nServer: b\r\n\r\n"
                } else {
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                };
                stream.write_all(reply.as_bytes()).await.unwrap();
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

async fn read_exact_string(stream: &mut TcpStream, len: usize) -> String {
    let mut buf = vec![0u8; len];
    within(stream.read_exact(&mut buf)).await.unwrap();
    String::from_utf8(buf).unwrap()
}

#[tokio::test]
async fn upgrade_splice_survives_route_swap() {
    let echo = upgrade_echo_backend().await;
    let proxy = start(single(Some("ws.com"), backend("ws", vec![echo], UpstreamProtocol::Http1))).await;
    let mut client = TcpStream::connect(proxy.http).await.unwrap();
    client
        .write_all(b"GET /chat HTTP/1.1\r\nHost: ws.com\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(within(client.read(&mut byte)).await.unwrap(), 1, "closed before the 101");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    assert!(head.contains("server: lb"), "{head}");

    client.write_all(b"ping").await.unwrap();
    assert_eq!(read_exact_string(&mut client, 4).await, "ping");

    proxy.routes.update(RouteTable::empty());
    assert_eq!(get(proxy.http, "ws.com", "/").await.status, http::StatusCode::NOT_FOUND);

    client.write_all(b"still here").await.unwrap();
    assert_eq!(read_exact_string(&mut client, 10).await, "still here");
    proxy.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_splices_after_grace() {
    let echo = upgrade_echo_backend().await;
    let config = lb_proxy::ProxyConfig { shutdown_grace: std::time::Duration::from_millis(300), ..config() };
    let proxy = start_with(config, single(None, backend("ws", vec![echo], UpstreamProtocol::Http1))).await;
    let mut client = TcpStream::connect(proxy.http).await.unwrap();
    client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = within(client.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    client.write_all(b"x").await.unwrap();
    assert_eq!(read_exact_string(&mut client, 1).await, "x");
    proxy.shutdown().await;
    // The splice is closed: reading ends.
    let n = within(client.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0);
}
