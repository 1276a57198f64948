//! Ingress routing through `lb run --no-xdp`: path types, longest match,
//! hosts (exact, wildcard, none), default backends, service ports by number
//! and name, balancing over ready endpoints, IngressClass filtering.

use std::collections::BTreeMap;

use lb_testbed::l7::{
    Conn, ECHO_PORT, EchoPod, EndpointSlice, Ingress, L7Bed, LbOptions, Req, Rule, SERVICE_PORT, Service, docs,
    ingress_class,
};

/// One Service per pod, named like the pod.
fn bed_with_pods(names: &[&str]) -> (L7Bed, Vec<EchoPod>) {
    let mut bed = L7Bed::new().expect("bed");
    let pods: Vec<EchoPod> = names.iter().map(|n| bed.echo(n).expect("echo pod")).collect();
    for pod in &pods {
        bed.service(pod.name(), &[pod]).expect("service");
    }
    (bed, pods)
}

async fn expect_routes(bed: &L7Bed, cases: &[(&str, &str, u16, Option<&str>)]) {
    let mut wrong = Vec::new();
    for (host, path, status, pod) in cases {
        let got = bed.ok(bed.route(host, path).await);
        if got != (*status, pod.map(str::to_string)) {
            wrong.push(format!("GET {host}{path}: want {status} {pod:?}, got {} {:?}", got.0, got.1));
        }
    }
    if !wrong.is_empty() {
        bed.fail(wrong.join("\n"));
    }
}

#[tokio::test]
async fn path_types_and_longest_match() {
    let (mut bed, _pods) = bed_with_pods(&["exact", "prefix", "deep", "impl", "root"]);
    let ing = Ingress::new("paths").class("lb").rule(
        Rule::host("a.com")
            .exact("/foo", "exact", SERVICE_PORT)
            .prefix("/foo", "prefix", SERVICE_PORT)
            .prefix("/foo/bar/", "deep", SERVICE_PORT)
            .path("/impl", "ImplementationSpecific", "impl", SERVICE_PORT)
            .prefix("/", "root", SERVICE_PORT),
    );
    bed.ingress("paths", &ing).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_routes(
        &bed,
        &[
            ("a.com", "/foo", 200, Some("exact")),
            ("a.com", "/foo?x=1", 200, Some("exact")),
            ("a.com", "/foo/", 200, Some("prefix")),
            ("a.com", "/foo/x", 200, Some("prefix")),
            ("a.com", "/foobar", 200, Some("root")),
            ("a.com", "/FOO", 200, Some("root")),
            ("a.com", "/Foo/x", 200, Some("root")),
            ("a.com", "/foo/bar", 200, Some("deep")),
            ("a.com", "/foo/bar/", 200, Some("deep")),
            ("a.com", "/foo/bar/baz", 200, Some("deep")),
            ("a.com", "/foo/barn", 200, Some("prefix")),
            ("a.com", "/impl", 200, Some("impl")),
            ("a.com", "/impl/x", 200, Some("impl")),
            ("a.com", "/implx", 200, Some("root")),
            ("a.com", "/", 200, Some("root")),
        ],
    )
    .await;
}

#[tokio::test]
async fn exact_path_is_whole_path_and_case_sensitive() {
    let (mut bed, _pods) = bed_with_pods(&["exact"]);
    let ing = Ingress::new("exact").class("lb").rule(Rule::host("a.com").exact("/foo", "exact", SERVICE_PORT));
    bed.ingress("exact", &ing).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_routes(
        &bed,
        &[
            ("a.com", "/foo", 200, Some("exact")),
            ("a.com", "/foo/", 404, None),
            ("a.com", "/foo/bar", 404, None),
            ("a.com", "/Foo", 404, None),
            ("a.com", "/fo", 404, None),
        ],
    )
    .await;
}

