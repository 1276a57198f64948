//! Canary Ingresses (`nginx.ingress.kubernetes.io/canary: "true"`) through
//! `lb run --no-xdp`: header, then cookie, then weight, as ingress-nginx
//! evaluates them; the route keeps its own Ingress's policy; an affinity
//! cookie keeps a client on whichever side it landed; a canary without a
//! main route serves nothing; removing the canary ends it.

use std::time::Duration;

use lb_testbed::l7::annotations::{ExpectedWarning, NginxAnnotations, bed_with_pods, expect_upstream, wait_warnings};
use lb_testbed::l7::{Ingress, L7Bed, Req, Rule, SERVICE_PORT, docs};

const P: u16 = SERVICE_PORT;

fn main_ingress(name: &str, host: &str, service: &str) -> Ingress {
    Ingress::new(name).class("lb").rule(Rule::host(host).prefix("/", service, P))
}

fn canary(name: &str, host: &str, service: &str) -> Ingress {
    main_ingress(name, host, service).nginx("canary", "true")
}

/// The pod answering `req`.
async fn pod(bed: &L7Bed, req: &Req) -> String {
    let r = bed.ok(bed.send(req).await);
    assert_eq!(r.status, 200, "{req:?}: {r:?}");
    r.pod().unwrap_or_else(|| bed.fail(format!("{req:?}: no pod answered: {r:?}")))
}

