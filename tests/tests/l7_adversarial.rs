//! Hostile clients: request smuggling attempts, oversize headers, dot
//! segments and encoded slashes in paths, a client sending its headers
//! byte by byte.

use std::time::{Duration, Instant};

use lb_testbed::l7::{EchoPod, Ingress, L7Bed, LbOptions, RawConn, Req, Rule, SERVICE_PORT, raw_exchange};

/// `/public` (Prefix) → pod `public`, `/b` → pod `b`, `/a` → pod `a`; no
/// rule for `/admin`.
async fn bed(opts: LbOptions) -> (L7Bed, EchoPod) {
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
    (bed, public)
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
