//! ingress-nginx annotations (`nginx.ingress.kubernetes.io/…`) through
//! `lb run --no-xdp`: `use-regex` (case-insensitive, anchored at the start,
//! host-wide, longest path first), `rewrite-target` (captures, query kept),
//! `app-root`, `ssl-redirect` / `force-ssl-redirect` / `http-redirect-code`
//! with and without `spec.tls`, `permanent-redirect` / `temporal-redirect`
//! and their codes, malformed values rejecting only their Ingress, and
//! unknown annotations ignored.

use std::time::{Duration, Instant};

use lb_testbed::l7::annotations::{
    ExpectedWarning, NginxAnnotations, bed_with_pods, expect_routes, expect_upstream, is_https_location, lb_output,
    percent_decode, tail_of, wait_warnings,
};
use lb_testbed::l7::{Ingress, RELOAD_TIMEOUT, Req, Rule, SERVICE_PORT, TestCa, TlsOpts, docs, send_tls, tls_secret};

const P: u16 = SERVICE_PORT;
const IMPL: &str = "ImplementationSpecific";

#[tokio::test]
async fn use_regex_is_case_insensitive_anchored_at_the_start_and_host_wide() {
    let (mut bed, _pods) = bed_with_pods(&["digits", "bar", "prefix-type", "exact", "literal", "root"]).expect("bed");
    let regex = Ingress::new("regex").class("lb").nginx("use-regex", "true").rule(
        Rule::host("regex.test")
            .path("/foo/[0-9]+", IMPL, "digits", P)
            .path("/bar$", IMPL, "bar", P)
            // pathType Prefix is a regex too under use-regex ...
            .prefix("/pre.ix", "prefix-type", P)
            // ... but Exact stays an exact (case-sensitive) match.
            .exact("/exact", "exact", P)
            .prefix("/", "root", P),
    );
    // No annotation, same host: its paths are regexes too, since another
    // Ingress of the host uses regex.
    let same_host =
        Ingress::new("same-host").class("lb").rule(Rule::host("regex.test").prefix("/lit.ral", "literal", P));
    // Another host is unaffected: literal prefixes.
    let other_host =
        Ingress::new("other-host").class("lb").rule(Rule::host("plain.test").prefix("/lit.ral", "literal", P));
    bed.write("ingresses.yaml", &docs(&[regex.yaml(), same_host.yaml(), other_host.yaml()])).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_routes(
        &bed,
        &[
            // What works without annotations (the harness itself).
            ("plain.test", "/lit.ral", 200, Some("literal")),
            ("plain.test", "/lit.ral/x", 200, Some("literal")),
            ("plain.test", "/litXral", 404, None),
            ("plain.test", "/LIT.RAL", 404, None),
            // use-regex.
            ("regex.test", "/foo/123", 200, Some("digits")),
            ("regex.test", "/foo/123/more", 200, Some("digits")),
            ("regex.test", "/foo/123abc", 200, Some("digits")),
            ("regex.test", "/FOO/123", 200, Some("digits")),
            ("regex.test", "/foo/abc", 200, Some("root")),
            ("regex.test", "/x/foo/123", 200, Some("root")),
            ("regex.test", "/bar", 200, Some("bar")),
            ("regex.test", "/BaR", 200, Some("bar")),
            ("regex.test", "/bar/x", 200, Some("root")),
            ("regex.test", "/barn", 200, Some("root")),
            ("regex.test", "/prefix", 200, Some("prefix-type")),
            ("regex.test", "/preXix/y", 200, Some("prefix-type")),
            ("regex.test", "/PREFIXES", 200, Some("prefix-type")),
            ("regex.test", "/exact", 200, Some("exact")),
            ("regex.test", "/exact/x", 200, Some("root")),
            ("regex.test", "/EXACT", 200, Some("root")),
            ("regex.test", "/lit.ral", 200, Some("literal")),
            ("regex.test", "/litXral", 200, Some("literal")),
            ("regex.test", "/LITxRAL/deeper", 200, Some("literal")),
            ("regex.test", "/", 200, Some("root")),
            ("regex.test", "/anything", 200, Some("root")),
        ],
    )
    .await;
    // Matching does not change what the backend receives.
    expect_upstream(&bed, &[("regex.test", "/FOO/123/x?q=1", "digits", "/FOO/123/x?q=1")]).await;
}

