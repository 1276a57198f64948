//! Hot reload: manifest changes apply without restarting lb, and requests
//! in flight during a change complete.

use std::time::{Duration, Instant};

use lb_testbed::l7::{Conn, ECHO_PORT, EndpointSlice, Ingress, L7Bed, Req, Rule, SERVICE_PORT, Service, docs};

#[tokio::test]
async fn manifest_changes_apply_without_restart() {
    let mut bed = L7Bed::new().unwrap();
    let a = bed.echo("pod-a").unwrap();
    let b = bed.echo("pod-b").unwrap();
    bed.service("web", &[&a]).unwrap();
    let ing = |host: &str| Ingress::new("web").class("lb").rule(Rule::host(host).prefix("/", "web", SERVICE_PORT));
    bed.ingress("web", &ing("a.com")).unwrap();
    bed.start_lb().await.expect("lb starts");
    assert_eq!(bed.ok(bed.route("a.com", "/").await), (200, Some("pod-a".into())));

    // Endpoints change: pod-b replaces pod-a.
    bed.service("web", &[&b]).unwrap();
    bed.ok(bed.wait_route("a.com", "/", 200, Some("pod-b")).await);
    for _ in 0..10 {
        assert_eq!(bed.ok(bed.route("a.com", "/").await), (200, Some("pod-b".into())), "pod-a is gone");
    }
    // The Ingress moves to another host.
    bed.ingress("web", &ing("new.com")).unwrap();
    bed.ok(bed.wait_route("new.com", "/", 200, Some("pod-b")).await);
    assert_eq!(bed.ok(bed.route("a.com", "/").await).0, 404);
    // The Ingress is removed.
    bed.remove("ing-web.yaml").unwrap();
    bed.ok(bed.wait_route("new.com", "/", 404, None).await);
    // A file that does not parse leaves the rest working.
    bed.ingress("web", &ing("a.com")).unwrap();
    bed.write("broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: [not, a, map\n").unwrap();
    bed.ok(bed.wait_route("a.com", "/", 200, Some("pod-b")).await);
    assert!(bed.lb_running());
}

#[tokio::test]
async fn in_flight_requests_complete_during_a_change() {
    let mut bed = L7Bed::new().unwrap();
    let a = bed.echo("pod-a").unwrap();
    let b = bed.echo("pod-b").unwrap();
    bed.service("svc-a", &[&a]).unwrap();
    bed.service("svc-b", &[&b]).unwrap();
    let ing = |svc: &str| Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", svc, SERVICE_PORT));
    bed.ingress("web", &ing("svc-a")).unwrap();
    bed.start_lb().await.expect("lb starts");

    // Two slow requests on their own connections (HTTP/1.1 and h2c), and a
    // kept-alive connection used again after the change.
    let addr = bed.http_addr();
    let slow = Req::get("/__echo/slow?ms=4000").host("a.com").timeout(Duration::from_secs(10));
    let h1 = tokio::spawn({
        let slow = slow.clone();
        async move { lb_testbed::l7::send_h1(addr, &slow).await }
    });
    let h2 = tokio::spawn({
        let slow = slow.clone();
        async move { lb_testbed::l7::send_h2c(addr, &slow).await }
    });
    let mut kept = bed.ok(Conn::h1(addr).await);
    assert_eq!(bed.ok(kept.send(&Req::get("/").host("a.com")).await).pod().as_deref(), Some("pod-a"));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    bed.ingress("web", &ing("svc-b")).unwrap();
    // Also change the endpoints of svc-a (it loses pod-a) while its request runs.
    bed.write(
        "svc-svc-a.yaml",
        &docs(&[
            Service::new("svc-a").port("http", SERVICE_PORT, ECHO_PORT).yaml(),
            EndpointSlice::named("svc-a-1", "svc-a").port("http", ECHO_PORT).yaml(),
        ]),
    )
    .unwrap();
    bed.ok(bed.wait_route("a.com", "/", 200, Some("pod-b")).await);
    assert!(
        start.elapsed() < Duration::from_millis(3500),
        "the change took {:?}; the test needs it faster",
        start.elapsed()
    );

    for (proto, task) in [("HTTP/1.1", h1), ("h2c", h2)] {
        let resp = task.await.expect("task").unwrap_or_else(|e| bed.fail(format!("{proto} in-flight request: {e:#}")));
        assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("pod-a")), "{proto}: {resp}");
    }
    // A kept-alive client connection is either closed or routed by the new
    // configuration; never by the old one.
    if let Ok(resp) = kept.send(&Req::get("/").host("a.com")).await {
        assert_eq!(resp.pod().as_deref(), Some("pod-b"), "{resp}");
    }
}