#[tokio::test]
async fn hosts_exact_wildcard_and_hostless_rules() {
    let (mut bed, _pods) = bed_with_pods(&["host-a", "wild", "hostless", "host-b"]);
    let ing = Ingress::new("hosts")
        .class("lb")
        .rule(Rule::host("a.com").prefix("/", "host-a", SERVICE_PORT))
        .rule(Rule::host("*.foo.com").prefix("/", "wild", SERVICE_PORT))
        .rule(Rule::host("b.com").prefix("/only", "host-b", SERVICE_PORT))
        .rule(Rule::any_host().prefix("/common", "hostless", SERVICE_PORT));
    bed.ingress("hosts", &ing).unwrap();
    bed.start_lb().await.expect("lb starts");
    let lb_port = bed.http_addr().port();
    let a_with_port = format!("a.com:{lb_port}");
    expect_routes(
        &bed,
        &[
            ("a.com", "/", 200, Some("host-a")),
            ("a.com", "/common", 200, Some("host-a")),
            (&a_with_port, "/x", 200, Some("host-a")),
            ("A.COM", "/x", 200, Some("host-a")),
            ("x.foo.com", "/", 200, Some("wild")),
            ("other.foo.com", "/deep/path", 200, Some("wild")),
            ("a.b.foo.com", "/", 404, None),
            ("foo.com", "/", 404, None),
            ("xfoo.com", "/", 404, None),
            ("other.com", "/common/x", 200, Some("hostless")),
            ("other.com", "/common", 200, Some("hostless")),
            ("a.b.foo.com", "/common", 200, Some("hostless")),
            ("other.com", "/", 404, None),
            ("b.com", "/only", 200, Some("host-b")),
            // A host with rules does not fall back to the host-less rules.
            ("b.com", "/common", 404, None),
        ],
    )
    .await;
}

#[tokio::test]
async fn default_backend_serves_unmatched_paths_and_builtin_404_otherwise() {
    let (mut bed, _pods) = bed_with_pods(&["host-a", "fallback", "catchall"]);
    let with_default = Ingress::new("with-default")
        .class("lb")
        .default_backend("fallback", SERVICE_PORT)
        .rule(Rule::host("a.com").prefix("/a", "host-a", SERVICE_PORT));
    bed.ingress("with-default", &with_default).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_routes(&bed, &[("a.com", "/a/x", 200, Some("host-a")), ("a.com", "/zzz", 200, Some("fallback"))]).await;

    // Without a defaultBackend: unmatched requests get the built-in 404.
    let plain = Ingress::new("with-default").class("lb").rule(Rule::host("a.com").prefix("/a", "host-a", SERVICE_PORT));
    bed.ingress("with-default", &plain).unwrap();
    bed.ok(bed.wait_route("a.com", "/zzz", 404, None).await);
    let resp = bed.ok(bed.get("unknown.test", "/").await);
    assert_eq!(resp.status, 404, "{resp}");
    assert!(resp.pod().is_none(), "built-in backend, not an echo pod: {resp}");

    // An Ingress with only a defaultBackend catches everything.
    bed.ingress("catchall", &Ingress::new("catchall").class("lb").default_backend("catchall", SERVICE_PORT)).unwrap();
    bed.ok(bed.wait_route("unknown.test", "/x", 200, Some("catchall")).await);
}

