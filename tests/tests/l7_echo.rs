//! The echo pod (`lb-echo`) and the L7 harness on their own, without lb:
//! JSON echo, HTTP/1.1 and h2c on one listener, WebSocket, the test
//! behaviours on `/__echo/*`, several listeners in one process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lb_testbed::echo::{CLOSE_MID_RESPONSE_SENT, parse_udp_reply};
use lb_testbed::l7::{
    ECHO_PORT, Req, parse_responses, raw_exchange, send_h1, send_h2c, start_echo, unique_loopback_ip, ws_connect,
    ws_roundtrip,
};

fn log_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[tokio::test]
async fn echo_answers_json_over_http1_and_h2c() {
    let logs = log_dir();
    let pod = start_echo(logs.path(), "pod-json", unique_loopback_ip(), ECHO_PORT).expect("echo");
    let req = Req::post("/a/b?x=1&y=2", "hello body").host("a.com").header("X-Custom", "v1").header("x-custom", "v2");
    let resp = send_h1(pod.addr(), &req).await.expect("HTTP/1.1 request");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.pod().as_deref(), Some("pod-json"));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let echo = resp.echo().expect("JSON body");
    assert_eq!(echo.pod, "pod-json");
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.path, "/a/b?x=1&y=2");
    assert_eq!(echo.version, "HTTP/1.1");
    assert_eq!(echo.body, "hello body");
    assert_eq!(echo.header("host"), Some("a.com"));
    assert_eq!(echo.header_all("x-custom"), vec!["v1", "v2"]);
    assert_eq!(echo.headers[0].0, "host", "headers in received order: {:?}", echo.headers);
    assert_eq!(echo.request_line, "POST /a/b?x=1&y=2 HTTP/1.1");
    assert!(echo.remote_addr.parse::<SocketAddr>().is_ok(), "{}", echo.remote_addr);
    assert_eq!(lb_testbed::echo::pod_from_body(&resp.text()), Some("pod-json"));

    let resp = send_h2c(pod.addr(), &Req::get("/h2?q").host("b.com")).await.expect("h2c request");
    assert_eq!(resp.version, "HTTP/2.0");
    let echo = resp.echo().unwrap();
    assert_eq!((echo.version.as_str(), echo.path.as_str()), ("HTTP/2.0", "/h2?q"));
    assert_eq!(echo.host(), Some("b.com"));
    assert!(pod.saw("/h2?q"), "{:?}", pod.request_log());
}

#[tokio::test]
async fn echo_special_paths() {
    let logs = log_dir();
    let pod = start_echo(logs.path(), "pod-special", unique_loopback_ip(), ECHO_PORT).expect("echo");

    let resp = send_h1(pod.addr(), &Req::get("/__echo/status?code=418")).await.unwrap();
    assert_eq!(resp.status, 418);
    assert_eq!(resp.echo().unwrap().pod, "pod-special");
    assert_eq!(send_h1(pod.addr(), &Req::get("/__echo/status?code=204")).await.unwrap().status, 204);

    let start = Instant::now();
    let resp = send_h1(pod.addr(), &Req::get("/__echo/slow?ms=300")).await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());

    // Head with Content-Length 1000, 10 bytes, then the connection closes.
    let raw = b"GET /__echo/close-mid-response HTTP/1.1\r\nHost: x\r\n\r\n";
    let (responses, closed) = raw_exchange(pod.addr(), raw, Duration::from_secs(2)).await.unwrap();
    assert!(closed, "the echo closes the connection");
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].header("content-length"), Some("1000"));
    assert_eq!(responses[0].body.len(), CLOSE_MID_RESPONSE_SENT);
    assert!(responses[0].truncated);
    let err = send_h1(pod.addr(), &Req::get("/__echo/close-mid-response")).await;
    assert!(err.is_err(), "the client sees an incomplete body: {err:?}");
    // Keep-alive: two pipelined requests on one connection, two answers.
    let raw = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (responses, _) = raw_exchange(pod.addr(), raw, Duration::from_secs(2)).await.unwrap();
    assert_eq!(responses.iter().map(|r| r.status).collect::<Vec<_>>(), vec![200, 200]);
    assert!(parse_responses(b"garbage").is_empty());
}

#[tokio::test]
async fn echo_websocket_echoes_with_pod_name() {
    let logs = log_dir();
    let pod = start_echo(logs.path(), "pod-ws", unique_loopback_ip(), ECHO_PORT).expect("echo");
    let (mut ws, headers) = ws_connect(pod.addr(), "a.com", "/chat").await.expect("WebSocket handshake");
    assert!(headers.iter().any(|(n, v)| n == "x-pod-name" && v == "pod-ws"), "{headers:?}");
    assert_eq!(ws_roundtrip(&mut ws, "hello").await.unwrap(), "pod-ws hello");
    assert_eq!(ws_roundtrip(&mut ws, "again").await.unwrap(), "pod-ws again");
}

#[test]
fn echo_udp_and_several_http_listeners_in_one_process() {
    let logs = log_dir();
    let (ip1, ip2) = (unique_loopback_ip(), unique_loopback_ip());
    let bin = lb_testbed::lb_echo_bin().unwrap();
    let a1 = SocketAddr::from((ip1, ECHO_PORT));
    let a2 = SocketAddr::from((ip2, ECHO_PORT));
    let args = ["--name", "multi", "--http", &a1.to_string(), "--http", &a2.to_string(), "--udp", &a1.to_string()];
    let p = lb_testbed::Process::spawn(logs.path(), "multi", &bin, &args, Duration::ZERO).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for addr in [a1, a2] {
        let resp = rt
            .block_on(async {
                lb_testbed::l7::wait_until("echo listening", Duration::from_secs(10), || async {
                    send_h1(addr, &Req::get("/")).await.ok()
                })
                .await
            })
            .unwrap_or_else(|e| panic!("{e:#}\n{}", p.logs(2000)));
        assert_eq!(resp.pod().as_deref(), Some("multi"));
    }
    let sock = std::net::UdpSocket::bind((ip1, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(b"ping", a1).unwrap();
    let mut buf = [0u8; 100];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(parse_udp_reply(&buf[..n]), Some(("multi".to_string(), b"ping".to_vec())));
}
