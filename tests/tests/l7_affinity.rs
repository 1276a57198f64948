//! Cookie affinity (`nginx.ingress.kubernetes.io/affinity: cookie`) through
//! `lb run --no-xdp`: the same client keeps reaching the same pod while it
//! is ready; without the cookie requests spread; when the pod goes, the
//! client is moved and gets a new cookie.

use std::collections::BTreeSet;

use lb_testbed::l7::{EndpointSlice, Ingress, L7Bed, Req, Rule, Service, docs};

const HOST: &str = "sticky.test";

fn ingress() -> Ingress {
    Ingress::new("sticky")
        .class("lb")
        .annotation("nginx.ingress.kubernetes.io/affinity", "cookie")
        .annotation("nginx.ingress.kubernetes.io/session-cookie-name", "route")
        .annotation("nginx.ingress.kubernetes.io/session-cookie-max-age", "3600")
        .annotation("nginx.ingress.kubernetes.io/session-cookie-samesite", "Strict")
        .rule(Rule::host(HOST).prefix("/", "web", 80))
}

/// `route=TOKEN` from a `Set-Cookie` value.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_keeps_a_client_on_its_pod_until_the_pod_goes() {
    let mut bed = L7Bed::new().unwrap();
    let pods = [bed.echo("pod-a").unwrap(), bed.echo("pod-b").unwrap(), bed.echo("pod-c").unwrap()];
    bed.service("web", &[&pods[0], &pods[1], &pods[2]]).unwrap();
    bed.ingress("sticky", &ingress()).unwrap();
    bed.start_lb().await.unwrap();

    // Without a cookie: spread, and each answer sets one.
    let mut spread = BTreeSet::new();
    let mut first = None;
    for _ in 0..30 {
        let r = bed.ok(bed.get(HOST, "/").await);
        assert_eq!(r.status, 200);
        let set_cookie = r.header("set-cookie").unwrap_or_else(|| panic!("a Set-Cookie: {r:?}")).to_string();
        assert!(set_cookie.starts_with("route="), "{set_cookie}");
        for attribute in ["Path=/", "HttpOnly", "Max-Age=3600", "SameSite=Strict"] {
            assert!(set_cookie.contains(attribute), "{set_cookie} lacks {attribute}");
        }
        spread.insert(r.pod().unwrap());
        first.get_or_insert((r.pod().unwrap(), cookie_pair(&set_cookie)));
    }
    assert!(spread.len() >= 2, "without the cookie requests spread: {spread:?}");

    // With it: always the same pod, and no new cookie.
    let (pod, cookie) = first.unwrap();
    for _ in 0..20 {
        let r = bed.ok(bed.send(&Req::get("/").host(HOST).header("cookie", &format!("a=1; {cookie}"))).await);
        assert_eq!(r.pod().as_deref(), Some(pod.as_str()), "the cookie pins {pod}");
        assert_eq!(r.header("set-cookie"), None, "a valid cookie is not re-issued");
    }

    // The pod leaves the Service: the client is moved and gets a new cookie.
    let remaining: Vec<_> = pods.iter().filter(|p| p.name() != pod).collect();
    let slice = EndpointSlice::named("web-1", "web").port("http", 8080);
    let slice = remaining.iter().fold(slice, |s, p| s.endpoint(p.ip(), true));
    let service = Service::new("web").port("http", 80, 8080);
    bed.write("svc-web.yaml", &docs(&[service.yaml(), slice.yaml()])).unwrap();
    let mut moved = None;
    for _ in 0..100 {
        let r = bed.ok(bed.send(&Req::get("/").host(HOST).header("cookie", &cookie)).await);
        if r.pod().as_deref() != Some(pod.as_str()) {
            moved = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let moved = moved.unwrap_or_else(|| bed.fail(format!("the client is never moved off {pod}")));
    let new_cookie = cookie_pair(moved.header("set-cookie").expect("a new cookie for the new pod"));
    assert_ne!(new_cookie, cookie);
    let new_pod = moved.pod().unwrap();
    for _ in 0..10 {
        let r = bed.ok(bed.send(&Req::get("/").host(HOST).header("cookie", &new_cookie)).await);
        assert_eq!(r.pod().as_deref(), Some(new_pod.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_affinity_annotation_rejects_only_its_ingress() {
    let mut bed = L7Bed::new().unwrap();
    let pod = bed.echo("pod-a").unwrap();
    bed.service("web", &[&pod]).unwrap();
    let bad = ingress().annotation("nginx.ingress.kubernetes.io/session-cookie-name", "ro;ute");
    bed.ingress("sticky", &bad).unwrap();
    bed.ingress("plain", &Ingress::new("plain").class("lb").rule(Rule::host("plain.test").prefix("/", "web", 80)))
        .unwrap();
    bed.start_lb().await.unwrap();
    bed.ok(bed.wait_route("plain.test", "/", 200, Some("pod-a")).await);
    bed.ok(bed.wait_route(HOST, "/", 404, None).await);
    let logs = bed.logs();
    assert!(
        logs.contains("Ingress default/sticky")
            && logs.contains("session-cookie-name")
            && logs.contains("not a cookie name"),
        "the rejection is logged:\n{logs}"
    );
}