#[tokio::test]
async fn backends_by_port_number_and_port_name() {
    let mut bed = L7Bed::new().unwrap();
    let num = bed.echo("by-number").unwrap();
    let named = bed.echo("by-name").unwrap();
    let target = bed.echo("named-target").unwrap();
    // "multi" has two ports: http (80 -> 8080, where the pod listens) and
    // other (81 -> 9090, where nothing listens).
    let multi_pod = bed.echo("multi").unwrap();
    let objects = docs(&[
        Service::new("num").port("http", SERVICE_PORT, ECHO_PORT).yaml(),
        EndpointSlice::new("num").port("http", ECHO_PORT).endpoint(num.ip(), true).yaml(),
        Service::new("named").port("web", 8888, ECHO_PORT).yaml(),
        EndpointSlice::new("named").port("web", ECHO_PORT).endpoint(named.ip(), true).yaml(),
        Service::new("target").port_named_target("http", SERVICE_PORT, "echo-port").yaml(),
        EndpointSlice::new("target").port("echo-port", ECHO_PORT).endpoint(target.ip(), true).yaml(),
        Service::new("multi").port("http", SERVICE_PORT, ECHO_PORT).port("other", 81, 9090).yaml(),
        EndpointSlice::new("multi").port("http", ECHO_PORT).port("other", 9090).endpoint(multi_pod.ip(), true).yaml(),
    ]);
    bed.write("services.yaml", &objects).unwrap();
    let ing = Ingress::new("ports").class("lb").rule(
        Rule::host("a.com")
            .prefix("/num", "num", SERVICE_PORT)
            .prefix("/named", "named", "web")
            .prefix("/target", "target", SERVICE_PORT)
            .prefix("/multi-http", "multi", "http")
            .prefix("/multi-80", "multi", SERVICE_PORT)
            .prefix("/multi-other", "multi", "other")
            .prefix("/multi-81", "multi", 81),
    );
    bed.ingress("ports", &ing).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_routes(
        &bed,
        &[
            ("a.com", "/num", 200, Some("by-number")),
            ("a.com", "/named", 200, Some("by-name")),
            ("a.com", "/target", 200, Some("named-target")),
            ("a.com", "/multi-http", 200, Some("multi")),
            ("a.com", "/multi-80", 200, Some("multi")),
            // Port "other" resolves to 9090 on the pod, where nothing listens.
            ("a.com", "/multi-other", 502, None),
            ("a.com", "/multi-81", 502, None),
        ],
    )
    .await;
}

