//! ingress-nginx's client annotations through `lb run --no-xdp`, from
//! chosen loopback source addresses: `allowlist-source-range` /
//! `whitelist-source-range` and `denylist-source-range` (403, by TCP peer,
//! never by `X-Forwarded-For`), `limit-rps` / `limit-rpm` with
//! `limit-burst-multiplier` (nginx's burst + 1, then 503), the zone shared
//! by an Ingress's paths and kept across a reload, `limit-whitelist`,
//! `limit-connections` (requests in flight), CORS (preflights answered
//! 204 without reaching the pod, headers on responses, origin lists), and
//! malformed values rejecting only their Ingress.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use http::Method;
use lb_testbed::l7::annotations::{
    ExpectedWarning, NginxAnnotations, bed_with_pods, expect_routes, lb_output, tail_of, wait_warnings,
};
use lb_testbed::l7::{Conn, Ingress, L7Bed, RELOAD_TIMEOUT, Req, Resp, Rule, SERVICE_PORT, wait_until};

const P: u16 = SERVICE_PORT;

/// Client source addresses (all on loopback).
const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const C: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 2);
const EXEMPT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

/// `req` to lb's plain listener from source address `from`, on a fresh connection.
async fn send_from(bed: &L7Bed, from: Ipv4Addr, req: &Req) -> Resp {
    let mut conn = bed.ok(Conn::h1_from(bed.http_addr(), from).await);
    bed.ok(conn.send(req).await)
}

async fn get_from(bed: &L7Bed, from: Ipv4Addr, host: &str, path: &str) -> Resp {
    send_from(bed, from, &Req::get(path).host(host)).await
}

/// Status and answering pod of `GET host path` from each source.
async fn statuses(bed: &L7Bed, cases: &[(Ipv4Addr, &str, &str, u16, Option<&str>)]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (from, host, path, status, pod) in cases {
        let resp = get_from(bed, *from, host, path).await;
        if resp.status != *status || resp.pod().as_deref() != *pod {
            wrong.push(format!("GET {host}{path} from {from}: want {status} {pod:?}, got {resp}"));
        }
    }
    wrong
}

#[tokio::test]
async fn source_ranges_allow_and_deny_by_the_tcp_peer() {
    let (mut bed, pods) = bed_with_pods(&["allow", "deny", "both", "cors"]).expect("bed");
    let ingresses = [
        Ingress::new("allow")
            .class("lb")
            // The old name, with spaces, a single address and IPv6 entries.
            .nginx("whitelist-source-range", " 127.0.0.2/32 , 2001:db8::/32,::1")
            .rule(Rule::host("allow.test").prefix("/", "allow", P)),
        Ingress::new("deny")
            .class("lb")
            .nginx("denylist-source-range", "127.0.0.3")
            .rule(Rule::host("deny.test").prefix("/", "deny", P)),
        // Both: the deny list is evaluated first (ingress-nginx's deny lines
        // come before its allow lines).
        Ingress::new("both")
            .class("lb")
            .nginx("allowlist-source-range", "127.0.0.0/24")
            .nginx("denylist-source-range", "127.0.0.3/32")
            .rule(Rule::host("both.test").prefix("/", "both", P)),
        // The source check comes before the CORS preflight answer.
        Ingress::new("cors")
            .class("lb")
            .nginx("allowlist-source-range", "127.0.0.2")
            .nginx("enable-cors", "true")
            .rule(Rule::host("cors.test").prefix("/", "cors", P)),
    ];
    for (name, ing) in ["allow", "deny", "both", "cors"].iter().zip(&ingresses) {
        bed.ingress(name, ing).unwrap();
    }
    bed.start_lb().await.expect("lb starts");
    let mut wrong = statuses(
        &bed,
        &[
            (A, "allow.test", "/", 200, Some("allow")),
            (B, "allow.test", "/secret-b", 403, None),
            (C, "allow.test", "/secret-c", 403, None),
            (A, "deny.test", "/", 200, Some("deny")),
            (C, "deny.test", "/", 200, Some("deny")),
            (B, "deny.test", "/secret-b", 403, None),
            (A, "both.test", "/", 200, Some("both")),
            (B, "both.test", "/secret-b", 403, None),
            (C, "both.test", "/secret-c", 403, None),
        ],
    )
    .await;
    // X-Forwarded-For is not trusted.
    let spoofed =
        send_from(&bed, B, &Req::get("/secret-spoofed").host("allow.test").header("x-forwarded-for", "127.0.0.2"))
            .await;
    if spoofed.status != 403 {
        wrong.push(format!("X-Forwarded-For: 127.0.0.2 from {B}: want 403, got {spoofed}"));
    }
    let forbidden = get_from(&bed, B, "allow.test", "/secret-b").await;
    if forbidden.text() != "403 Forbidden\n" {
        wrong.push(format!("403 body: {forbidden}"));
    }
    let preflight = Req::new(Method::OPTIONS, "/secret-preflight")
        .host("cors.test")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT");
    let outside = send_from(&bed, B, &preflight).await;
    if outside.status != 403 || outside.header("access-control-allow-origin").is_some() {
        wrong.push(format!("preflight from outside the allow list: want 403 without CORS headers, got {outside}"));
    }
    let inside = send_from(&bed, A, &preflight).await;
    if inside.status != 204 {
        wrong.push(format!("preflight from inside the allow list: want 204, got {inside}"));
    }
    for pod in &pods {
        if pod.saw("/secret") {
            wrong.push(format!("pod {} got a refused request: {:?}", pod.name(), pod.request_log()));
        }
    }
    if !wrong.is_empty() {
        bed.fail(wrong.join("\n"));
    }
}