#[tokio::test]
async fn regex_paths_are_tried_longest_first_across_the_hosts_ingresses() {
    let (mut bed, _pods) = bed_with_pods(&["api", "generic", "exact", "tie-a", "tie-x", "short", "root"]).expect("bed");
    let a = Ingress::new("order-a").class("lb").nginx("use-regex", "true").rule(
        Rule::host("order.test")
            // Written first, shortest: tried last.
            .path("/", IMPL, "root", P)
            .path("/api/v1", IMPL, "api", P)
            .path("/s", IMPL, "short", P)
            // Same length (8 bytes): the lexicographically greater first.
            .path("/t/[a-z]", IMPL, "tie-a", P)
            .path("/t/[x-z]", IMPL, "tie-x", P)
            // Exact is exact, and wins over any regex.
            .exact("/api/v1/x", "exact", P),
    );
    // Another Ingress of the host, without the annotation: its path is a
    // regex, ordered with the others by length (9 bytes).
    let b = Ingress::new("order-b").class("lb").rule(Rule::host("order.test").prefix("/.*/.*/.*", "generic", P));
    bed.write("ingresses.yaml", &docs(&[a.yaml(), b.yaml()])).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_routes(
        &bed,
        &[
            ("order.test", "/api/v1", 200, Some("api")),
            // "/api/v1/" already matches /.*/.*/.* (empty last part).
            ("order.test", "/api/v1/", 200, Some("generic")),
            ("order.test", "/API/V1", 200, Some("api")),
            // Matches /api/v1 (7 bytes) and /.*/.*/.* (9 bytes): the longer wins.
            ("order.test", "/api/v1/users", 200, Some("generic")),
            ("order.test", "/api/v1/x", 200, Some("exact")),
            ("order.test", "/api/v1/x/y", 200, Some("generic")),
            ("order.test", "/t/y", 200, Some("tie-x")),
            ("order.test", "/t/b", 200, Some("tie-a")),
            ("order.test", "/T/Z", 200, Some("tie-x")),
            ("order.test", "/s", 200, Some("short")),
            ("order.test", "/sx", 200, Some("short")),
            ("order.test", "/s/a/b", 200, Some("generic")),
            ("order.test", "/x", 200, Some("root")),
        ],
    )
    .await;
}