#[tokio::test]
async fn requests_balance_over_ready_endpoints_only() {
    let mut bed = L7Bed::new().unwrap();
    let a = bed.echo("ready-a").unwrap();
    let b = bed.echo("ready-b").unwrap();
    let c = bed.echo("not-ready-c").unwrap();
    let objects = docs(&[
        Service::new("web").port("http", SERVICE_PORT, ECHO_PORT).yaml(),
        EndpointSlice::new("web").port("http", ECHO_PORT).endpoint(a.ip(), true).endpoint(c.ip(), false).yaml(),
        EndpointSlice::new("web").port("http", ECHO_PORT).endpoint(b.ip(), true).yaml(),
    ]);
    bed.write("web.yaml", &objects).unwrap();
    bed.ingress("web", &Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT)))
        .unwrap();
    bed.start_lb().await.expect("lb starts");
    let mut hits: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..40 {
        let resp = bed.ok(bed.get("a.com", &format!("/r{i}")).await);
        assert_eq!(resp.status, 200, "{resp}");
        *hits.entry(resp.pod().unwrap_or_default()).or_default() += 1;
    }
    assert!(hits.get("ready-a").is_some_and(|n| *n > 0), "{hits:?}");
    assert!(hits.get("ready-b").is_some_and(|n| *n > 0), "{hits:?}");
    assert_eq!(hits.len(), 2, "only ready endpoints get traffic: {hits:?}");
    // Balanced per request, also on one kept-alive client connection.
    let mut conn = bed.ok(Conn::h1(bed.http_addr()).await);
    let mut on_one_conn: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..40 {
        let resp = bed.ok(conn.send(&Req::get(&format!("/k{i}")).host("a.com")).await);
        *on_one_conn.entry(resp.pod().unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(on_one_conn.len(), 2, "40 requests on one connection: {on_one_conn:?}");
    assert!(!c.saw("/r") && !c.saw("/k"), "the not-ready pod got requests: {:?}", c.request_log());
}

#[tokio::test]
async fn ingress_class_filtering() {
    let (mut bed, _pods) = bed_with_pods(&["web"]);
    let ours = "lb.dev/ingress-controller";
    bed.write(
        "classes.yaml",
        &docs(&[ingress_class("lb-x", ours, false), ingress_class("other", "example.com/other", false)]),
    )
    .unwrap();
    let rule = |host: &str| Rule::host(host).prefix("/", "web", SERVICE_PORT);
    let ingresses = [
        Ingress::new("by-default-name").class("lb").rule(rule("c1.test")),
        Ingress::new("by-class").class("lb-x").rule(rule("c2.test")),
        Ingress::new("by-annotation").annotation("kubernetes.io/ingress.class", "lb-x").rule(rule("c3.test")),
        Ingress::new("other-class").class("other").rule(rule("c4.test")),
        Ingress::new("no-class").rule(rule("c5.test")),
        Ingress::new("other-annotation").annotation("kubernetes.io/ingress.class", "other").rule(rule("c6.test")),
        Ingress::new("unknown-class").class("nope").rule(rule("c7.test")),
        Ingress::new("default-name-annotation").annotation("kubernetes.io/ingress.class", "lb").rule(rule("c8.test")),
    ];
    let all: Vec<String> = ingresses.iter().map(Ingress::yaml).collect();
    bed.write("ingresses.yaml", &docs(&all)).unwrap();
    bed.start_lb().await.expect("lb starts");
    expect_routes(
        &bed,
        &[
            ("c1.test", "/", 200, Some("web")),
            ("c2.test", "/", 200, Some("web")),
            ("c3.test", "/", 200, Some("web")),
            ("c4.test", "/", 404, None),
            ("c5.test", "/", 404, None),
            ("c6.test", "/", 404, None),
            ("c7.test", "/", 404, None),
            ("c8.test", "/", 200, Some("web")),
        ],
    )
    .await;
    // Marking our IngressClass as the default adopts Ingresses without class.
    bed.write(
        "classes.yaml",
        &docs(&[ingress_class("lb-x", ours, true), ingress_class("other", "example.com/other", false)]),
    )
    .unwrap();
    bed.ok(bed.wait_route("c5.test", "/", 200, Some("web")).await);
    expect_routes(&bed, &[("c4.test", "/", 404, None), ("c6.test", "/", 404, None)]).await;
    // Another controller's default class does not make them ours.
    bed.write(
        "classes.yaml",
        &docs(&[ingress_class("lb-x", ours, false), ingress_class("other", "example.com/other", true)]),
    )
    .unwrap();
    bed.ok(bed.wait_route("c5.test", "/", 404, None).await);
}

#[tokio::test]
async fn custom_ingress_class_and_controller_name() {
    let (mut bed, _pods) = bed_with_pods(&["web"]);
    let rule = |host: &str| Rule::host(host).prefix("/", "web", SERVICE_PORT);
    bed.write(
        "objects.yaml",
        &docs(&[
            ingress_class("mine-by-controller", "example.com/mine", false),
            Ingress::new("mine").class("mine").rule(rule("mine.test")).yaml(),
            Ingress::new("by-controller").class("mine-by-controller").rule(rule("ctl.test")).yaml(),
            Ingress::new("lb").class("lb").rule(rule("lb.test")).yaml(),
        ]),
    )
    .unwrap();
    let opts = LbOptions {
        ingress_class: Some("mine".into()),
        controller_name: Some("example.com/mine".into()),
        ..LbOptions::default()
    };
    bed.start_lb_with(opts).await.expect("lb starts");
    expect_routes(
        &bed,
        &[("mine.test", "/", 200, Some("web")), ("ctl.test", "/", 200, Some("web")), ("lb.test", "/", 404, None)],
    )
    .await;
}

#[tokio::test]
async fn readyz_and_healthz() {
    let mut bed = L7Bed::new().unwrap();
    bed.start_lb().await.expect("lb starts");
    for path in ["/readyz", "/healthz"] {
        let resp = bed.ok(lb_testbed::l7::send_h1(bed.admin_addr(), &lb_testbed::l7::Req::get(path)).await);
        assert_eq!(resp.status, 200, "{path}: {resp}");
    }
    // An empty configuration still answers: the built-in 404.
    assert_eq!(bed.ok(bed.route("a.com", "/").await), (404, None));
}
