//! Hostile clients: request smuggling attempts, oversize headers, dot
//! segments and encoded slashes in paths, malformed chunked bodies, a
//! client sending its headers byte by byte.

use std::time::{Duration, Instant};

use lb_testbed::l7::{EchoPod, Ingress, L7Bed, LbOptions, RawConn, Req, Rule, SERVICE_PORT, raw_exchange, wait_until};

/// `/public` (Prefix) → pod `public`, `/b` → pod `b`, `/a` → pod `a`; no
/// rule for `/admin`.
async fn bed(opts: LbOptions) -> (L7Bed, EchoPod) {
    let (bed, public, _a) = bed_with_a(opts).await;
    (bed, public)
}

/// [`bed`], with pod `a` too.
async fn bed_with_a(opts: LbOptions) -> (L7Bed, EchoPod, EchoPod) {
    let mut bed = L7Bed::new().expect("bed");
    let public = bed.echo("public").unwrap();
    let a = bed.echo("a").unwrap();
    let b = bed.echo("b").unwrap();
    bed.service("public", &[&public]).unwrap();
    bed.service("a", &[&a]).unwrap();
    bed.service("b", &[&b]).unwrap();
    let ing = Ingress::new("web").class("lb").rule(
        Rule::host("a.com").prefix("/public", "public", SERVICE_PORT).prefix("/a", "a", SERVICE_PORT).prefix(
            "/b",
            "b",
            SERVICE_PORT,
        ),
    );
    bed.ingress("web", &ing).unwrap();
    bed.start_lb_with(opts).await.expect("lb starts");
    (bed, public, a)
}

