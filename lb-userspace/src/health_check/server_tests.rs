use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A port nobody listens on (the kernel's choice, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind((LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

fn sorted<const N: usize>(mut ports: [u16; N]) -> Vec<u16> {
    ports.sort_unstable();
    ports.to_vec()
}

fn check(namespace: &str, name: &str, local_endpoints: usize) -> HealthCheck {
    HealthCheck { namespace: namespace.into(), name: name.into(), local_endpoints }
}

/// A keep-alive HTTP/1.1 connection to `port`.
async fn connect(port: u16) -> std::io::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(SocketAddr::new(LOCALHOST, port)).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    Ok(sender)
}

struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Value,
}

async fn get(sender: &mut SendRequest<Empty<Bytes>>, path: &str) -> Answer {
    let request = Request::get(path).header("host", "node").body(Empty::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer { status: parts.status, headers: parts.headers, body: serde_json::from_slice(&body).unwrap() }
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[tokio::test]
async fn answers_probes_and_follows_updates() {
    let (with_endpoints, without) = (free_port(), free_port());
    let mut server = HealthCheckServer::new(LOCALHOST);
    let checks = BTreeMap::from([(with_endpoints, check("shop", "web", 2)), (without, check("shop", "api", 0))]);
    assert_eq!(server.update(checks).await, []);

    let mut web = connect(with_endpoints).await.unwrap();
    let answer = get(&mut web, "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(header(&answer, "content-type"), "application/json");
    assert_eq!(header(&answer, "x-content-type-options"), "nosniff");
    assert_eq!(header(&answer, "x-load-balancing-endpoint-weight"), "2");
    let expected =
        json!({"service": {"namespace": "shop", "name": "web"}, "localEndpoints": 2, "serviceProxyHealthy": true});
    assert_eq!(answer.body, expected);

    // Any path: cloud load balancers probe `/healthz` or `/`.
    let answer = get(&mut connect(without).await.unwrap(), "/healthz").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&answer, "content-type"), "application/json");
    assert_eq!(header(&answer, "x-load-balancing-endpoint-weight"), "0");
    let expected =
        json!({"service": {"namespace": "shop", "name": "api"}, "localEndpoints": 0, "serviceProxyHealthy": true});
    assert_eq!(answer.body, expected);

    // The count drops to 0: the same connection (so the same listener)
    // now answers 503.
    let checks = BTreeMap::from([(with_endpoints, check("shop", "web", 0)), (without, check("shop", "api", 0))]);
    assert_eq!(server.update(checks).await, []);
    let answer = get(&mut web, "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body["localEndpoints"], 0);
    assert_eq!(server.ports(), sorted([with_endpoints, without]));

    // A check removed: its port is closed; the other one still answers.
    let checks = BTreeMap::from([(with_endpoints, check("shop", "web", 1))]);
    assert_eq!(server.update(checks).await, []);
    let refused = connect(without).await.err().map(|e| e.kind());
    assert_eq!(refused, Some(ErrorKind::ConnectionRefused));
    assert_eq!(get(&mut web, "/").await.status, StatusCode::OK);
    assert_eq!(server.ports(), [with_endpoints]);

    // Dropping the server closes everything (once its tasks are cancelled;
    // a connection racing with the closing may be reset instead).
    drop(server);
    let mut refused = None;
    for _ in 0..100 {
        refused = connect(with_endpoints).await.err().map(|e| e.kind());
        if refused == Some(ErrorKind::ConnectionRefused) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(refused, Some(ErrorKind::ConnectionRefused));
}

#[tokio::test]
async fn a_taken_port_is_reported_and_retried_at_the_next_update() {
    // A listener without SO_REUSEPORT holds the port (as kube-proxy would).
    let taken = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let free = free_port();
    let checks = BTreeMap::from([(taken_port, check("shop", "web", 1)), (free, check("shop", "api", 1))]);

    let mut server = HealthCheckServer::new(LOCALHOST);
    let diagnostics = server.update(checks.clone()).await;
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].object, "Service shop/web");
    assert_eq!(diagnostics[0].field, "spec.healthCheckNodePort");
    assert_eq!(server.ports(), [free]);
    assert_eq!(get(&mut connect(free).await.unwrap(), "/").await.status, StatusCode::OK);

    drop(taken);
    assert_eq!(server.update(checks).await, []);
    assert_eq!(server.ports(), sorted([taken_port, free]));
    assert_eq!(get(&mut connect(taken_port).await.unwrap(), "/").await.status, StatusCode::OK);
}