#[tokio::test]
async fn rewrite_target_substitutes_captures_and_keeps_the_query() {
    let (mut bed, _pods) = bed_with_pods(&["rw", "keep", "opt", "implied", "literal"]).expect("bed");
    let ingresses =
        [
            Ingress::new("rw")
                .class("lb")
                .nginx("use-regex", "true")
                .nginx("rewrite-target", "/new/$2/$1")
                .rule(Rule::host("rw.test").path("/old/([a-z]+)/(.*)", IMPL, "rw", P)),
            // Same host, no rewrite: its requests pass unchanged.
            Ingress::new("rw-keep").class("lb").rule(Rule::host("rw.test").prefix("/keep", "keep", P)),
            // A group that did not take part, and one the regex does not have:
            // both empty.
            Ingress::new("rw-opt").class("lb").nginx("rewrite-target", "/o$1/$3end").rule(Rule::host("opt.test").path(
                "/opt(/x)?",
                IMPL,
                "opt",
                P,
            )),
            // rewrite-target alone implies use-regex.
            Ingress::new("rw-implied")
                .class("lb")
                .nginx("rewrite-target", "/$1")
                .rule(Rule::host("implied.test").path("/imp/(.*)", IMPL, "implied", P)),
            // `;`, `{`, `}` and quotes are literal characters of the template.
            Ingress::new("rw-literal")
                .class("lb")
                .nginx("rewrite-target", r#"/l;a{b}'c"/$1"#)
                .rule(Rule::host("literal.test").path("/lit/(.*)", IMPL, "literal", P)),
        ];
    let all: Vec<String> = ingresses.iter().map(Ingress::yaml).collect();
    bed.write("ingresses.yaml", &docs(&all)).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_upstream(
        &bed,
        &[
            ("rw.test", "/keep/x?z=1", "keep", "/keep/x?z=1"),
            ("rw.test", "/old/abc/rest/of/it", "rw", "/new/rest/of/it/abc"),
            ("rw.test", "/old/abc/rest?x=1&y=%20z", "rw", "/new/rest/abc?x=1&y=%20z"),
            ("rw.test", "/old/abc/", "rw", "/new//abc"),
            ("rw.test", "/OLD/Abc/R", "rw", "/new/R/Abc"),
            ("opt.test", "/opt", "opt", "/o/end"),
            ("opt.test", "/opt/x", "opt", "/o/x/end"),
            ("opt.test", "/opt/x/more?q", "opt", "/o/x/end?q"),
            ("implied.test", "/imp/zz", "implied", "/zz"),
            ("implied.test", "/IMP/Zz?a=b", "implied", "/Zz?a=b"),
            ("implied.test", "/imp/", "implied", "/"),
        ],
    )
    .await;
    // The literal characters arrive as such (escaped or not).
    let resp = bed.ok(bed.get("literal.test", "/lit/zz?q=1").await);
    assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("literal")), "{resp}\n{}", bed.logs());
    let got = resp.echo().unwrap().path;
    assert_eq!(percent_decode(&got), r#"/l;a{b}'c"/zz?q=1"#, "backend got {got:?}");
}

#[tokio::test]
async fn app_root_redirects_only_the_root() {
    let (mut bed, _pods) = bed_with_pods(&["app", "root-app", "tls-app"]).expect("bed");
    let ca = TestCa::new().unwrap();
    let cert = ca.issue(&["apptls.test"]).unwrap();
    bed.write("secrets.yaml", &tls_secret("apptls", &cert)).unwrap();
    let ingresses = [
        Ingress::new("app").class("lb").nginx("app-root", "/app").rule(Rule::host("app.test").prefix("/", "app", P)),
        // app-root "/" must not loop: "/" is just routed.
        Ingress::new("root-app")
            .class("lb")
            .nginx("app-root", "/")
            .rule(Rule::host("rootapp.test").prefix("/", "root-app", P)),
        Ingress::new("tls-app")
            .class("lb")
            .nginx("app-root", "/app")
            .tls("apptls", &["apptls.test"])
            .rule(Rule::host("apptls.test").prefix("/", "tls-app", P)),
    ];
    let all: Vec<String> = ingresses.iter().map(Ingress::yaml).collect();
    bed.write("ingresses.yaml", &docs(&all)).unwrap();
    bed.start_lb().await.expect("lb starts");
    // Other paths are routed normally (also today, without the annotation).
    expect_upstream(
        &bed,
        &[
            ("app.test", "/app", "app", "/app"),
            ("app.test", "/app/x?y=1", "app", "/app/x?y=1"),
            ("app.test", "/other", "app", "/other"),
            ("rootapp.test", "/", "root-app", "/"),
            ("rootapp.test", "/x", "root-app", "/x"),
        ],
    )
    .await;
    let resp = bed.ok(bed.get("app.test", "/").await);
    assert_eq!(resp.status, 302, "GET app.test/: {resp}\n{}", bed.logs());
    assert_eq!(resp.header("location"), Some("http://app.test/app"), "{resp}");
    assert!(resp.pod().is_none(), "answered by lb: {resp}");
    // $http_host: the Host header as the client sent it, port included.
    let resp = bed.ok(bed.get("app.test:8000", "/").await);
    assert_eq!((resp.status, resp.header("location")), (302, Some("http://app.test:8000/app")), "{resp}");
    // Over HTTPS the scheme is https.
    let opts = TlsOpts::new("apptls.test").verify(&ca);
    let (_, resp) = bed.ok(send_tls(bed.https_addr(), opts, &Req::get("/")).await);
    assert_eq!((resp.status, resp.header("location")), (302, Some("https://apptls.test/app")), "{resp}");
    let (_, resp) = bed.ok(send_tls(bed.https_addr(), opts, &Req::get("/app")).await);
    assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("tls-app")), "{resp}");
}