/// Sends `raw`; the `/admin` request hidden in it must never reach the
/// `public` pod (lb routes `/admin` nowhere).
async fn assert_not_smuggled(bed: &L7Bed, public: &EchoPod, what: &str, raw: &str) {
    let (responses, _) = bed.ok(raw_exchange(bed.http_addr(), raw.as_bytes(), Duration::from_millis(800)).await);
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    // Give a smuggled request time to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !public.saw("/admin"),
        "{what}: the backend received a smuggled request: {:?} (client got {statuses:?})\n{}",
        public.request_log(),
        bed.logs()
    );
    assert!(statuses.iter().all(|s| *s == 400 || *s == 200 || *s == 404), "{what}: {statuses:?}");
    assert!(bed.lb_running(), "{what}: lb died\n{}", bed.logs());
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_not_smuggled() {
    let (bed, public) = bed(LbOptions::default()).await;
    // CL.TE: a front end trusting Content-Length would pass "0\r\n\r\nGET
    // /admin..." as the body; one trusting chunked ends the body at "0".
    let smuggled = "GET /admin HTTP/1.1\r\nHost: a.com\r\n\r\n";
    let te_cl = format!(
        "POST /public HTTP/1.1\r\nHost: a.com\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        5 + smuggled.len()
    );
    assert_not_smuggled(&bed, &public, "CL + TE", &te_cl).await;
    // TE.CL: the chunked body carries the smuggled request.
    let chunk = smuggled;
    let cl_te = format!(
        "POST /public HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    assert_not_smuggled(&bed, &public, "TE + CL", &cl_te).await;
    // Obfuscated Transfer-Encoding values.
    for te in ["chunked, identity", "xchunked", "chunked\r\nTransfer-Encoding: identity", " chunked"] {
        let req = format!(
            "POST /public HTTP/1.1\r\nHost: a.com\r\nContent-Length: {}\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        );
        assert_not_smuggled(&bed, &public, &format!("TE {te:?}"), &req).await;
    }
}

#[tokio::test]
async fn duplicate_differing_content_length_is_rejected() {
    let (bed, public) = bed(LbOptions::default()).await;
    let smuggled = "GET /admin HTTP/1.1\r\nHost: a.com\r\n\r\n";
    let raw = format!(
        "POST /public HTTP/1.1\r\nHost: a.com\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let (responses, _) = bed.ok(raw_exchange(bed.http_addr(), raw.as_bytes(), Duration::from_millis(800)).await);
    assert_eq!(responses.first().map(|r| r.status), Some(400), "{responses:?}");
    assert_not_smuggled(&bed, &public, "duplicate Content-Length", &raw).await;
    let raw =
        format!("POST /public HTTP/1.1\r\nHost: a.com\r\nContent-Length: 0, {}\r\n\r\n{smuggled}", smuggled.len());
    assert_not_smuggled(&bed, &public, "Content-Length list", &raw).await;
}

#[tokio::test]
async fn oversize_headers_are_rejected() {
    let (bed, public) = bed(LbOptions::default()).await;
    // 80 KiB in one header: above every common proxy's limit (nginx 8k per
    // line, envoy 60 KiB).
    let big = "x".repeat(80 * 1024);
    let raw = format!("GET /public/big HTTP/1.1\r\nHost: a.com\r\nX-Big: {big}\r\n\r\n");
    let (responses, closed) = bed.ok(raw_exchange(bed.http_addr(), raw.as_bytes(), Duration::from_secs(2)).await);
    let status = responses.first().map(|r| r.status);
    assert!(matches!(status, Some(431 | 400)), "want 431/400, got {status:?} (closed: {closed})\n{}", bed.logs());
    // Many headers adding up to 128 KiB.
    let many: String = (0..128).map(|i| format!("X-H{i}: {}\r\n", "y".repeat(1024))).collect();
    let raw = format!("GET /public/many HTTP/1.1\r\nHost: a.com\r\n{many}\r\n");
    let (responses, _) = bed.ok(raw_exchange(bed.http_addr(), raw.as_bytes(), Duration::from_secs(2)).await);
    let status = responses.first().map(|r| r.status);
    assert!(matches!(status, Some(431 | 400)), "want 431/400, got {status:?}");
    assert!(!public.saw("/public/big") && !public.saw("/public/many"), "{:?}", public.request_log());
    assert_eq!(bed.ok(bed.route("a.com", "/public").await).0, 200, "lb still serves");
}

#[tokio::test]
async fn dot_segments_are_resolved_before_routing() {
    let (bed, public) = bed(LbOptions::default()).await;
    let resp = bed.ok(bed.get("a.com", "/a/../b").await);
    assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("b")), "/a/../b routes as /b: {resp}");
    let resp = bed.ok(bed.get("a.com", "/a/./x").await);
    assert_eq!(resp.pod().as_deref(), Some("a"), "{resp}");
    for path in ["/public/../admin", "/public/x/../../admin", "/public/..", "/public/../public2"] {
        let resp = bed.ok(bed.get("a.com", path).await);
        assert_ne!(resp.pod().as_deref(), Some("public"), "{path} reached the /public backend: {resp}");
    }
    assert!(!public.saw("admin"), "{:?}", public.request_log());
}

#[tokio::test]
async fn encoded_dot_segments_do_not_escape_a_prefix() {
    let (bed, public) = bed(LbOptions::default()).await;
    for path in ["/public/%2e%2e/admin", "/public/%2E%2E/admin", "/public/.%2e/admin"] {
        let resp = bed.ok(bed.get("a.com", path).await);
        assert_ne!(resp.pod().as_deref(), Some("public"), "{path} reached the /public backend: {resp}");
    }
    assert!(!public.saw("admin"), "{:?}", public.request_log());
}

#[tokio::test]
async fn encoded_slash_does_not_match_a_prefix_element() {
    let (bed, _public) = bed(LbOptions::default()).await;
    let resp = bed.ok(bed.get("a.com", "/a%2Fb").await);
    assert_ne!(resp.pod().as_deref(), Some("a"), "/a%2Fb matched Prefix /a: {resp}");
    assert_eq!(resp.status, 404, "{resp}");
    let resp = bed.ok(bed.get("a.com", "/a%2fb").await);
    assert_eq!(resp.status, 404, "{resp}");
    // The real /a/b still matches.
    assert_eq!(bed.ok(bed.route("a.com", "/a/b").await), (200, Some("a".to_string())));
}

/// A backend that decodes `%2F` before resolving dot segments would serve
/// these outside `/a`: lb answers 400 and never forwards them.
#[tokio::test]
async fn dot_segments_at_encoded_slashes_are_400_and_never_forwarded() {
    let (bed, public, a) = bed_with_a(LbOptions::default()).await;
    let hostile = [
        "/a/..%2f..%2fetc/passwd",
        "/a/..%2F..%2Fetc/passwd",
        "/a/%2F..",
        "/a/%2f.",
        "/a/x%2F..%2F..%2Fpublic",
        "/a/%2e%2e%2fetc/passwd",
        "/a/.%2E%2F.%2E%2Fetc/passwd",
        "/a/..%5c..%5cetc/passwd",
        "/a/%5C..",
        "/public/..%2Fadmin",
    ];
    for path in hostile {
        let resp = bed.ok(bed.get("a.com", path).await);
        assert_eq!((resp.status, resp.pod()), (400, None), "{path}: {resp}");
    }
    // A literal backslash cannot be written with an HTTP client library.
    let raw = "GET /a/..\\..\\etc/passwd HTTP/1.1\r\nHost: a.com\r\n\r\n";
    let (responses, _) = bed.ok(raw_exchange(bed.http_addr(), raw.as_bytes(), Duration::from_millis(500)).await);
    assert_eq!(responses.first().map(|r| r.status), Some(400), "literal backslashes: {responses:?}");
    // `%2F` inside an ordinary element is routed and forwarded unchanged.
    for path in ["/a/b%2Fc", "/a/b%2fc", "/a/..b%2Fc"] {
        let resp = bed.ok(bed.get("a.com", path).await);
        assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("a")), "{path}: {resp}");
        assert_eq!(bed.ok(resp.echo()).path, path, "{path} reached the backend changed");
    }
    // The ordinary requests arrived: the hostile ones would have by now.
    for pod in [&a, &public] {
        let log = pod.request_log();
        let leaked: Vec<&String> = log.iter().filter(|line| hostile.iter().any(|p| line.contains(p))).collect();
        assert!(leaked.is_empty(), "{} received {leaked:?}", pod.name());
        assert!(!pod.saw("passwd") && !pod.saw("admin"), "{}: {log:?}", pod.name());
    }
}

