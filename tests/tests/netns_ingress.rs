//! The hand-off of HTTP(S) entry points from XDP to the node's proxy, on the
//! network-namespace bed: the ingress controller's LoadBalancer IP and
//! NodePorts reach `lb`'s own listeners on the node the packet arrives at,
//! with the client's address intact, and the seed Ingresses route from there.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use lb_testbed::echo::parse_body;
use lb_testbed::l7::{Req, TestCa, TlsOpts, send_tls, tls_secret};
use lb_testbed::{
    CLIENT_IP, HttpResponse, INGRESS_IP, NODE1_IP, NODE2_IP, ProcessHandle, TestBed, copy_example_manifests,
    http_request, in_netns,
};

const TIMEOUT: Duration = Duration::from_secs(3);
const NGINX1_PODS: [&str; 2] = ["nginx-7c5ddbdf54-2xkqn", "nginx-7c5ddbdf54-q9wvt"];
const NGINX2_POD: &str = "nginx-7c5ddbdf54-8rz4m";
/// `service1`, the TLS example's backend.
const SERVICE1_POD: &str = "nginx-7c5ddbdf54-q9wvt";
const TLS_HOST: &str = "https-example.foo.com";

fn addr(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// A bed with echo pods and `lb run` (XDP and proxy) on both nodes.
fn start(manifests: &Path) -> (TestBed, Vec<ProcessHandle>) {
    let bed = TestBed::new().expect("test bed (needs root)");
    bed.start_echo_pods().expect("echo pods");
    let lbs = bed.start_lb_on_every_node(manifests).expect("start lb");
    (bed, lbs)
}

/// `GET path` with `Host: host` from the client, retried until it answers
/// (the agents are starting) for at most 30 s.
fn get(bed: &TestBed, to: SocketAddr, host: &str, path: &str) -> HttpResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http_request(bed.client_ns(), to, path, &[("Host", host)], TIMEOUT) {
            Ok(resp) => return resp,
            Err(e) if Instant::now() > deadline => panic!("GET http://{host}{path} via {to}: {e:#}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A header the echo pod received, from its JSON answer.
fn seen_header(resp: &HttpResponse, name: &str) -> Option<String> {
    parse_body(&resp.body)?.header(name).map(str::to_string)
}

/// `GET /` over TLS with SNI `host` from the client (verified against `ca`):
/// (the certificate's names, the answering pod, what the pod saw as
/// X-Forwarded-Proto).
fn get_tls(bed: &TestBed, to: SocketAddr, host: &str, ca: &TestCa) -> (Vec<String>, String, String) {
    in_netns(bed.client_ns(), || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let (tls, resp) = runtime
            .block_on(send_tls(to, TlsOpts::new(host).verify(ca), &Req::get("/")))
            .unwrap_or_else(|e| panic!("GET https://{host}/ via {to}: {e:#}"));
        assert_eq!(resp.status, 200, "{resp}");
        let proto = resp.echo().expect("echo answer").header("x-forwarded-proto").unwrap_or_default().to_string();
        (tls.cert.dns_names, resp.pod().expect("pod"), proto)
    })
    .expect("client namespace")
}

#[test]
fn ingress_entry_points_reach_the_node_proxy_with_the_client_address() {
    let manifests = copy_example_manifests().expect("copy of the example manifests");
    // The users' own certificate for the TLS example, as a Secret beside it.
    let ca = TestCa::new().expect("test CA");
    let pair = ca.issue(&[TLS_HOST]).expect("certificate");
    std::fs::write(manifests.path().join("ingress-tls-secret.yaml"), tls_secret("testsecret-tls", &pair)).unwrap();
    let (bed, _lbs) = start(manifests.path());

    // The LoadBalancer IP, routed by the client via node1: node1's proxy.
    let resp = get(&bed, addr(INGRESS_IP, 80), "a.com", "/");
    assert_eq!(resp.status, 200, "{resp:?}");
    let pod = resp.pod_name().expect("pod name");
    assert!(NGINX1_PODS.contains(&pod.as_str()), "a.com/ answered by {pod}");
    assert_eq!(seen_header(&resp, "x-forwarded-for").as_deref(), Some(CLIENT_IP.to_string().as_str()), "{resp:?}");
    assert_eq!(seen_header(&resp, "x-real-ip").as_deref(), Some(CLIENT_IP.to_string().as_str()));
    assert_eq!(seen_header(&resp, "x-forwarded-port").as_deref(), Some("80"));
    assert_eq!(resp.header("server"), Some("lb"));

    let resp = get(&bed, addr(INGRESS_IP, 80), "a.com", "/b");
    assert_eq!(resp.pod_name().as_deref(), Some(NGINX2_POD), "a.com/b: {resp:?}");

    // The NodePort on node2: node2's own proxy, the client's address kept.
    let resp = get(&bed, addr(NODE2_IP, 30080), "b.com", "/anything");
    assert_eq!(resp.pod_name().as_deref(), Some(NGINX2_POD), "b.com via node2: {resp:?}");
    assert_eq!(seen_header(&resp, "x-forwarded-for").as_deref(), Some(CLIENT_IP.to_string().as_str()));

    // Requests over the NodePort on node1 are spread over both nginx1 pods.
    let mut pods = std::collections::BTreeSet::new();
    for _ in 0..40 {
        pods.insert(get(&bed, addr(NODE1_IP, 30080), "a.com", "/").pod_name().expect("pod"));
    }
    assert_eq!(pods.iter().map(String::as_str).collect::<Vec<_>>(), NGINX1_PODS, "a.com over 40 requests");

    // TLS through the LoadBalancer IP and node2's NodePort: the Secret's
    // certificate by SNI, then service1.
    for to in [addr(INGRESS_IP, 443), addr(NODE2_IP, 30443)] {
        let (names, pod, proto) = get_tls(&bed, to, TLS_HOST, &ca);
        assert_eq!(names, [TLS_HOST], "certificate served via {to}");
        assert_eq!((pod.as_str(), proto.as_str()), (SERVICE1_POD, "https"), "via {to}");
    }
    // Plain HTTP to the TLS host: redirected, as ingress-nginx does.
    let resp = get(&bed, addr(INGRESS_IP, 80), TLS_HOST, "/x?y=1");
    assert_eq!((resp.status, resp.header("location")), (308, Some("https://https-example.foo.com/x?y=1")));

    // The annotated seeds (ingress-annotations.yaml): the tour.xyz regex
    // order and the myproject.project.io rewrite, via node2's NodePort too.
    let annotated = [
        (addr(INGRESS_IP, 80), "tour.xyz", "/api/v1/tours/42/bookings", "nginx-7c5ddbdf54-8rz4m", None),
        (addr(INGRESS_IP, 80), "tour.xyz", "/api/v1/tours/42/reviews", "nginx-7c5ddbdf54-q9wvt", None),
        (addr(NODE2_IP, 30080), "tour.xyz", "/api/v1/tours/42", "nginx-7c5ddbdf54-2xkqn", None),
        (
            addr(INGRESS_IP, 80),
            "myproject.project.io",
            "/chatforyouio/user/create",
            "nginx-7c5ddbdf54-q9wvt",
            Some("/user/create"),
        ),
    ];
    for (to, host, path, pod, upstream) in annotated {
        let resp = get(&bed, to, host, path);
        let seen = parse_body(&resp.body).map(|e| e.path);
        assert_eq!(resp.pod_name().as_deref(), Some(pod), "{host}{path}: {resp:?}");
        assert_eq!(seen.as_deref(), Some(upstream.unwrap_or(path)), "{host}{path}: the path the pod received");
    }

    // No Ingress for the host: the built-in default backend.
    let resp = get(&bed, addr(INGRESS_IP, 80), "nobody.example", "/");
    assert_eq!(resp.status, 404, "{resp:?}");
    assert_eq!(resp.header("server"), Some("lb"));
}