#[tokio::test]
async fn ssl_redirect_force_ssl_redirect_and_http_redirect_code() {
    let (mut bed, pods) =
        bed_with_pods(&["tls-default", "no-redirect", "force", "force-301", "tls-302", "force-307"]).expect("bed");
    let ca = TestCa::new().unwrap();
    let names = ["default.test", "noredirect.test", "tls302.test"];
    let secrets: Vec<String> =
        names.iter().map(|n| tls_secret(&format!("{}-tls", n.replace('.', "-")), &ca.issue(&[n]).unwrap())).collect();
    bed.write("secrets.yaml", &docs(&secrets)).unwrap();
    let tls_ing = |name: &str, host: &str, pod: &str| {
        Ingress::new(name)
            .class("lb")
            .tls(&format!("{}-tls", host.replace('.', "-")), &[host])
            .rule(Rule::host(host).prefix("/", pod, P))
    };
    let plain_ing =
        |name: &str, host: &str, pod: &str| Ingress::new(name).class("lb").rule(Rule::host(host).prefix("/", pod, P));
    let ingresses = [
        tls_ing("tls-default", "default.test", "tls-default"),
        tls_ing("no-redirect", "noredirect.test", "no-redirect").nginx("ssl-redirect", "false"),
        tls_ing("tls-302", "tls302.test", "tls-302").nginx("http-redirect-code", "302"),
        plain_ing("force", "force.test", "force").nginx("force-ssl-redirect", "true"),
        plain_ing("force-301", "force301.test", "force-301")
            .nginx("force-ssl-redirect", "true")
            .nginx("http-redirect-code", "301"),
        plain_ing("force-307", "force307.test", "force-307")
            .nginx("force-ssl-redirect", "true")
            .nginx("http-redirect-code", "307"),
    ];
    let all: Vec<String> = ingresses.iter().map(Ingress::yaml).collect();
    bed.write("ingresses.yaml", &docs(&all)).unwrap();
    bed.start_lb().await.expect("lb starts");
    let https_port = bed.https_addr().port();
    let mut wrong = Vec::new();
    // Plain HTTP: redirected (status, host) or served (200 from its pod).
    let expect: [(&str, u16, Option<&str>); 6] = [
        ("default.test", 308, None),
        ("noredirect.test", 200, Some("no-redirect")),
        ("tls302.test", 302, None),
        ("force.test", 308, None),
        ("force301.test", 301, None),
        ("force307.test", 307, None),
    ];
    for (host, status, pod) in expect {
        let target = "/some/path?x=1&y=2";
        let resp = match bed.get(host, target).await {
            Ok(r) => r,
            Err(e) => {
                wrong.push(format!("GET http://{host}{target}: {e:#}"));
                continue;
            }
        };
        if (resp.status, resp.pod().as_deref()) != (status, pod) {
            wrong.push(format!("GET http://{host}{target}: want {status} {pod:?}, got {resp}"));
        } else if pod.is_none() {
            let location = resp.header("location").unwrap_or_default();
            if !is_https_location(location, host, https_port, target) {
                wrong.push(format!("GET http://{host}{target}: Location {location:?}, want https://{host}{target}"));
            }
        }
    }
    // Over HTTPS every host is served (no redirect loop); force.test has no
    // spec.tls and gets the default certificate.
    for (host, pod) in [
        ("default.test", "tls-default"),
        ("noredirect.test", "no-redirect"),
        ("tls302.test", "tls-302"),
        ("force.test", "force"),
        ("force301.test", "force-301"),
    ] {
        match send_tls(bed.https_addr(), TlsOpts::new(host), &Req::get("/s?q")).await {
            Ok((_, resp)) if resp.status == 200 && resp.pod().as_deref() == Some(pod) => {}
            Ok((_, resp)) => wrong.push(format!("GET https://{host}/s?q: want 200 from {pod}, got {resp}")),
            Err(e) => wrong.push(format!("GET https://{host}/s?q: {e:#}")),
        }
    }
    if !wrong.is_empty() {
        bed.fail(wrong.join("\n"));
    }
    let force = pods.iter().find(|p| p.name() == "force").unwrap();
    assert!(!force.saw("/some/path"), "a redirected request reached the backend: {:?}", force.request_log());
}

