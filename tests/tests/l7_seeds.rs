//! The users' own manifests (seed examples), loaded as they are, plus our
//! EndpointSlices and an IngressClass `nginx` for our controller marked as
//! the default.

use lb_testbed::l7::{
    ECHO_PORT, EndpointSlice, L7Bed, Req, SERVICE_PORT, Service, TestCa, TlsOpts, docs, ingress_class,
    seed_examples_dir, send_tls,
};

const CONTROLLER: &str = "lb.dev/ingress-controller";

fn seed(file: &str) -> String {
    let dir = seed_examples_dir().expect("seed examples");
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
}

#[tokio::test]
async fn seed_ingress_hosts() {
    let mut bed = L7Bed::new().unwrap();
    let nginx1 = bed.echo("nginx1-deployment-6d5f7b9c4-x2x7q").unwrap();
    let nginx2 = bed.echo("nginx2-deployment-7c9d8f6b5-k8k2m").unwrap();
    bed.write("ingress-hosts.yaml", &seed("ingress-hosts.yaml")).unwrap();
    bed.write(
        "ours.yaml",
        &docs(&[
            ingress_class("nginx", CONTROLLER, true),
            EndpointSlice::named("nginx1-abc", "nginx1-service-clusterip")
                .port("http", ECHO_PORT)
                .endpoint(nginx1.ip(), true)
                .yaml(),
            EndpointSlice::named("nginx2-abc", "nginx2-service-clusterip")
                .port("http", ECHO_PORT)
                .endpoint(nginx2.ip(), true)
                .yaml(),
        ]),
    )
    .unwrap();
    bed.start_lb().await.expect("lb starts");
    let (n1, n2) = (Some(nginx1.name().to_string()), Some(nginx2.name().to_string()));
    for (host, path, want) in [
        ("a.com", "/", (200, n1.clone())),
        ("a.com", "/anything", (200, n1.clone())),
        ("a.com", "/a", (200, n1.clone())),
        ("a.com", "/a/x", (200, n1.clone())),
        ("a.com", "/b", (200, n2.clone())),
        ("a.com", "/b/x", (200, n2.clone())),
        ("b.com", "/", (200, n2.clone())),
        ("b.com", "/a", (200, n2.clone())),
        ("c.com", "/", (404, None)),
    ] {
        assert_eq!(bed.ok(bed.route(host, path).await), want, "GET {host}{path}\n{}", bed.logs());
    }
    // What the users saw through ingress-nginx.
    let echo = bed.ok(bed.get("a.com", "/").await).echo().unwrap();
    assert_eq!(echo.header("x-forwarded-host"), Some("a.com"));
    assert_eq!(echo.header("x-forwarded-proto"), Some("http"));
    assert_eq!(echo.header("x-scheme"), Some("http"));
    assert!(echo.header("x-request-id").is_some_and(|id| id.len() == 32));
}

#[tokio::test]
async fn seed_ingress_tls() {
    let mut bed = L7Bed::new().unwrap();
    let ca = TestCa::new().unwrap();
    let cert = ca.issue(&["https-example.foo.com"]).unwrap();
    let pod = bed.echo("service1-pod").unwrap();
    let manifest = seed("ingress-tls.yaml")
        .replace("REPLACE_WITH_BASE64_CERT", &cert.cert_b64())
        .replace("REPLACE_WITH_BASE64_KEY", &cert.key_b64());
    assert!(!manifest.contains("REPLACE_WITH"), "placeholders filled");
    bed.write("ingress-tls.yaml", &manifest).unwrap();
    bed.write(
        "ours.yaml",
        &docs(&[
            ingress_class("nginx", CONTROLLER, true),
            Service::new("service1").port("http", SERVICE_PORT, ECHO_PORT).yaml(),
            EndpointSlice::new("service1").port("http", ECHO_PORT).endpoint(pod.ip(), true).yaml(),
        ]),
    )
    .unwrap();
    bed.start_lb().await.expect("lb starts");
    let opts = TlsOpts::new("https-example.foo.com").verify(&ca).alpn(&["h2", "http/1.1"]);
    let (info, resp) = bed.ok(send_tls(bed.https_addr(), opts, &Req::get("/")).await);
    assert_eq!(info.cert_der, cert.cert_der);
    assert_eq!((resp.status, resp.pod().as_deref()), (200, Some("service1-pod")), "{resp}");
    assert_eq!(resp.echo().unwrap().header("x-forwarded-proto"), Some("https"));
    let resp = bed.ok(bed.get("https-example.foo.com", "/x").await);
    assert_eq!(resp.status, 308, "plain HTTP to the TLS host: {resp}");
}