/// Sends `n` requests from `from` on one connection as fast as it can;
/// the statuses and how long it took.
async fn burst(bed: &L7Bed, from: Ipv4Addr, host: &str, path: &str, n: usize) -> (Vec<u16>, Duration) {
    let mut conn = bed.ok(Conn::h1_from(bed.http_addr(), from).await);
    let start = Instant::now();
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(bed.ok(conn.send(&Req::get(path).host(host)).await).status);
    }
    (got, start.elapsed())
}

#[tokio::test]
async fn limit_rps_lets_a_burst_through_then_503_per_client_address() {
    let (mut bed, _pods) = bed_with_pods(&["rps"]).expect("bed");
    let rps = Ingress::new("rps")
        .class("lb")
        .nginx("limit-rps", "1")
        .nginx("limit-whitelist", "127.0.0.9/32")
        .rule(Rule::host("rps.test").prefix("/a", "rps", P).prefix("/b", "rps", P));
    bed.ingress("rps", &rps).unwrap();
    bed.start_lb().await.expect("lb starts");

    // limit-rps 1, multiplier 5: burst 5, so 6 requests at once, then one
    // per second (nginx's limit_req burst=5 nodelay).
    let (got, took) = burst(&bed, A, "rps.test", "/a", 12).await;
    let passed = got.iter().filter(|s| **s == 200).count();
    let refused = got.iter().filter(|s| **s == 503).count();
    assert_eq!(passed + refused, got.len(), "only 200 and 503: {got:?}\n{}", bed.logs());
    if took < Duration::from_secs(1) {
        assert_eq!(got, [[200; 6].as_slice(), [503; 6].as_slice()].concat(), "in {took:?}\n{}", bed.logs());
    } else {
        // A slow machine: one more per second elapsed.
        let most = 6 + took.as_secs() as usize + 1;
        assert!((6..=most).contains(&passed), "{passed} passed in {took:?}: {got:?}\n{}", bed.logs());
    }
    // The zone is the Ingress's: right after /a is refused, its other path
    // is refused too (one request per second: the next is well apart).
    let mut conn = bed.ok(Conn::h1_from(bed.http_addr(), A).await);
    for _ in 0..10 {
        if bed.ok(conn.send(&Req::get("/a").host("rps.test")).await).status == 503 {
            break;
        }
    }
    let other_path = bed.ok(conn.send(&Req::get("/b").host("rps.test")).await);
    assert_eq!(other_path.status, 503, "{other_path}\n{}", bed.logs());
    assert_eq!(other_path.text(), "503 Service Unavailable\n");
    // Another client address has its own budget.
    let (other, _) = burst(&bed, B, "rps.test", "/b", 3).await;
    assert_eq!(other, [200, 200, 200], "{}", bed.logs());
    // limit-whitelist: exempt.
    let (exempt, _) = burst(&bed, EXEMPT, "rps.test", "/a", 20).await;
    assert!(exempt.iter().all(|s| *s == 200), "exempt client: {exempt:?}\n{}", bed.logs());
    // And it recovers: one more request per second.
    wait_until("client A to be served again", Duration::from_secs(5), || async {
        (get_from(&bed, A, "rps.test", "/a").await.status == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| bed.fail(format!("{e:#}")));
}

#[tokio::test]
async fn limit_rpm_counters_survive_a_reload_of_an_unchanged_ingress() {
    let (mut bed, _pods) = bed_with_pods(&["rpm", "other"]).expect("bed");
    // 1 per minute, multiplier 2: 3 requests, then none for a minute.
    let rpm = Ingress::new("rpm")
        .class("lb")
        .nginx("limit-rpm", "1")
        .nginx("limit-burst-multiplier", "2")
        .rule(Rule::host("rpm.test").prefix("/", "rpm", P));
    bed.ingress("rpm", &rpm).unwrap();
    bed.start_lb().await.expect("lb starts");
    let (got, _) = burst(&bed, A, "rpm.test", "/", 5).await;
    assert_eq!(got, [200, 200, 200, 503, 503], "{}", bed.logs());
    // A new route table (another Ingress added): the zone is kept.
    let other = Ingress::new("other").class("lb").rule(Rule::host("other.test").prefix("/", "other", P));
    bed.ingress("other", &other).unwrap();
    bed.ok(bed.wait_route("other.test", "/", 200, Some("other")).await);
    let after = get_from(&bed, A, "rpm.test", "/").await;
    assert_eq!(after.status, 503, "the reload reset the counter: {after}\n{}", bed.logs());
    // Changed values are a new zone (ingress-nginx: a new limit_req_zone).
    let changed = Ingress::new("rpm")
        .class("lb")
        .nginx("limit-rpm", "2")
        .rule(Rule::host("rpm.test").prefix("/", "rpm", P))
        // A new host, to see when the change is applied.
        .rule(Rule::host("changed.test").prefix("/", "rpm", P));
    bed.ingress("rpm", &changed).unwrap();
    bed.ok(bed.wait_route("changed.test", "/", 200, Some("rpm")).await);
    let fresh = get_from(&bed, A, "rpm.test", "/").await;
    assert_eq!(fresh.status, 200, "{fresh}\n{}", bed.logs());
}

#[tokio::test]
async fn limit_connections_counts_requests_in_flight_per_client_address() {
    let (mut bed, pods) = bed_with_pods(&["conn"]).expect("bed");
    let conn = Ingress::new("conn")
        .class("lb")
        .nginx("limit-connections", "1")
        .rule(Rule::host("conn.test").prefix("/", "conn", P));
    bed.ingress("conn", &conn).unwrap();
    bed.start_lb().await.expect("lb starts");
    bed.ok(bed.wait_route("conn.test", "/", 200, Some("conn")).await);

    let addr = bed.http_addr();
    let slow = tokio::spawn(async move {
        let mut conn = Conn::h1_from(addr, A).await?;
        conn.send(&Req::get("/__echo/slow?ms=3000").host("conn.test").timeout(Duration::from_secs(10))).await
    });
    let pod = pods[0].clone();
    bed.ok(wait_until("the slow request to reach the pod", Duration::from_secs(5), || {
        let pod = pod.clone();
        async move { pod.saw("/__echo/slow").then_some(()) }
    })
    .await);
    // While it is in flight: the same address is refused, another served.
    let second = get_from(&bed, A, "conn.test", "/second").await;
    let other = get_from(&bed, B, "conn.test", "/other").await;
    let slow = slow.await.unwrap();
    let slow = bed.ok(slow);
    assert_eq!(slow.status, 200, "{slow}");
    assert_eq!(second.status, 503, "second request from {A} while one is in flight: {second}\n{}", bed.logs());
    assert!(!pods[0].saw("/second"), "the refused request reached the pod");
    assert_eq!((other.status, other.pod().as_deref()), (200, Some("conn")), "from {B}: {other}");
    // Done: the slot is free again.
    let after = get_from(&bed, A, "conn.test", "/after").await;
    assert_eq!(after.status, 200, "{after}\n{}", bed.logs());
}

fn preflight(host: &str, path: &str, origin: &str) -> Req {
    Req::new(Method::OPTIONS, path)
        .host(host)
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
}

/// The CORS headers of a response, by name (absent: `None`).
fn cors_headers(resp: &Resp) -> Vec<(&'static str, Option<String>)> {
    [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
    ]
    .into_iter()
    .map(|name| (name, resp.header(name).map(str::to_string)))
    .collect()
}

fn some(values: [Option<&str>; 6]) -> Vec<(&'static str, Option<String>)> {
    let names = [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
    ];
    names.into_iter().zip(values.map(|v| v.map(str::to_string))).collect()
}

const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";

#[tokio::test]
async fn cors_answers_preflights_and_decorates_responses() {
    let (mut bed, pods) = bed_with_pods(&["any", "list", "plain"]).expect("bed");
    let any =
        Ingress::new("any").class("lb").nginx("enable-cors", "true").rule(Rule::host("any.test").prefix("/", "any", P));
    let list = Ingress::new("list")
        .class("lb")
        .nginx("enable-cors", "true")
        .nginx("cors-allow-origin", "https://app.example.com, https://*.example.org:8443")
        .nginx("cors-allow-methods", "GET, POST")
        .nginx("cors-allow-headers", "X-Custom,Content-Type")
        .nginx("cors-expose-headers", "X-Total, X-Page")
        .nginx("cors-allow-credentials", "false")
        .nginx("cors-max-age", "600")
        .rule(Rule::host("list.test").prefix("/", "list", P));
    // cors-* without enable-cors: nothing.
    let plain = Ingress::new("plain")
        .class("lb")
        .nginx("cors-allow-origin", "https://app.example.com")
        .rule(Rule::host("plain.test").prefix("/", "plain", P));
    bed.ingress("any", &any).unwrap();
    bed.ingress("list", &list).unwrap();
    bed.ingress("plain", &plain).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_routes(&bed, &[("any.test", "/", 200, Some("any")), ("plain.test", "/", 200, Some("plain"))]).await;
    let (any_pod, list_pod, plain_pod) = (&pods[0], &pods[1], &pods[2]);
    let default_any =
        some([Some("*"), Some("true"), Some(DEFAULT_METHODS), Some(DEFAULT_HEADERS), None, Some("1728000")]);

    // Defaults: a preflight is answered here, 204, empty, never proxied.
    let pre = bed.ok(bed.send(&preflight("any.test", "/api/preflight-any", "https://x.example")).await);
    assert_eq!(pre.status, 204, "{pre}\n{}", bed.logs());
    assert_eq!(cors_headers(&pre), default_any, "{pre}");
    assert!(pre.body.is_empty() && pre.header("content-length").is_none_or(|l| l == "0"), "{pre}");
    assert!(pre.pod().is_none() && !any_pod.saw("/api/preflight-any"), "the preflight reached the pod");
    // A simple request is proxied and gets the headers (Origin or not, with `*`).
    let get = bed.ok(bed.send(&Req::get("/api/simple").host("any.test").header("origin", "https://x.example")).await);
    assert_eq!((get.status, get.pod().as_deref()), (200, Some("any")), "{get}");
    assert_eq!(cors_headers(&get), default_any, "{get}");
    let no_origin = bed.ok(bed.get("any.test", "/api/no-origin").await);
    assert_eq!(cors_headers(&no_origin), default_any, "{no_origin}");
    // OPTIONS that is not a preflight (no Access-Control-Request-Method) goes upstream.
    let options = bed
        .ok(bed.send(&Req::new(Method::OPTIONS, "/api/options").host("any.test").header("origin", "https://x")).await);
    assert_eq!((options.status, options.pod().as_deref()), (200, Some("any")), "{options}");
    assert!(any_pod.saw("/api/options"));

    // A list: a matching Origin is echoed, with the configured values.
    let configured = |origin: &str| {
        some([
            Some(origin),
            None,
            Some("GET, POST"),
            Some("X-Custom,Content-Type"),
            Some("X-Total,X-Page"),
            Some("600"),
        ])
    };
    for origin in ["https://app.example.com", "https://a-1.example.org:8443"] {
        let get = bed.ok(bed.send(&Req::get("/list").host("list.test").header("origin", origin)).await);
        assert_eq!((get.status, get.pod().as_deref()), (200, Some("list")), "{get}");
        assert_eq!(cors_headers(&get), configured(origin), "{origin}: {get}");
        assert_eq!(get.header("vary"), Some("Origin"), "{get}");
        let pre = bed.ok(bed.send(&preflight("list.test", "/list/preflight-ok", origin)).await);
        assert_eq!(pre.status, 204, "{origin}: {pre}");
        assert_eq!(cors_headers(&pre), configured(origin), "{origin}: {pre}");
    }
    assert!(!list_pod.saw("/list/preflight-ok"), "an allowed preflight reached the pod");
    // Other origins (a different scheme, port or depth too) get no CORS
    // headers, and their preflights go upstream.
    let none = some([None; 6]);
    for origin in
        ["https://evil.com", "http://app.example.com", "https://a.b.example.org:8443", "https://a.example.org", "null"]
    {
        let get = bed.ok(bed.send(&Req::get("/list").host("list.test").header("origin", origin)).await);
        assert_eq!((get.status, cors_headers(&get)), (200, none.clone()), "{origin}: {get}");
        let pre = bed.ok(bed.send(&preflight("list.test", "/list/preflight-other", origin)).await);
        assert_eq!((pre.status, pre.pod().as_deref()), (200, Some("list")), "{origin}: {pre}");
        assert_eq!(cors_headers(&pre), none, "{origin}: {pre}");
    }
    // Without enable-cors nothing changes.
    let pre = bed.ok(bed.send(&preflight("plain.test", "/plain/preflight", "https://app.example.com")).await);
    assert_eq!((pre.status, cors_headers(&pre)), (200, none.clone()), "{pre}");
    assert!(plain_pod.saw("/plain/preflight"));
}

/// A rejected Ingress: one bad annotation value, its own host.
struct Bad {
    name: &'static str,
    annotation: &'static str,
    value: String,
}

fn bad(name: &'static str, annotation: &'static str, value: &str) -> Bad {
    Bad { name, annotation, value: value.to_string() }
}

#[tokio::test]
async fn malformed_client_annotations_reject_only_their_ingress() {
    let (mut bed, pods) = bed_with_pods(&["good", "bad"]).expect("bed");
    // A good Ingress using every annotation, which keeps serving.
    let good = Ingress::new("good")
        .class("lb")
        .nginx("allowlist-source-range", "127.0.0.0/8, ::1/128")
        .nginx("denylist-source-range", "10.0.0.0/8")
        .nginx("limit-rps", "1000")
        .nginx("limit-connections", "100")
        .nginx("limit-allowlist", "127.0.0.1")
        .nginx("enable-cors", "true")
        .nginx("cors-allow-origin", "https://*.good.test")
        .rule(Rule::host("good.test").prefix("/", "good", P));
    bed.ingress("good", &good).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_routes(&bed, &[("good.test", "/", 200, Some("good"))]).await;

    let huge = "10.0.0.1,".repeat(600);
    let cases = [
        bad("bad-cidr", "whitelist-source-range", "10.0.0.0/33"),
        bad("bad-cidr-host", "allowlist-source-range", "example.com"),
        bad("bad-cidr-newline", "denylist-source-range", "10.0.0.1\n10.0.0.2"),
        bad("bad-cidr-semicolon", "denylist-source-range", "10.0.0.1; deny all"),
        bad("bad-cidr-empty", "allowlist-source-range", ""),
        bad("bad-cidr-huge", "allowlist-source-range", &huge),
        bad("bad-rps", "limit-rps", "ten"),
        bad("bad-rpm", "limit-rpm", "-1"),
        bad("bad-conn", "limit-connections", "1;"),
        bad("bad-multiplier", "limit-burst-multiplier", "{5}"),
        bad("bad-limit-list", "limit-whitelist", "10.0.0.1, nope"),
        bad("bad-enable-cors", "enable-cors", "on"),
        bad("bad-origin-crlf", "cors-allow-origin", "https://a.com\r\nX-Evil: 1"),
        bad("bad-origin-quote", "cors-allow-origin", "\"https://a.com\""),
        bad("bad-origin-path", "cors-allow-origin", "https://a.com/$host"),
        bad("bad-methods", "cors-allow-methods", "GET; DELETE"),
        bad("bad-headers", "cors-allow-headers", "X-A, {X-B}"),
        bad("bad-headers-var", "cors-allow-headers", "$http_cookie"),
        bad("bad-expose", "cors-expose-headers", "X-A'"),
        bad("bad-credentials", "cors-allow-credentials", "yes"),
        bad("bad-max-age", "cors-max-age", "1e9"),
    ];
    let start = Instant::now();
    for c in &cases {
        let ing = Ingress::new(c.name)
            .class("lb")
            .nginx("enable-cors", if c.annotation == "enable-cors" { &c.value } else { "true" })
            .nginx(c.annotation, &c.value)
            .rule(Rule::host(&format!("{}.test", c.name)).prefix("/", "bad", P));
        bed.ingress(c.name, &ing).unwrap();
    }
    // Written last: once it is served, the reload saw every file above.
    let marker = Ingress::new("marker").class("lb").rule(Rule::host("marker.test").prefix("/", "good", P));
    bed.ingress("marker", &marker).unwrap();
    bed.ok(bed.wait_route("marker.test", "/", 200, Some("good")).await);
    let reload = start.elapsed();

    let mut wrong = Vec::new();
    if reload > RELOAD_TIMEOUT {
        wrong.push(format!("the reload with the malformed Ingresses took {reload:?}"));
    }
    let good_resp = bed.ok(bed.get("good.test", "/x").await);
    if good_resp.status != 200 || good_resp.pod().as_deref() != Some("good") {
        wrong.push(format!("good.test: {good_resp}"));
    }
    for c in &cases {
        match bed.route(&format!("{}.test", c.name), "/").await {
            Ok((404, None)) => {}
            other => wrong.push(format!("{}: want 404 (rejected), got {other:?}", c.name)),
        }
    }
    let expected: Vec<ExpectedWarning> = cases
        .iter()
        .map(|c| ExpectedWarning { ingress: c.name.into(), needles: vec![format!("{}]", c.annotation)] })
        .collect();
    for missing in wait_warnings(&bed, &expected, RELOAD_TIMEOUT).await {
        wrong.push(format!("no warning naming Ingress default/{} and {:?}", missing.ingress, missing.needles));
    }
    if !pods[1].request_log().is_empty() {
        wrong.push(format!("rejected Ingresses' backend got requests: {:?}", pods[1].request_log()));
    }
    assert!(bed.lb_running(), "lb died:\n{}", bed.logs());
    if !wrong.is_empty() {
        let output = lb_output(&bed);
        panic!("{}\n---- lb output (tail) ----\n{}", wrong.join("\n"), tail_of(&output, 24 * 1024));
    }
}
