//! The users' seed Ingresses that use ingress-nginx annotations, loaded as
//! they are written, plus our backends: Services and EndpointSlices for the
//! Services they name, an IngressClass `nginx` for our controller, and for
//! the ExternalName Service a fake DNS server resolving its external name to
//! an echo pod (so even that seed file is used unchanged).

use std::net::SocketAddr;

use lb_testbed::l7::annotations::{expect_routes, expect_upstream};
use lb_testbed::l7::{
    ECHO_PORT, EndpointSlice, FakeDns, Ingress, L7Bed, LbOptions, Rule, SERVICE_PORT, Service, docs, ingress_class,
    seed_examples_dir, start_echo, unique_loopback_ip,
};

const CONTROLLER: &str = "lb.dev/ingress-controller";

fn seed(file: &str) -> String {
    let dir = seed_examples_dir().expect("seed examples");
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
}

#[tokio::test]
async fn seed_ingress_regex_order() {
    let mut bed = L7Bed::new().unwrap();
    let mut objects = vec![ingress_class("nginx", CONTROLLER, true)];
    // One pod per Service, named like it; the seed's backends use port 3000.
    for name in ["auth", "booking", "payment", "review", "tour", "client"] {
        let pod = bed.echo(name).unwrap();
        objects.push(Service::new(name).port("http", 3000, ECHO_PORT).yaml());
        objects.push(
            EndpointSlice::named(&format!("{name}-abc"), name).port("http", ECHO_PORT).endpoint(pod.ip(), true).yaml(),
        );
    }
    bed.write("ingress-regex-order.yaml", &seed("ingress-regex-order.yaml")).unwrap();
    bed.write("ours.yaml", &docs(&objects)).unwrap();
    bed.start_lb().await.expect("lb starts");
    // Longest path first, case-insensitive, anchored at the start; the
    // backend gets the request target unchanged.
    let cases: Vec<(&str, &str)> = vec![
        ("/api/v1/tours/123/bookings", "booking"),
        ("/api/v1/tours/123/reviews", "review"),
        ("/api/v1/tours/123", "tour"),
        ("/API/V1/TOURS/1", "tour"),
        ("/anything/else", "client"),
        ("/api/v1/auth/login", "auth"),
        ("/", "client"),
        ("/api/v1/tours", "tour"),
        ("/api/v1/tours/5/bookings/extra", "booking"),
        ("/api/v1/users/me?x=1", "auth"),
        ("/api/v1/admin/users/7", "auth"),
        ("/api/v1/oauth2/callback?code=abc", "auth"),
        ("/api/v1/bookings/5", "booking"),
        ("/api/v1/admin/bookings", "booking"),
        ("/api/v1/payments/checkout", "payment"),
        ("/api/v1/reviews/9", "review"),
        ("/api/v1/admin/reviews/9", "review"),
        ("/api/v1/admin/tours/3", "tour"),
        ("/api/v2/tours/1", "client"),
    ];
    let cases: Vec<(&str, &str, &str, &str)> =
        cases.iter().map(|(path, pod)| ("tour.xyz", *path, *pod, *path)).collect();
    expect_upstream(&bed, &cases).await;
    expect_routes(&bed, &[("other.xyz", "/api/v1/tours/1", 404, None)]).await;
}

#[tokio::test]
async fn seed_ingress_externalname_rewrite_and_app_root() {
    let mut bed = L7Bed::new().unwrap();
    // chatforyou-io-svc is ExternalName chatforyou-io-service.chatforyou-io.svc.cluster.local,
    // port 8443: an echo pod there, found through the fake DNS server.
    let pod_ip = unique_loopback_ip();
    let _pod = start_echo(bed.log_dir(), "chatforyou-io-pod", pod_ip, 8443).expect("echo pod on 8443");
    let dns = FakeDns::start(
        SocketAddr::from((unique_loopback_ip(), 5353)),
        &[("chatforyou-io-service.chatforyou-io.svc.cluster.local", pod_ip)],
    )
    .unwrap();
    bed.write("ingress-externalname.yaml", &seed("ingress-externalname.yaml")).unwrap();
    // A plain Ingress of ours to the same Service: the backend path works
    // without any annotation.
    let control = Ingress::new("control").namespace("nginx").class("nginx").rule(Rule::host("control.test").prefix(
        "/",
        "chatforyou-io-svc",
        8443,
    ));
    bed.write("ours.yaml", &docs(&[ingress_class("nginx", CONTROLLER, true), control.yaml()])).unwrap();
    let opts = LbOptions { dns_server: Some(dns.addr()), ..LbOptions::default() };
    bed.start_lb_with(opts).await.expect("lb starts");
    let pod = "chatforyou-io-pod";
    expect_upstream(&bed, &[("control.test", "/chatforyouio/x?y=1", pod, "/chatforyouio/x?y=1")]).await;
    // `/chatforyouio(/|$)(.*)` with `rewrite-target: /$2`.
    let host = "myproject.project.io";
    expect_upstream(
        &bed,
        &[
            (host, "/chatforyouio/user/create", pod, "/user/create"),
            (host, "/chatforyouio", pod, "/"),
            (host, "/chatforyouio/", pod, "/"),
            (host, "/chatforyouio/user/create?id=7&x", pod, "/user/create?id=7&x"),
            (host, "/ChatForYouIO/Rooms/1", pod, "/Rooms/1"),
        ],
    )
    .await;
    // `app-root: /` does not redirect `/` to itself: it is routed, and no
    // path of the seed matches it.
    expect_routes(&bed, &[(host, "/", 404, None), (host, "/chatforyouiox", 404, None), (host, "/other", 404, None)])
        .await;
}

#[tokio::test]
async fn seed_ingress_rewrite() {
    let mut bed = L7Bed::new().unwrap();
    let pod = bed.echo("hostname-pod").unwrap();
    bed.write("ingress-rewrite.yaml", &seed("ingress-rewrite.yaml")).unwrap();
    bed.write(
        "ours.yaml",
        &docs(&[
            ingress_class("nginx", CONTROLLER, true),
            Service::new("hostname-service").port("http", SERVICE_PORT, ECHO_PORT).yaml(),
            EndpointSlice::named("hostname-service-abc", "hostname-service")
                .port("http", ECHO_PORT)
                .endpoint(pod.ip(), true)
                .yaml(),
        ]),
    )
    .unwrap();
    bed.start_lb().await.expect("lb starts");
    let host = "alicek106.example.com";
    let p = "hostname-pod";
    expect_upstream(
        &bed,
        &[
            (host, "/echo-hostname", p, "/"),
            (host, "/echo-hostname/x?y=1", p, "/?y=1"),
            (host, "/echo-hostname/a/b", p, "/"),
            (host, "/ECHO-HOSTNAME", p, "/"),
            // rewrite-target implies use-regex: the Prefix path is the regex
            // `^/echo-hostname`, as with ingress-nginx.
            (host, "/echo-hostnamefoo", p, "/"),
        ],
    )
    .await;
    expect_routes(&bed, &[(host, "/", 404, None), (host, "/other", 404, None)]).await;
}
