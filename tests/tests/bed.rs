//! The test bed on its own, without `lb`: addressing, routing between the
//! nodes, echo pods over HTTP and UDP, keep-alive, and cleanup. Needs root.

use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use lb_testbed::netns::{exec_in, ns_exists, read_sysctl};
use lb_testbed::{
    CLIENT_IP, ECHO_HTTP_PORT, ECHO_UDP_PORT, KeepAliveConn, NODE1_IP, NODE2_IP, PodSpec, TestBed, default_pods,
    http_get, in_netns, udp_echo,
};

const TIMEOUT: Duration = Duration::from_secs(3);

fn pod_addr(bed: &TestBed, pod: &str, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(bed.pod(pod).unwrap().ip, port))
}

#[test]
fn client_reaches_nodes_and_nodes_reach_each_other() {
    let bed = TestBed::new().expect("building the bed");
    for node in [NODE1_IP, NODE2_IP] {
        let out = exec_in(bed.client_ns(), "ping", &["-c", "1", "-W", "2", &node.to_string()]);
        assert!(out.is_ok(), "client cannot ping {node}: {out:?}");
    }
    let out = exec_in(bed.node_ns("node2").unwrap(), "ping", &["-c", "1", "-W", "2", &CLIENT_IP.to_string()]);
    assert!(out.is_ok(), "node2 cannot ping the client: {out:?}");
    assert_eq!(read_sysctl(bed.node_ns("node1").unwrap(), "net.ipv4.ip_forward").unwrap(), "1");
}

#[test]
fn echo_pods_answer_by_pod_ip_across_nodes_over_http_and_udp() {
    let bed = TestBed::new().expect("building the bed");
    bed.start_echo_pods().expect("starting echo pods");
    let node1 = bed.node_ns("node1").unwrap();

    // node1 reaches every pod: its own via cni0, node2's via the host-gw route.
    for pod in bed.pods() {
        let (name, body) = http_get(node1, pod_addr(&bed, &pod.name, ECHO_HTTP_PORT), TIMEOUT)
            .unwrap_or_else(|e| panic!("GET {} from node1: {e:#}", pod.name));
        assert_eq!(name, pod.name);
        let seen = lb_testbed::echo::parse_body(&body).unwrap_or_else(|| panic!("not an echo answer: {body}"));
        assert_eq!(seen.pod, pod.name);
        assert_eq!(seen.request_line, "GET / HTTP/1.1");
        assert_eq!(seen.header("connection"), Some("close"), "{body}");

        let (name, echoed) = udp_echo(node1, pod_addr(&bed, &pod.name, ECHO_UDP_PORT), "ping 42", TIMEOUT)
            .unwrap_or_else(|e| panic!("UDP to {} from node1: {e:#}", pod.name));
        assert_eq!((name.as_str(), echoed.as_str()), (pod.name.as_str(), "ping 42"));
    }

    // A pod on node2 reaches a pod on node1 (both directions of the host-gw routes).
    let q9 = bed.pod("nginx-7c5ddbdf54-q9wvt").unwrap();
    let (name, _) = http_get(&q9.ns, pod_addr(&bed, "nginx-7c5ddbdf54-2xkqn", ECHO_HTTP_PORT), TIMEOUT)
        .expect("pod on node2 -> pod on node1");
    assert_eq!(name, "nginx-7c5ddbdf54-2xkqn");

    // A kept-alive connection serves several requests, sent later.
    let mut conn = KeepAliveConn::open(node1, pod_addr(&bed, "nginx-7c5ddbdf54-8rz4m", ECHO_HTTP_PORT), TIMEOUT)
        .expect("opening keep-alive connection");
    let local = conn.local_addr().unwrap();
    for i in 0..3 {
        let resp = conn.get(&format!("/req{i}")).expect("request on kept-alive connection");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.pod_name().as_deref(), Some("nginx-7c5ddbdf54-8rz4m"));
        assert!(resp.body.contains(&format!("GET /req{i} HTTP/1.1")), "{}", resp.body);
        assert_eq!(resp.header("x-remote-addr"), Some(local.to_string().as_str()));
    }
}

#[test]
fn client_cannot_reach_pods_directly_and_in_netns_isolates() {
    let bed = TestBed::new().expect("building the bed");
    bed.start_echo_pods().expect("starting echo pods");
    // The client has no route to pod IPs (they are not on the LAN): as on a
    // real cluster, only nodes reach them.
    let direct =
        http_get(bed.client_ns(), pod_addr(&bed, "nginx-7c5ddbdf54-2xkqn", ECHO_HTTP_PORT), Duration::from_millis(500));
    assert!(direct.is_err(), "client reached a pod directly: {direct:?}");
    // A socket made in the client namespace reaches node1's sshd-less port 1:
    // refused quickly (RST from node1), proving the path and the namespace.
    let refused =
        in_netns(bed.client_ns(), || TcpStream::connect_timeout(&SocketAddr::from((NODE1_IP, 1)), TIMEOUT)).unwrap();
    let err = refused.expect_err("nothing listens on node1:1");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn custom_pods_and_cleanup_removes_everything() {
    let pods = vec![
        PodSpec::new("web-a", "node1", "10.244.1.20".parse().unwrap()),
        PodSpec::new("web-b", "node2", "10.244.2.20".parse().unwrap()),
    ];
    let bed = TestBed::builder().pods(pods).build().expect("building the bed");
    let echoes = bed.start_echo_pods().expect("starting echo pods");
    let (name, _) = http_get(bed.node_ns("node1").unwrap(), pod_addr(&bed, "web-b", ECHO_HTTP_PORT), TIMEOUT).unwrap();
    assert_eq!(name, "web-b");
    let namespaces = bed.namespaces();
    assert_eq!(namespaces.len(), 6);
    assert!(namespaces.iter().all(|ns| ns_exists(ns)));
    let log_dir = bed.log_dir().to_path_buf();
    assert!(log_dir.is_dir());
    assert!(echoes[0].stderr().contains("HTTP on 0.0.0.0:80"));
    let pids: Vec<u32> = echoes.iter().map(|e| e.pid()).collect();

    drop(bed);

    for ns in &namespaces {
        assert!(!ns_exists(ns), "namespace {ns} survived the bed");
    }
    for (pid, echo) in pids.iter().zip(&echoes) {
        assert!(!echo.is_running(), "echo pod pid {pid} survived the bed");
    }
    assert!(!log_dir.exists(), "log dir {} survived", log_dir.display());
}

#[test]
fn bad_pod_specs_are_rejected_without_leftovers() {
    let bad = vec![PodSpec::new("x", "node1", "10.244.2.5".parse().unwrap())];
    let err = TestBed::builder().pods(bad).build().err().expect("pod outside its node's CIDR");
    assert!(format!("{err:#}").contains("not a pod address"), "{err:#}");
    let dup = vec![default_pods()[0].clone(), default_pods()[0].clone()];
    assert!(TestBed::builder().pods(dup).build().is_err());
}