/// Sends `req` `n` times; how many reached `pod`.
async fn count(bed: &L7Bed, req: &Req, pod_name: &str, n: usize) -> usize {
    let mut hits = 0;
    for _ in 0..n {
        if pod(bed, req).await == pod_name {
            hits += 1;
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_then_cookie_then_weight() {
    let (mut bed, _pods) = bed_with_pods(&["stable", "canary"]).expect("bed");
    let order = canary("order-canary", "order.test", "canary")
        .nginx("canary-by-header", "X-Canary")
        .nginx("canary-by-cookie", "use_canary")
        .nginx("canary-weight", "0");
    let by_value = canary("value-canary", "value.test", "canary")
        .nginx("canary-by-header", "X-Version")
        .nginx("canary-by-header-value", "v2")
        .nginx("canary-by-cookie", "use_canary");
    let by_pattern = canary("pattern-canary", "pattern.test", "canary")
        .nginx("canary-by-header", "X-Version")
        .nginx("canary-by-header-pattern", "^(beta|v[3-9])$");
    let all = [
        main_ingress("order", "order.test", "stable"),
        main_ingress("value", "value.test", "stable"),
        main_ingress("pattern", "pattern.test", "stable"),
        order,
        by_value,
        by_pattern,
    ];
    bed.write("ingresses.yaml", &docs(&all.iter().map(Ingress::yaml).collect::<Vec<_>>())).unwrap();
    bed.start_lb().await.expect("lb starts");

    let get = |host: &str| Req::get("/").host(host);
    let cases: Vec<(Req, &str)> = vec![
        // Weight 0: nothing without header or cookie.
        (get("order.test"), "stable"),
        (get("order.test").header("x-canary", "always"), "canary"),
        (get("order.test").header("x-canary", "never"), "stable"),
        // The header decides before the cookie ...
        (get("order.test").header("x-canary", "never").header("cookie", "use_canary=always"), "stable"),
        (get("order.test").header("x-canary", "always").header("cookie", "use_canary=never"), "canary"),
        // ... unless its value is neither always nor never.
        (get("order.test").header("x-canary", "maybe").header("cookie", "use_canary=always"), "canary"),
        (get("order.test").header("cookie", "a=b; use_canary=always"), "canary"),
        (get("order.test").header("cookie", "use_canary=never"), "stable"),
        (get("order.test").header("cookie", "use_canary=yes"), "stable"),
        // canary-by-header-value: that value only; "always" means nothing.
        (get("value.test").header("x-version", "v2"), "canary"),
        (get("value.test").header("x-version", "always"), "stable"),
        (get("value.test").header("x-version", "V2"), "stable"),
        // A mismatch goes on to the cookie.
        (get("value.test").header("x-version", "v1").header("cookie", "use_canary=always"), "canary"),
        // canary-by-header-pattern.
        (get("pattern.test").header("x-version", "beta"), "canary"),
        (get("pattern.test").header("x-version", "v7"), "canary"),
        (get("pattern.test").header("x-version", "v2"), "stable"),
        (get("pattern.test").header("x-version", "beta2"), "stable"),
    ];
    let mut wrong = Vec::new();
    for (req, want) in &cases {
        for _ in 0..3 {
            let got = pod(&bed, req).await;
            if got != *want {
                wrong.push(format!("{req:?}: want {want}, got {got}"));
                break;
            }
        }
    }
    if !wrong.is_empty() {
        bed.fail(format!("{} of {} cases wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_splits_traffic_and_the_route_keeps_its_policy() {
    let (mut bed, _pods) = bed_with_pods(&["stable", "canary"]).expect("bed");
    let all =
        [
            main_ingress("w30", "w30.test", "stable"),
            canary("w30-canary", "w30.test", "canary").nginx("canary-weight", "30"),
            main_ingress("w100", "w100.test", "stable"),
            canary("w100-canary", "w100.test", "canary").nginx("canary-weight", "100"),
            main_ingress("total", "total.test", "stable"),
            canary("total-canary", "total.test", "canary")
                .nginx("canary-weight", "999")
                .nginx("canary-weight-total", "1000"),
            // The main Ingress rewrites; its canary's own rewrite means nothing.
            Ingress::new("rewrite")
                .class("lb")
                .nginx("rewrite-target", "/v2/$1")
                .rule(Rule::host("rewrite.test").path("/api/(.*)", "ImplementationSpecific", "stable", P)),
            Ingress::new("rewrite-canary")
                .class("lb")
                .nginx("canary", "true")
                .nginx("canary-weight", "100")
                .nginx("rewrite-target", "/ignored")
                .rule(Rule::host("rewrite.test").path("/api/(.*)", "ImplementationSpecific", "canary", P)),
        ];
    bed.write("ingresses.yaml", &docs(&all.iter().map(Ingress::yaml).collect::<Vec<_>>())).unwrap();
    bed.start_lb().await.expect("lb starts");

    let n = 200;
    let w30 = count(&bed, &Req::get("/").host("w30.test"), "canary", n).await;
    // Binomial(200, 0.3): mean 60, sd 6.5; 30..=90 is more than 4.5 sd.
    assert!((30..=90).contains(&w30), "weight 30: {w30} of {n} went to the canary");
    assert_eq!(count(&bed, &Req::get("/").host("w100.test"), "canary", 50).await, 50, "weight 100");
    let total = count(&bed, &Req::get("/").host("total.test"), "canary", 100).await;
    assert!(total >= 95, "999 of 1000: {total} of 100 went to the canary");
    expect_upstream(&bed, &[("rewrite.test", "/api/users?x=1", "canary", "/v2/users?x=1")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_affinity_cookie_keeps_the_client_on_its_side() {
    let mut bed = L7Bed::new().unwrap();
    let stable = [bed.echo("stable-a").unwrap(), bed.echo("stable-b").unwrap()];
    let canary_pods = [bed.echo("canary-a").unwrap(), bed.echo("canary-b").unwrap()];
    bed.service("stable", &[&stable[0], &stable[1]]).unwrap();
    bed.service("canary", &[&canary_pods[0], &canary_pods[1]]).unwrap();
    let main = main_ingress("sticky", "sticky.test", "stable")
        .nginx("affinity", "cookie")
        .nginx("session-cookie-name", "route");
    let canary = canary("sticky-canary", "sticky.test", "canary").nginx("canary-weight", "50");
    bed.write("ingresses.yaml", &docs(&[main.yaml(), canary.yaml()])).unwrap();
    bed.start_lb().await.expect("lb starts");

    let mut sides = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let first = bed.ok(bed.get("sticky.test", "/").await);
        let pod = first.pod().unwrap();
        let set_cookie = first.header("set-cookie").unwrap_or_else(|| bed.fail(format!("a cookie: {first:?}")));
        let cookie = set_cookie.split(';').next().unwrap().trim().to_string();
        sides.insert(pod.split('-').next().unwrap().to_string());
        let req = Req::get("/").host("sticky.test").header("cookie", &cookie);
        assert_eq!(count(&bed, &req, &pod, 10).await, 10, "the cookie of {pod} keeps the client there");
    }
    // 12 first requests at 50 %: both sides (all on one side: p = 2^-11).
    assert_eq!(sides.len(), 2, "first requests reached {sides:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_alone_serves_nothing_and_removing_it_ends_it() {
    let (mut bed, _pods) = bed_with_pods(&["stable", "canary"]).expect("bed");
    let orphan = canary("orphan", "orphan.test", "canary").nginx("canary-weight", "100");
    bed.write("orphan.yaml", &orphan.yaml()).unwrap();
    bed.write("main.yaml", &main_ingress("main", "main.test", "stable").yaml()).unwrap();
    bed.write("canary.yaml", &canary("main-canary", "main.test", "canary").nginx("canary-weight", "100").yaml())
        .unwrap();
    bed.start_lb().await.expect("lb starts");
    let warned = ExpectedWarning {
        ingress: "orphan".into(),
        needles: vec!["no Ingress routes host orphan.test".into(), "the canary path is not used".into()],
    };
    let missing = wait_warnings(&bed, &[warned], Duration::from_secs(5)).await;
    assert!(missing.is_empty(), "lb warns about the orphan canary: {missing:?}");
    bed.ok(bed.wait_route("orphan.test", "/", 404, None).await);
    bed.ok(bed.wait_route("main.test", "/", 200, Some("canary")).await);
    bed.remove("canary.yaml").unwrap();
    bed.ok(bed.wait_route("main.test", "/", 200, Some("stable")).await);
    assert_eq!(count(&bed, &Req::get("/").host("main.test"), "stable", 20).await, 20);
}