#[tokio::test]
async fn permanent_and_temporal_redirects_and_their_codes() {
    let (mut bed, pods) = bed_with_pods(&["target", "plain"]).expect("bed");
    let ing = |name: &str, host: &str| Ingress::new(name).class("lb").rule(Rule::host(host).prefix("/", "target", P));
    let ingresses = [
        ing("perm", "perm.test").nginx("permanent-redirect", "https://example.com/new"),
        ing("perm-308", "perm308.test")
            .nginx("permanent-redirect", "https://example.com/new308")
            .nginx("permanent-redirect-code", "308"),
        ing("temp", "temp.test").nginx("temporal-redirect", "https://example.com/tmp"),
        ing("temp-307", "temp307.test")
            .nginx("temporal-redirect", "http://example.com/tmp307?a=b")
            .nginx("temporal-redirect-code", "307"),
        ing("both", "both.test")
            .nginx("temporal-redirect", "https://example.com/temporal")
            .nginx("permanent-redirect", "https://example.com/permanent"),
        // Only the redirecting Ingress's routes redirect.
        Ingress::new("mixed-redirect")
            .class("lb")
            .nginx("permanent-redirect", "https://example.com/moved")
            .rule(Rule::host("mixed.test").prefix("/old", "target", P)),
        Ingress::new("mixed-plain").class("lb").rule(Rule::host("mixed.test").prefix("/", "plain", P)),
        Ingress::new("only-old")
            .class("lb")
            .nginx("permanent-redirect", "https://example.com/moved")
            .rule(Rule::host("onlyold.test").prefix("/old", "target", P)),
    ];
    let all: Vec<String> = ingresses.iter().map(Ingress::yaml).collect();
    bed.write("ingresses.yaml", &docs(&all)).unwrap();
    bed.start_lb().await.expect("lb starts");
    // The harness: routes without redirects answer (also today).
    expect_routes(&bed, &[("mixed.test", "/new", 200, Some("plain")), ("onlyold.test", "/other", 404, None)]).await;
    let mut wrong = Vec::new();
    for (host, path, status, location) in [
        ("perm.test", "/", 301, "https://example.com/new"),
        ("perm.test", "/anything/else?x=1", 301, "https://example.com/new"),
        ("perm308.test", "/a", 308, "https://example.com/new308"),
        ("temp.test", "/a?b=c", 302, "https://example.com/tmp"),
        ("temp307.test", "/a", 307, "http://example.com/tmp307?a=b"),
        ("both.test", "/a", 301, "https://example.com/permanent"),
        ("mixed.test", "/old", 301, "https://example.com/moved"),
        ("mixed.test", "/old/x", 301, "https://example.com/moved"),
        ("onlyold.test", "/old", 301, "https://example.com/moved"),
    ] {
        match bed.get(host, path).await {
            Ok(resp) if resp.status == status && resp.header("location") == Some(location) && resp.pod().is_none() => {}
            Ok(resp) => wrong.push(format!("GET {host}{path}: want {status} to {location:?}, got {resp}")),
            Err(e) => wrong.push(format!("GET {host}{path}: {e:#}")),
        }
    }
    if !wrong.is_empty() {
        bed.fail(wrong.join("\n"));
    }
    let target = &pods[0];
    assert!(target.request_log().is_empty(), "redirected requests reached the backend: {:?}", target.request_log());
}

