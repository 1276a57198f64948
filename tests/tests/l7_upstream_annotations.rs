//! The upstream annotations of ingress-nginx through `lb run --no-xdp`:
//! `backend-protocol` (HTTPS and GRPCS to a TLS echo, GRPC as h2c),
//! `upstream-vhost`, `proxy-body-size` (declared and chunked bodies, `0`,
//! the 1m default), `proxy-read-timeout`, `proxy-connect-timeout` (a
//! listener whose accept queue is full drops SYNs), `proxy-next-upstream`
//! (+ `-tries`) with one failing pod among two, and malformed values
//! rejecting only their Ingress.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use lb_testbed::l7::annotations::{
    ExpectedWarning, NginxAnnotations, bed_with_pods, expect_routes, lb_output, tail_of, wait_warnings,
};
use lb_testbed::l7::upstream::{
    ECHO_SNI_HEADER, ECHO_TLS_HEADER, SERVICE_HTTPS_PORT, failing_echo, tls_echo, tls_service,
};
use lb_testbed::l7::{
    ECHO_PORT, EndpointSlice, Ingress, L7Bed, LbOptions, RELOAD_TIMEOUT, RawConn, Req, Resp, Rule, SERVICE_PORT,
    Service, docs, send_h2c, unique_loopback_ip, ws_connect, ws_roundtrip,
};

const P: u16 = SERVICE_PORT;

fn ing(name: &str, host: &str, service: &str, port: u16, annotations: &[(&str, &str)]) -> Ingress {
    let mut ingress = Ingress::new(name).class("lb").rule(Rule::host(host).prefix("/", service, port));
    for (k, v) in annotations {
        ingress = ingress.nginx(k, v);
    }
    ingress
}

async fn send(bed: &L7Bed, req: Req) -> Resp {
    bed.ok(bed.send(&req).await)
}

#[tokio::test]
async fn backend_protocols_reach_tls_and_http2_backends() {
    let mut bed = L7Bed::new().expect("bed");
    let pod = tls_echo(&mut bed, "tls").expect("echo");
    tls_service(&bed, "tls", &[&pod]).unwrap();
    let tls = SERVICE_HTTPS_PORT;
    let ingresses = [
        ing("https", "https.test", "tls", tls, &[("backend-protocol", "HTTPS")]),
        ing("grpcs", "grpcs.test", "tls", tls, &[("backend-protocol", "GRPCS")]),
        ing("grpc", "grpc.test", "tls", P, &[("backend-protocol", "grpc")]),
        ing("http", "http.test", "tls", P, &[("backend-protocol", "HTTP")]),
        ing("plain", "plain.test", "tls", P, &[]),
        // The wrong way round: TLS to the plain port, plain HTTP to the
        // TLS port (same endpoint addresses as above: pools must not mix).
        ing("https-to-plain", "https-to-plain.test", "tls", P, &[("backend-protocol", "HTTPS")]),
        ing("plain-to-tls", "plain-to-tls.test", "tls", tls, &[]),
    ];
    bed.write("ingresses.yaml", &docs(&ingresses.iter().map(Ingress::yaml).collect::<Vec<_>>())).unwrap();
    bed.start_lb().await.expect("lb starts");

    let mut wrong = Vec::new();
    // Twice each, interleaved: pooled connections are reused by the right
    // routes only.
    for round in 0..2 {
        for (host, tls, version) in [
            ("https.test", true, "HTTP/1.1"),
            ("grpcs.test", true, "HTTP/2.0"),
            ("grpc.test", false, "HTTP/2.0"),
            ("http.test", false, "HTTP/1.1"),
            ("plain.test", false, "HTTP/1.1"),
        ] {
            let resp = send(&bed, Req::post("/p?x=1", "payload").host(host)).await;
            let echo = resp.echo();
            let got = (
                resp.status,
                resp.header(ECHO_TLS_HEADER).is_some(),
                echo.as_ref().map(|e| e.version.clone()).unwrap_or_default(),
            );
            if got != (200, tls, version.to_string()) {
                wrong.push(format!("round {round} {host}: want 200, tls {tls}, {version}; got {got:?}: {resp}"));
                continue;
            }
            let echo = echo.unwrap();
            if echo.body != "payload" || echo.path != "/p?x=1" || echo.host() != Some(host) {
                wrong.push(format!("{host}: body, path or host changed: {echo:?}"));
            }
            // ingress-nginx's defaults: no SNI to upstreams.
            if tls && resp.header(ECHO_SNI_HEADER) != Some("-") {
                wrong.push(format!("{host}: SNI sent upstream: {:?}", resp.header(ECHO_SNI_HEADER)));
            }
        }
        for host in ["https-to-plain.test", "plain-to-tls.test"] {
            let resp = send(&bed, Req::get("/").host(host)).await;
            if resp.status != 502 {
                wrong.push(format!("{host}: want 502 (protocol mismatch), got {resp}"));
            }
        }
    }
    // The client's HTTP/2 over h2c to an HTTPS (HTTP/1.1) upstream.
    let resp = bed.ok(send_h2c(bed.http_addr(), &Req::get("/h2").host("https.test")).await);
    assert_eq!((resp.status, resp.header(ECHO_TLS_HEADER)), (200, Some("1")), "{resp}");
    assert_eq!(resp.echo().unwrap().version, "HTTP/1.1");
    // WebSocket over an HTTPS upstream.
    match ws_connect(bed.http_addr(), "https.test", "/ws").await {
        Ok((mut ws, headers)) => {
            let tls_header = headers.iter().any(|(n, v)| n == ECHO_TLS_HEADER && v == "1");
            if !tls_header {
                wrong.push(format!("WebSocket over HTTPS: no {ECHO_TLS_HEADER} in {headers:?}"));
            }
            match ws_roundtrip(&mut ws, "hello").await {
                Ok(reply) if reply == "tls hello" => {}
                other => wrong.push(format!("WebSocket over HTTPS: want \"tls hello\", got {other:?}")),
            }
        }
        Err(e) => wrong.push(format!("WebSocket over HTTPS: {e:#}")),
    }
    if !wrong.is_empty() {
        bed.fail(wrong.join("\n"));
    }
}

