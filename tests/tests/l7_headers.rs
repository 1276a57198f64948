//! What the backend sees and what the client gets back: X-Forwarded-*,
//! X-Real-IP, X-Request-ID, hop-by-hop headers, the Server header, and the
//! request passing through unchanged.

use lb_testbed::l7::{Conn, Ingress, L7Bed, Req, Rule, SERVICE_PORT, unique_loopback_ip};

async fn bed() -> L7Bed {
    let mut bed = L7Bed::new().expect("bed");
    let pod = bed.echo("web").expect("echo");
    bed.service("web", &[&pod]).unwrap();
    bed.ingress("web", &Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT)))
        .unwrap();
    bed.start_lb().await.expect("lb starts");
    bed
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn forwarded_headers_describe_the_client_connection() {
    let bed = bed().await;
    let client_ip = unique_loopback_ip();
    let mut conn = bed.ok(Conn::h1_from(bed.http_addr(), client_ip).await);
    // Spoofed values from the client are replaced.
    let req = Req::get("/x")
        .host("a.com")
        .header("X-Forwarded-For", "1.2.3.4")
        .header("X-Real-IP", "1.2.3.4")
        .header("X-Forwarded-Host", "evil.com")
        .header("X-Forwarded-Port", "1")
        .header("X-Forwarded-Proto", "https");
    let resp = bed.ok(conn.send(&req).await);
    assert_eq!(resp.status, 200, "{resp}");
    let echo = resp.echo().unwrap();
    let ip = client_ip.to_string();
    let port = bed.http_addr().port().to_string();
    let want = [
        ("x-forwarded-for", ip.as_str()),
        ("x-real-ip", ip.as_str()),
        ("x-forwarded-host", "a.com"),
        ("x-forwarded-port", port.as_str()),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-scheme", "http"),
        ("x-scheme", "http"),
    ];
    let mut wrong = Vec::new();
    for (name, value) in want {
        let got = echo.header_all(name);
        if got != vec![value] {
            wrong.push(format!("{name}: want [{value:?}], got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}\nbackend saw: {:?}\n{}", wrong.join("\n"), echo.headers, bed.logs());
    assert_eq!(echo.header("host"), Some("a.com"), "Host is passed on: {:?}", echo.headers);
}

#[tokio::test]
async fn request_id_is_generated_or_kept_and_returned() {
    let bed = bed().await;
    let resp = bed.ok(bed.get("a.com", "/").await);
    let echo = resp.echo().unwrap();
    let id = echo.header("x-request-id").unwrap_or_else(|| bed.fail(format!("no X-Request-ID: {:?}", echo.headers)));
    assert!(is_hex32(id), "X-Request-ID {id:?} is not 32 hex digits");
    assert_eq!(resp.header("x-request-id"), Some(id), "the response carries the same id: {resp}");
    let other = bed.ok(bed.get("a.com", "/").await).echo().unwrap();
    assert_ne!(other.header("x-request-id"), Some(id), "ids are per request");

    let resp = bed.ok(bed.send(&Req::get("/").host("a.com").header("X-Request-ID", "client-id-123")).await);
    let echo = resp.echo().unwrap();
    assert_eq!(echo.header_all("x-request-id"), vec!["client-id-123"], "{:?}", echo.headers);
    assert_eq!(resp.header("x-request-id"), Some("client-id-123"), "{resp}");
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let bed = bed().await;
    let req = Req::get("/")
        .host("a.com")
        .header("Connection", "keep-alive, x-custom")
        .header("X-Custom", "1")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy", "http://evil.example:8080")
        .header("Proxy-Connection", "keep-alive")
        .header("TE", "trailers")
        .header("X-End-To-End", "kept");
    let resp = bed.ok(bed.send(&req).await);
    let echo = resp.echo().unwrap();
    for name in ["x-custom", "keep-alive", "proxy", "proxy-connection", "te"] {
        assert!(!echo.has_header(name), "{name} reached the backend: {:?}", echo.headers);
    }
    assert!(echo.header_all("connection").iter().all(|v| !v.contains("x-custom")), "{:?}", echo.headers);
    assert_eq!(echo.header("x-end-to-end"), Some("kept"));
}

#[tokio::test]
async fn server_header_on_every_response() {
    let mut bed = L7Bed::new().unwrap();
    let pod = bed.echo("web").unwrap();
    bed.service("web", &[&pod]).unwrap();
    bed.service("empty", &[]).unwrap();
    let ing = Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT).prefix(
        "/empty",
        "empty",
        SERVICE_PORT,
    ));
    bed.ingress("web", &ing).unwrap();
    bed.start_lb().await.expect("lb starts");
    for (host, path, status) in
        [("a.com", "/", 200), ("a.com", "/__echo/status?code=500", 500), ("b.com", "/", 404), ("a.com", "/empty", 503)]
    {
        let resp = bed.ok(bed.get(host, path).await);
        assert_eq!(resp.status, status, "{host}{path}: {resp}");
        assert_eq!(resp.header("server"), Some("lb"), "{host}{path}: {resp}");
    }
}

#[tokio::test]
async fn method_path_query_body_and_user_agent_pass_unchanged() {
    let bed = bed().await;
    let cases = [
        Req::post("/submit/form?x=1&y=%20z&x=2", "field=value&other=ü"),
        Req::new(http::Method::PUT, "/items/42?force"),
        Req::new(http::Method::PATCH, "/a;b=c/d"),
        Req::new(http::Method::DELETE, "/items/7"),
        Req::new(http::Method::OPTIONS, "/opts"),
    ];
    for req in cases {
        let req = req.host("a.com").header("User-Agent", "test-agent/1.0 (l7)");
        let resp = bed.ok(bed.send(&req).await);
        assert_eq!(resp.status, 200, "{} {}: {resp}", req.method, req.path);
        let echo = resp.echo().unwrap();
        assert_eq!(echo.method, req.method.as_str());
        assert_eq!(echo.path, req.path, "the request target is passed as sent");
        assert_eq!(echo.body.as_bytes(), &req.body[..]);
        assert_eq!(echo.header_all("user-agent"), vec!["test-agent/1.0 (l7)"]);
    }
    // HEAD gets the head only.
    let resp = bed.ok(bed.send(&Req::new(http::Method::HEAD, "/h").host("a.com")).await);
    assert_eq!((resp.status, resp.body.len()), (200, 0), "{resp}");
    // A larger body passes intact.
    let big = "0123456789abcdef".repeat(16 * 1024);
    let resp = bed.ok(bed.send(&Req::post("/big", big.clone()).host("a.com")).await);
    assert_eq!(resp.echo().unwrap().body.len(), big.len());
}

#[tokio::test]
async fn percent_encoded_path_is_passed_as_sent() {
    // Routing may decode the path; the backend still gets the request
    // target as the client sent it (as ingress-nginx does).
    let bed = bed().await;
    let mut wrong = Vec::new();
    for path in ["/x%41y", "/a%20b?q=%41", "/caf%C3%A9", "/%7Euser", "/a%2Fb/c"] {
        let resp = bed.ok(bed.send(&Req::get(path).host("a.com")).await);
        assert_eq!(resp.status, 200, "{path}: {resp}");
        let got = resp.echo().unwrap().path;
        if got != path {
            wrong.push(format!("sent {path:?}, backend got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