/// One Ingress that must be rejected: its file name, the annotations, the
/// paths (pathType ImplementationSpecific, to pod `bad`), the requests that
/// must get 404, and what its warning names.
struct BadIngress {
    name: &'static str,
    annotations: Vec<(&'static str, String)>,
    paths: Vec<String>,
    requests: Vec<&'static str>,
    needles: Vec<&'static str>,
}

fn bad(name: &'static str, annotations: &[(&'static str, &str)]) -> BadIngress {
    let needles = annotations.iter().map(|(k, _)| *k).collect();
    BadIngress {
        name,
        annotations: annotations.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        paths: vec!["/".into()],
        requests: vec!["/", "/x"],
        needles,
    }
}

fn bad_regex_path(name: &'static str, path: String, requests: Vec<&'static str>) -> BadIngress {
    BadIngress {
        name,
        annotations: vec![("use-regex", "true".into())],
        paths: vec![path],
        requests,
        // The warning is about the path (or use-regex).
        needles: vec!["path", "use-regex"],
    }
}

impl BadIngress {
    /// What the warning must name instead of every annotation's name.
    fn needles(mut self, needles: &[&'static str]) -> Self {
        self.needles = needles.to_vec();
        self
    }

    fn host(&self) -> String {
        format!("{}.test", self.name)
    }

    fn ingress(&self) -> Ingress {
        let mut rule = Rule::host(&self.host());
        for p in &self.paths {
            rule = rule.path(p, IMPL, "bad", P);
        }
        let mut ing = Ingress::new(self.name).class("lb").rule(rule);
        for (k, v) in &self.annotations {
            ing = ing.nginx(k, v);
        }
        ing
    }
}

#[tokio::test]
async fn malformed_annotations_reject_only_their_ingress() {
    let (mut bed, pods) = bed_with_pods(&["good", "bad"]).expect("bed");
    let good = Ingress::new("good").class("lb").rule(Rule::host("good.test").prefix("/", "good", P));
    // A host served by a good Ingress and a rejected one: the good one's
    // routes keep serving it.
    let shared = Ingress::new("shared-good").class("lb").rule(Rule::host("shared.test").prefix("/", "good", P));
    // One malformed Ingress is there from the start: lb starts anyway.
    let at_start = bad("bad-at-start", &[("use-regex", "yes")]);
    bed.ingress("good", &good).unwrap();
    bed.ingress("shared-good", &shared).unwrap();
    bed.ingress(at_start.name, &at_start.ingress()).unwrap();
    bed.start_lb().await.expect("lb starts with a malformed Ingress");
    expect_routes(&bed, &[("good.test", "/", 200, Some("good")), ("shared.test", "/bad", 200, Some("good"))]).await;

    let mib = "a".repeat(1 << 20);
    let long_path = format!("/{}", "a".repeat(100_000));
    let cases = vec![
        bad("bad-use-regex", &[("use-regex", "yes")]),
        bad("bad-rewrite-newline", &[("rewrite-target", "/a\nb")]),
        bad("bad-rewrite-crlf", &[("rewrite-target", "/a\r\nX-Injected: 1")]),
        bad("bad-rewrite-control", &[("rewrite-target", "/a\u{1}b")]),
        bad("bad-rewrite-dollar10", &[("rewrite-target", "/$10")]),
        bad("bad-rewrite-huge", &[("rewrite-target", &format!("/{mib}"))]),
        bad_regex_path("bad-regex-unclosed", "/a(".into(), vec!["/a(", "/a(b", "/"]),
        bad_regex_path("bad-regex-nested", "/(a*)*{1000}".into(), vec!["/aaa", "/"]),
        bad_regex_path("bad-regex-too-big", "/((a{100}){100}){100}".into(), vec!["/a", "/"]),
        bad_regex_path("bad-regex-100k", long_path, vec!["/a", "/"]),
        bad("bad-app-root-relative", &[("app-root", "no-slash")]),
        bad("bad-app-root-dotdot", &[("app-root", "/../etc/passwd")]),
        bad("bad-app-root-scheme", &[("app-root", "https://evil.example/app")]),
        bad("bad-redirect-code", &[("force-ssl-redirect", "true"), ("http-redirect-code", "200")])
            .needles(&["http-redirect-code"]),
        bad("bad-perm-javascript", &[("permanent-redirect", "javascript:alert(1)")]),
        bad("bad-perm-space", &[("permanent-redirect", "https://example.com/a b")]),
        bad("bad-perm-newline", &[("permanent-redirect", "https://example.com/\r\nSet-Cookie: a=1")]),
        bad("bad-perm-ftp", &[("permanent-redirect", "ftp://example.com/file")]),
        bad("bad-temp-javascript", &[("temporal-redirect", "javascript:alert(1)")]),
    ];
    let shared_bad = Ingress::new("shared-bad")
        .class("lb")
        .nginx("use-regex", "yes")
        .rule(Rule::host("shared.test").prefix("/bad", "bad", P));

    let start = Instant::now();
    for c in &cases {
        bed.ingress(c.name, &c.ingress()).unwrap();
    }
    let mut cases = cases;
    cases.push(at_start);
    bed.ingress("shared-bad", &shared_bad).unwrap();
    // Canaries of good.test/ with weight 100 and one bad value each: were
    // one accepted, good.test would reach the bad pod.
    let pattern_bomb = "(a{1000}){1000}";
    let canary_cases: [(&str, &str, &str); 6] = [
        ("bad-canary-weight", "canary-weight", "50;"),
        ("bad-canary-header-newline", "canary-by-header", "X-A\nX-B"),
        ("bad-canary-header-braces", "canary-by-header", "{x}"),
        ("bad-canary-value-quotes", "canary-by-header-value", "\"}; return 200"),
        ("bad-canary-pattern-bomb", "canary-by-header-pattern", pattern_bomb),
        ("bad-canary-cookie-semicolon", "canary-by-cookie", "a;b"),
    ];
    for (name, annotation, value) in canary_cases {
        let canary = Ingress::new(name)
            .class("lb")
            .nginx("canary", "true")
            .nginx("canary-weight", "100")
            .nginx("canary-by-header", "x-canary")
            .nginx(annotation, value)
            .rule(Rule::host("good.test").prefix("/", "bad", P));
        bed.ingress(name, &canary).unwrap();
    }
    // Written last: once it is served, the reload saw every file above.
    let marker = Ingress::new("marker").class("lb").rule(Rule::host("marker.test").prefix("/", "good", P));
    bed.ingress("marker", &marker).unwrap();
    bed.ok(bed.wait_route("marker.test", "/", 200, Some("good")).await);
    let reload = start.elapsed();
    assert!(bed.lb_running(), "lb died:\n{}", bed.logs());

    let mut wrong = Vec::new();
    if reload > RELOAD_TIMEOUT {
        wrong.push(format!("the reload with the malformed Ingresses took {reload:?}"));
    }
    // lb answers within normal time, and the good Ingresses keep serving.
    for path in ["/", "/x", "/a(", "/aaaa"] {
        let t = Instant::now();
        match bed.route("good.test", path).await {
            Ok((200, Some(p))) if p == "good" => {}
            other => wrong.push(format!("GET good.test{path}: want 200 from good, got {other:?}")),
        }
        if t.elapsed() > Duration::from_secs(2) {
            wrong.push(format!("GET good.test{path} took {:?}", t.elapsed()));
        }
    }
    for (path, want) in [("/bad", (200, Some("good"))), ("/", (200, Some("good")))] {
        match bed.route("shared.test", path).await {
            Ok((s, p)) if (s, p.as_deref()) == want => {}
            other => {
                wrong.push(format!("GET shared.test{path}: want {want:?} (shared-bad is rejected), got {other:?}"))
            }
        }
    }
    // The rejected Ingresses' hosts get the 404 default backend.
    for c in &cases {
        for path in &c.requests {
            match bed.route(&c.host(), path).await {
                Ok((404, None)) => {}
                other => wrong.push(format!("{}: GET {}{path}: want 404 (rejected), got {other:?}", c.name, c.host())),
            }
        }
    }
    // Each rejection is logged, naming the Ingress and the annotation.
    let mut expected: Vec<ExpectedWarning> = cases
        .iter()
        .map(|c| ExpectedWarning { ingress: c.name.into(), needles: c.needles.iter().map(|n| n.to_string()).collect() })
        .collect();
    expected.push(ExpectedWarning { ingress: "shared-bad".into(), needles: vec!["use-regex".into()] });
    for (name, annotation, _) in canary_cases {
        expected.push(ExpectedWarning { ingress: name.into(), needles: vec![format!("{annotation}]")] });
    }
    for missing in wait_warnings(&bed, &expected, RELOAD_TIMEOUT).await {
        wrong.push(format!("no warning naming Ingress default/{} and one of {:?}", missing.ingress, missing.needles));
    }
    let bad_pod = &pods[1];
    if !bad_pod.request_log().is_empty() {
        wrong.push(format!("rejected Ingresses' backend got requests: {:?}", bad_pod.request_log()));
    }
    assert!(bed.lb_running(), "lb died:\n{}", bed.logs());
    if !wrong.is_empty() {
        let output = lb_output(&bed);
        panic!("{}\n---- lb output (tail) ----\n{}", wrong.join("\n"), tail_of(&output, 24 * 1024));
    }

    // Fixing an Ingress brings it back.
    let fixed = Ingress::new("bad-use-regex")
        .class("lb")
        .nginx("use-regex", "true")
        .rule(Rule::host("bad-use-regex.test").path("/", IMPL, "bad", P));
    bed.ingress("bad-use-regex", &fixed).unwrap();
    bed.ok(bed.wait_route("bad-use-regex.test", "/x", 200, Some("bad")).await);
    expect_routes(&bed, &[("good.test", "/", 200, Some("good"))]).await;
}

#[tokio::test]
async fn unknown_annotations_are_ignored() {
    let (mut bed, _pods) = bed_with_pods(&["web", "regex"]).expect("bed");
    let unknown = [
        ("whatever", "x"),
        ("configuration-snippet", "more_set_headers \"X-Snippet: injected\";"),
        ("server-snippet", "location /evil { return 200 'evil'; }"),
        ("session-cookie-name", "route"),
        ("affinity", "cookie"),
    ];
    let mut plain = Ingress::new("unknown").class("lb").rule(Rule::host("unknown.test").prefix("/app", "web", P));
    // Other prefixes' annotations of the same names mean nothing either.
    plain = plain.annotation("example.com/rewrite-target", "/elsewhere");
    for (k, v) in unknown {
        plain = plain.nginx(k, v);
    }
    let mut with_known = Ingress::new("unknown-and-regex")
        .class("lb")
        .nginx("use-regex", "true")
        .rule(Rule::host("mixed.test").path("/r[0-9]", IMPL, "regex", P));
    for (k, v) in unknown {
        with_known = with_known.nginx(k, v);
    }
    bed.write("ingresses.yaml", &docs(&[plain.yaml(), with_known.yaml()])).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_upstream(&bed, &[("unknown.test", "/app/x?y=1", "web", "/app/x?y=1")]).await;
    let resp = bed.ok(bed.get("unknown.test", "/app").await);
    assert!(resp.header("x-snippet").is_none(), "a snippet was applied: {resp}");
    expect_routes(&bed, &[("unknown.test", "/evil", 404, None), ("unknown.test", "/", 404, None)]).await;
    // Known annotations next to unknown ones still apply.
    expect_routes(&bed, &[("mixed.test", "/r7", 200, Some("regex")), ("mixed.test", "/R7/x", 200, Some("regex"))])
        .await;
    let output = lb_output(&bed);
    assert!(!output.contains("panicked"), "{}", tail_of(&output, 8192));
    assert!(bed.lb_running());
}