#[tokio::test]
async fn upstream_vhost_sets_the_host_sent_upstream() {
    let (mut bed, pods) = bed_with_pods(&["web"]).expect("bed");
    let h2c = Service::new("web-h2c").port("http", P, ECHO_PORT).app_protocol("kubernetes.io/h2c");
    let slice = EndpointSlice::named("web-h2c-1", "web-h2c").port("http", ECHO_PORT).endpoint(pods[0].ip(), true);
    bed.write("svc-h2c.yaml", &docs(&[h2c.yaml(), slice.yaml()])).unwrap();
    let ingresses = [
        ing("vhost", "vhost.test", "web", P, &[("upstream-vhost", "internal.example:8080")]),
        ing("vhost-h2", "vhost-h2.test", "web-h2c", P, &[("upstream-vhost", "grpc.internal")]),
        ing("no-vhost", "no-vhost.test", "web", P, &[]),
    ];
    bed.write("ingresses.yaml", &docs(&ingresses.iter().map(Ingress::yaml).collect::<Vec<_>>())).unwrap();
    bed.start_lb().await.expect("lb starts");
    let mut wrong = Vec::new();
    let h1 = send(&bed, Req::get("/a").host("vhost.test")).await;
    let h2_client = bed.ok(send_h2c(bed.http_addr(), &Req::get("/a").host("vhost.test")).await);
    let h2_upstream = send(&bed, Req::get("/a").host("vhost-h2.test")).await;
    let none = send(&bed, Req::get("/a").host("no-vhost.test")).await;
    for (what, resp, host, forwarded_host) in [
        ("HTTP/1.1", &h1, "internal.example:8080", "vhost.test"),
        ("HTTP/2 client", &h2_client, "internal.example:8080", "vhost.test"),
        ("HTTP/2 upstream (:authority)", &h2_upstream, "grpc.internal", "vhost-h2.test"),
        ("no annotation", &none, "no-vhost.test", "no-vhost.test"),
    ] {
        match resp.echo() {
            Ok(echo) if echo.host() == Some(host) && echo.header("x-forwarded-host") == Some(forwarded_host) => {}
            Ok(echo) => wrong.push(format!(
                "{what}: want host {host:?} and X-Forwarded-Host {forwarded_host:?}, got {:?} and {:?}",
                echo.host(),
                echo.header("x-forwarded-host")
            )),
            Err(e) => wrong.push(format!("{what}: {e:#}")),
        }
    }
    if h2_upstream.echo().is_ok_and(|e| e.has_header("host")) {
        wrong.push("HTTP/2 upstream got a Host header besides :authority".into());
    }
    if !wrong.is_empty() {
        bed.fail(wrong.join("\n"));
    }
}