/// A chunked body the client breaks is the client's fault: 400 (not 502,
/// which would blame the backend), logged with its reason; a well-formed
/// chunked body still goes through.
#[tokio::test]
async fn malformed_chunked_bodies_are_400() {
    let (bed, public) = bed(LbOptions::default()).await;
    let post = |path: &str, body: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
    };
    // hyper allows 16 KiB of chunk extensions per body.
    let long_extension = format!("5;ext={}\r\nhello\r\n0\r\n\r\n", "x".repeat(20 * 1024));
    let cases = [
        ("bad chunk size", post("/public/bad-size", "zz\r\nhello\r\n0\r\n\r\n")),
        ("bad size after a good chunk", post("/public/bad-second", "5\r\nhello\r\n-1\r\nx\r\n0\r\n\r\n")),
        ("oversized chunk extension", post("/public/long-extension", &long_extension)),
    ];
    for (what, raw) in &cases {
        let (responses, _) = bed.ok(raw_exchange(bed.http_addr(), raw.as_bytes(), Duration::from_millis(800)).await);
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [400], "{what}: {responses:?}\n{}", bed.logs());
        assert_eq!(responses[0].header("x-pod-name"), None, "{what}: answered by the backend");
        assert_eq!(responses[0].header("server"), Some("lb"), "{what}");
    }
    // Each is logged as the client's error, with the reason.
    let logged = wait_until("the access log lines", Duration::from_secs(3), || async {
        let stderr = bed.lb_stderr();
        let lines: Vec<String> = ["/public/bad-size", "/public/bad-second", "/public/long-extension"]
            .iter()
            .filter_map(|path| {
                let needle = format!("path={path} ");
                stderr.lines().find(|l| l.contains(" lb_proxy::access: ") && l.contains(&needle)).map(str::to_string)
            })
            .collect();
        (lines.len() == 3).then_some(lines)
    })
    .await;
    for line in bed.ok(logged) {
        assert!(line.contains("status=400") && line.contains("error=\"invalid request body: "), "{line}");
    }
    // A well-formed chunked body, on a connection that then keeps going.
    let good = post("/public/good", "5\r\nhello\r\n6;name=value\r\n world\r\n0\r\n\r\n");
    let (responses, _) = bed.ok(raw_exchange(bed.http_addr(), good.as_bytes(), Duration::from_millis(500)).await);
    let resp = responses.first().unwrap_or_else(|| bed.fail("no answer to a well-formed chunked request"));
    assert_eq!((resp.status, resp.header("x-pod-name")), (200, Some("public")), "{responses:?}");
    let echo = lb_testbed::echo::parse_body(&String::from_utf8_lossy(&resp.body));
    assert_eq!(echo.map(|e| e.body), Some("hello world".to_string()), "{resp:?}");
    assert!(public.saw("/public/good"));
    assert!(bed.lb_running(), "lb died\n{}", bed.logs());
}

#[tokio::test]
async fn slow_header_client_is_cut_off() {
    let opts = LbOptions { client_header_timeout: Some("1s".into()), ..LbOptions::default() };
    let (bed, public) = bed(opts).await;
    let mut conn = bed.ok(RawConn::open(bed.http_addr()).await);
    let start = Instant::now();
    let head = format!("GET /public/slow HTTP/1.1\r\nHost: a.com\r\nX-Slow: {}\r\n\r\n", "z".repeat(100));
    let mut cut_after = None;
    for byte in head.as_bytes() {
        if conn.write(&[*byte]).await.is_err()
            || conn.read_until_idle(Duration::from_millis(100), Duration::from_millis(100)).await
        {
            cut_after = Some(start.elapsed());
            break;
        }
        if start.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    let cut_after = cut_after.unwrap_or_else(|| {
        bed.fail(format!("still connected after {:?} with --client-header-timeout 1s", start.elapsed()))
    });
    assert!(cut_after < Duration::from_secs(4), "cut off only after {cut_after:?}");
    let responses = conn.responses();
    assert!(responses.iter().all(|r| r.status == 408 || r.status == 400), "{responses:?}");
    assert!(!public.saw("/public/slow"), "the backend got the slow request");
    // A normal client is still served.
    assert_eq!(bed.ok(bed.send(&Req::get("/public").host("a.com")).await).status, 200);
}