/// `POST path` with a chunked body of `chunks` × `size` bytes over a raw
/// connection; the status of the first response (0: none).
async fn post_chunked(bed: &L7Bed, host: &str, path: &str, chunks: usize, size: usize) -> u16 {
    let mut conn = bed.ok(RawConn::open(bed.http_addr()).await);
    let head = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n");
    bed.ok(conn.write(head.as_bytes()).await);
    for _ in 0..chunks {
        let chunk = format!("{size:x}\r\n{}\r\n", "c".repeat(size));
        // The proxy may answer and close before the end: write errors are fine.
        if conn.write(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = conn.write(b"0\r\n\r\n").await;
    conn.read_until_idle(Duration::from_millis(500), Duration::from_secs(5)).await;
    conn.responses().first().map_or(0, |r| r.status)
}

#[tokio::test]
async fn proxy_body_size_answers_413() {
    let (mut bed, pods) = bed_with_pods(&["web"]).expect("bed");
    let ingresses = [
        ing("small", "small.test", "web", P, &[("proxy-body-size", "1k")]),
        ing("unlimited", "unlimited.test", "web", P, &[("proxy-body-size", "0")]),
        ing("default", "default.test", "web", P, &[]),
    ];
    bed.write("ingresses.yaml", &docs(&ingresses.iter().map(Ingress::yaml).collect::<Vec<_>>())).unwrap();
    bed.start_lb().await.expect("lb starts");
    let mib = 1 << 20;
    let mut wrong = Vec::new();
    for (host, path, len, want) in [
        ("small.test", "/at-limit", 1024, 200),
        ("small.test", "/over-limit", 1025, 413),
        ("default.test", "/under-1m", mib - 100, 200),
        ("default.test", "/over-1m", mib + 1, 413),
        ("unlimited.test", "/two-mib", 2 * mib, 200),
    ] {
        let req = Req::post(path, "b".repeat(len)).host(host).timeout(Duration::from_secs(15));
        match bed.send(&req).await {
            Ok(resp) if resp.status == want => {}
            Ok(resp) => wrong.push(format!("{host}{path} ({len} bytes): want {want}, got {}", resp.status)),
            Err(e) => wrong.push(format!("{host}{path} ({len} bytes): want {want}, got {e:#}")),
        }
    }
    // A declared length over the limit never reaches the pod.
    for path in ["/over-limit", "/over-1m"] {
        if pods[0].saw(path) {
            wrong.push(format!("{path}: the pod got a request answered 413"));
        }
    }
    // Chunked: counted while forwarded.
    for (host, chunks, want) in [("small.test", 1, 200), ("small.test", 3, 413), ("unlimited.test", 8, 200)] {
        let status = post_chunked(&bed, host, "/chunked", chunks, 600).await;
        if status != want {
            wrong.push(format!("{host}: chunked {chunks} × 600 bytes: want {want}, got {status}"));
        }
    }
    // Other routes keep serving.
    expect_routes(&bed, &[("small.test", "/after", 200, Some("web"))]).await;
    if !wrong.is_empty() {
        bed.fail(wrong.join("\n"));
    }
}

#[tokio::test]
async fn proxy_body_size_flag_sets_the_default() {
    let (mut bed, _pods) = bed_with_pods(&["web"]).expect("bed");
    bed.ingress("web", &ing("web", "a.test", "web", P, &[])).unwrap();
    bed.ingress("big", &ing("big", "big.test", "web", P, &[("proxy-body-size", "8k")])).unwrap();
    let opts = LbOptions { extra_args: vec!["--proxy-body-size".into(), "2k".into()], ..LbOptions::default() };
    bed.start_lb_with(opts).await.expect("lb starts");
    assert_eq!(send(&bed, Req::post("/", "x".repeat(2048)).host("a.test")).await.status, 200);
    assert_eq!(send(&bed, Req::post("/", "x".repeat(2049)).host("a.test")).await.status, 413);
    assert_eq!(send(&bed, Req::post("/", "x".repeat(4096)).host("big.test")).await.status, 200);
}

#[tokio::test]
async fn proxy_read_timeout_is_per_route() {
    let (mut bed, _pods) = bed_with_pods(&["web"]).expect("bed");
    bed.ingress("slow", &ing("slow", "slow.test", "web", P, &[("proxy-read-timeout", "1")])).unwrap();
    bed.ingress("default", &ing("default", "default.test", "web", P, &[])).unwrap();
    bed.start_lb().await.expect("lb starts");
    let start = Instant::now();
    let resp = send(&bed, Req::get("/__echo/slow?ms=3000").host("slow.test")).await;
    let took = start.elapsed();
    assert_eq!(resp.status, 504, "{resp}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(2500), "504 after {took:?}");
    // Within the timeout: answered.
    assert_eq!(send(&bed, Req::get("/__echo/slow?ms=300").host("slow.test")).await.status, 200);
    // The global default (5 s in the bed) for the other route.
    let resp = send(&bed, Req::get("/__echo/slow?ms=3000").host("default.test")).await;
    assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("web")), "{resp}");
}

/// A listener on a fresh loopback address whose accept queue is full: the
/// kernel drops further SYNs, so connecting to it times out.
async fn blackhole() -> (tokio::net::TcpListener, Vec<std::net::TcpStream>, Ipv4Addr) {
    let ip = unique_loopback_ip();
    let addr = SocketAddr::from((ip, ECHO_PORT));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(addr).unwrap();
    let listener = socket.listen(0).unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => held.push(stream),
            Err(_) => return (listener, held, ip),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

#[tokio::test]
async fn proxy_connect_timeout_is_per_route() {
    let (listener, held, ip) = blackhole().await;
    let mut bed = L7Bed::new().expect("bed");
    let svc = Service::new("hole").port("http", P, ECHO_PORT);
    let slice = EndpointSlice::named("hole-1", "hole").port("http", ECHO_PORT).endpoint(ip, true);
    bed.write("svc-hole.yaml", &docs(&[svc.yaml(), slice.yaml()])).unwrap();
    bed.ingress("fast", &ing("fast", "fast.test", "hole", P, &[("proxy-connect-timeout", "1")])).unwrap();
    bed.ingress("default", &ing("default", "default.test", "hole", P, &[])).unwrap();
    let opts = LbOptions {
        upstream_connect_timeout: Some("10s".into()),
        upstream_timeout: Some("20s".into()),
        ..LbOptions::default()
    };
    bed.start_lb_with(opts).await.expect("lb starts");
    let start = Instant::now();
    let resp = send(&bed, Req::get("/").host("fast.test")).await;
    let took = start.elapsed();
    assert_eq!(resp.status, 504, "{resp}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(3000), "504 after {took:?}");
    // Without the annotation: the 10 s of the flag.
    let req = Req::get("/").host("default.test").timeout(Duration::from_secs(3));
    if let Ok(resp) = bed.send(&req).await {
        bed.fail(format!("the route without proxy-connect-timeout answered within 3 s: {resp}"));
    }
    drop((listener, held));
}

#[tokio::test]
async fn proxy_next_upstream_retries_listed_statuses() {
    let mut bed = L7Bed::new().expect("bed");
    let ok = bed.echo("ok").expect("echo");
    let flaky = failing_echo(&mut bed, "flaky", "/flaky", 503).expect("echo");
    bed.service("mixed", &[&ok, &flaky]).unwrap();
    let ingresses = [
        ing("retry", "retry.test", "mixed", P, &[("proxy-next-upstream", "error timeout http_503")]),
        ing("default", "default.test", "mixed", P, &[]),
        ing("off", "off.test", "mixed", P, &[("proxy-next-upstream", "off")]),
        ing(
            "tries",
            "tries.test",
            "mixed",
            P,
            &[("proxy-next-upstream", "http_503"), ("proxy-next-upstream-tries", "1")],
        ),
        ing("post", "post.test", "mixed", P, &[("proxy-next-upstream", "http_503")]),
        ing("post-any", "post-any.test", "mixed", P, &[("proxy-next-upstream", "http_503 non_idempotent")]),
    ];
    bed.write("ingresses.yaml", &docs(&ingresses.iter().map(Ingress::yaml).collect::<Vec<_>>())).unwrap();
    bed.start_lb().await.expect("lb starts");
    const N: usize = 24;
    let mut wrong = Vec::new();
    // Retried: every request ends on the healthy pod (the starting pod is
    // random: about half start on the failing one).
    for (host, post) in [("retry.test", false), ("post-any.test", true)] {
        for i in 0..N {
            let req = if post { Req::post("/flaky", "") } else { Req::get("/flaky") };
            let resp = send(&bed, req.host(host)).await;
            if (resp.status, resp.pod().as_deref()) != (200, Some("ok")) {
                wrong.push(format!("{host} request {i}: want 200 from ok, got {} from {:?}", resp.status, resp.pod()));
            }
        }
    }
    if !flaky.saw("/flaky") {
        wrong.push(format!("the failing pod never got a request in {} tries", 2 * N));
    }
    // Not retried: the failing pod's 503 reaches the client sometimes.
    for (host, post) in [("default.test", false), ("off.test", false), ("tries.test", false), ("post.test", true)] {
        let mut statuses = Vec::new();
        for _ in 0..N {
            let req = if post { Req::post("/flaky", "") } else { Req::get("/flaky") };
            let resp = send(&bed, req.host(host)).await;
            statuses.push((resp.status, resp.pod()));
        }
        let failed = statuses.iter().any(|s| *s == (503, Some("flaky".to_string())));
        let passed = statuses.iter().any(|s| *s == (200, Some("ok".to_string())));
        if !failed || !passed {
            wrong.push(format!("{host}: want some 503 from flaky and some 200 from ok, got {statuses:?}"));
        }
    }
    if !wrong.is_empty() {
        bed.fail(wrong.join("\n"));
    }
}

#[tokio::test]
async fn malformed_upstream_annotations_reject_only_their_ingress() {
    let (mut bed, pods) = bed_with_pods(&["good", "bad"]).expect("bed");
    bed.ingress("good", &ing("good", "good.test", "good", P, &[])).unwrap();
    bed.start_lb().await.expect("lb starts");
    let huge = "1".repeat(1 << 20);
    let cases: Vec<(&str, &str, &str)> = vec![
        ("fcgi", "backend-protocol", "FCGI"),
        ("ajp", "backend-protocol", "AJP"),
        ("proto-newline", "backend-protocol", "HTTPS\nX-Evil: 1"),
        ("proto-braces", "backend-protocol", "{GRPC}"),
        ("vhost-crlf", "upstream-vhost", "a.com\r\nX-Evil: 1"),
        ("vhost-variable", "upstream-vhost", "$host"),
        ("vhost-semicolon", "upstream-vhost", "a.com; proxy_pass http://evil"),
        ("vhost-quote", "upstream-vhost", "a\"b"),
        ("vhost-slash", "upstream-vhost", "a.com/path"),
        ("size-semicolon", "proxy-body-size", "1m;"),
        ("size-braces", "proxy-body-size", "{8m}"),
        ("size-overflow", "proxy-body-size", "99999999999999g"),
        ("size-huge", "proxy-body-size", &huge),
        ("read-text", "proxy-read-timeout", "5; drop"),
        ("send-newline", "proxy-send-timeout", "5\n"),
        ("connect-float", "proxy-connect-timeout", "1e9"),
        ("connect-zero", "proxy-connect-timeout", "0"),
        ("next-semicolon", "proxy-next-upstream", "error; rm -rf"),
        ("next-off-mixed", "proxy-next-upstream", "off http_503"),
        ("next-unknown", "proxy-next-upstream", "http_418"),
        ("tries-negative", "proxy-next-upstream-tries", "-1"),
        ("tries-huge", "proxy-next-upstream-tries", "99999999999"),
    ];
    for (name, annotation, value) in &cases {
        let name = format!("bad-{name}");
        bed.ingress(&name, &ing(&name, &format!("{name}.test"), "bad", P, &[(annotation, value)])).unwrap();
    }
    // Written last: once it serves, the reload saw every file above.
    bed.ingress("marker", &ing("marker", "marker.test", "good", P, &[])).unwrap();
    bed.ok(bed.wait_route("marker.test", "/", 200, Some("good")).await);
    let mut wrong = Vec::new();
    for (name, _, _) in &cases {
        match bed.route(&format!("bad-{name}.test"), "/").await {
            Ok((404, None)) => {}
            other => wrong.push(format!("bad-{name}: want 404 (rejected), got {other:?}")),
        }
    }
    let mut expected: Vec<ExpectedWarning> = cases
        .iter()
        .map(|(name, annotation, _)| ExpectedWarning {
            ingress: format!("bad-{name}"),
            needles: vec![annotation.to_string()],
        })
        .collect();
    for name in ["fcgi", "ajp"] {
        expected.push(ExpectedWarning { ingress: format!("bad-{name}"), needles: vec!["not supported".into()] });
    }
    for missing in wait_warnings(&bed, &expected, RELOAD_TIMEOUT).await {
        wrong.push(format!("no warning naming Ingress default/{} and one of {:?}", missing.ingress, missing.needles));
    }
    expect_routes(&bed, &[("good.test", "/", 200, Some("good"))]).await;
    if !pods[1].request_log().is_empty() {
        wrong.push(format!("rejected Ingresses' backend got requests: {:?}", pods[1].request_log()));
    }
    let output = lb_output(&bed);
    if output.lines().any(|line| line.starts_with("X-Evil")) {
        wrong.push("a rejected value's newline reached the log unescaped".into());
    }
    if !wrong.is_empty() {
        panic!("{}\n---- lb output (tail) ----\n{}", wrong.join("\n"), tail_of(&output, 16 * 1024));
    }
}

#[tokio::test]
async fn proxy_send_timeout_ends_a_stalled_upload() {
    // An "endpoint" that accepts connections and never reads from them.
    let ip = unique_loopback_ip();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, ECHO_PORT))).await.unwrap();
    let sink = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut bed = L7Bed::new().expect("bed");
    let svc = Service::new("sink").port("http", P, ECHO_PORT);
    let slice = EndpointSlice::named("sink-1", "sink").port("http", ECHO_PORT).endpoint(ip, true);
    bed.write("svc-sink.yaml", &docs(&[svc.yaml(), slice.yaml()])).unwrap();
    let annotations = [("proxy-send-timeout", "1"), ("proxy-body-size", "0")];
    bed.ingress("sink", &ing("sink", "sink.test", "sink", P, &annotations)).unwrap();
    let opts = LbOptions { upstream_timeout: Some("30s".into()), ..LbOptions::default() };
    bed.start_lb_with(opts).await.expect("lb starts");
    // More than the socket buffers on both sides hold.
    let body = "u".repeat(64 << 20);
    let start = Instant::now();
    let req = Req::post("/upload", body).host("sink.test").timeout(Duration::from_secs(20));
    let took = match bed.send(&req).await {
        Ok(resp) => {
            assert_eq!(resp.status, 504, "{resp}");
            start.elapsed()
        }
        // The proxy answered and closed while the client was still writing.
        Err(_) => start.elapsed(),
    };
    assert!(took < Duration::from_secs(10), "the stalled upload took {took:?} with proxy-send-timeout 1");
    assert!(bed.lb_running());
    sink.abort();
}
