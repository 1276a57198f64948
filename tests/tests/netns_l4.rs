//! The L4 data path on a bed that looks like a small cluster: a client and
//! two nodes on one LAN, pods behind each node's CNI bridge, `lb run
//! --interface eth0` on both nodes, real TCP and UDP from the client.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use lb_testbed::{
    CLIENT_IP, KeepAliveConn, LOADBALANCER_IP, NODE1_IP, NODE2_IP, ProcessHandle, TestBed, copy_example_manifests,
    example_manifests_dir, http_request, in_netns, udp_echo,
};

const TIMEOUT: Duration = Duration::from_secs(3);
const POD_A: &str = "nginx-7c5ddbdf54-2xkqn"; // node1
const POD_B: &str = "nginx-7c5ddbdf54-8rz4m"; // node1
const POD_C: &str = "nginx-7c5ddbdf54-q9wvt"; // node2

fn addr(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// A bed with echo pods and `lb run` on both nodes serving `manifests`;
/// returns once node1's NodePort answers.
fn start(manifests: &Path) -> (TestBed, Vec<ProcessHandle>) {
    let bed = TestBed::new().expect("test bed (needs root)");
    bed.start_echo_pods().expect("echo pods");
    let lbs = bed.start_lb_on_every_node(manifests).expect("start lb");
    lb_testbed::bed::wait_for_http(bed.client_ns(), addr(NODE1_IP, 30007), Duration::from_secs(30), Some(&lbs[0]))
        .expect("NodePort 30007 on node1 answers");
    (bed, lbs)
}

/// One request on a fresh connection: (pod, the address the pod saw the
/// request come from).
fn get(bed: &TestBed, to: SocketAddr) -> (String, String) {
    let resp = http_request(bed.client_ns(), to, "/", &[], TIMEOUT).unwrap_or_else(|e| panic!("GET {to}: {e:#}"));
    assert_eq!(resp.status, 200, "GET {to}: {resp:?}");
    let pod = resp.pod_name().expect("answer names its pod");
    let seen_from = resp.header("x-remote-addr").expect("x-remote-addr").to_string();
    (pod, seen_from.rsplit_once(':').map(|(ip, _)| ip.to_string()).unwrap_or(seen_from))
}

#[test]
fn nodeport_spreads_connections_over_pods_on_both_nodes() {
    let (bed, _lbs) = start(&example_manifests_dir());
    let mut per_pod: BTreeMap<String, u32> = BTreeMap::new();
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..300 {
        let (pod, from) = get(&bed, addr(NODE1_IP, 30007));
        *per_pod.entry(pod.clone()).or_default() += 1;
        sources.insert(pod, from);
    }
    eprintln!("300 connections to {NODE1_IP}:30007: {per_pod:?}");
    assert_eq!(per_pod.len(), 3, "all three pods answer: {per_pod:?}");
    for (pod, n) in &per_pod {
        assert!((60..=150).contains(n), "{pod} got {n} of 300 (want 20%–50%): {per_pod:?}");
    }
    // Pods on node1 see the client; the pod on node2 is reached through
    // node1's NodePort with the source masqueraded to node1.
    assert_eq!(sources[POD_A], CLIENT_IP.to_string());
    assert_eq!(sources[POD_B], CLIENT_IP.to_string());
    assert_eq!(sources[POD_C], NODE1_IP.to_string(), "masqueraded to node1");

    // NodePort 30007 answers on node2 as well, for pods on both nodes.
    let mut via_node2: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..60 {
        *via_node2.entry(get(&bed, addr(NODE2_IP, 30007)).0).or_default() += 1;
    }
    assert_eq!(via_node2.len(), 3, "node2's NodePort reaches all pods: {via_node2:?}");

    // UDP NodePort, from many source ports.
    let mut udp_pods = BTreeMap::new();
    for i in 0..30 {
        let (pod, payload) = udp_echo(bed.client_ns(), addr(NODE1_IP, 30053), &format!("q{i}"), TIMEOUT)
            .unwrap_or_else(|e| panic!("UDP {NODE1_IP}:30053 #{i}: {e:#}"));
        assert_eq!(payload, format!("q{i}"));
        *udp_pods.entry(pod).or_insert(0) += 1;
    }
    assert!(udp_pods.len() >= 2, "UDP flows spread over pods: {udp_pods:?}");

    // LoadBalancer IP (status.loadBalancer.ingress) and an external IP.
    for to in [addr(LOADBALANCER_IP, 8088), addr("198.51.100.10".parse().unwrap(), 8080)] {
        let mut pods = BTreeMap::new();
        for _ in 0..20 {
            *pods.entry(get(&bed, to).0).or_insert(0) += 1;
        }
        assert!(pods.len() >= 2, "{to} spreads over pods: {pods:?}");
    }
}

#[test]
fn removing_an_endpoint_moves_only_new_flows() {
    let manifests = copy_example_manifests().expect("copy of the example manifests");
    let (bed, lbs) = start(manifests.path());

    // An open connection to a pod on node1 that stays.
    let keep_to = addr(NODE1_IP, 30007);
    let (mut kept, kept_pod) = (0..50)
        .find_map(|_| {
            let mut conn = KeepAliveConn::open(bed.client_ns(), keep_to, TIMEOUT).ok()?;
            let pod = conn.get_pod().ok()?;
            (pod == POD_A).then_some((conn, pod))
        })
        .expect("a keep-alive connection to pod A");

    // Remove pod B from my-service-nodeport's EndpointSlice.
    let slices = manifests.path().join("endpointslices.yaml");
    let text = std::fs::read_to_string(&slices).unwrap();
    let docs: Vec<String> = text
        .split("\n---\n")
        .map(|doc| if doc.contains("name: my-service-nodeport-") { without_endpoint(doc, POD_B) } else { doc.into() })
        .collect();
    let removed_at = Instant::now();
    std::fs::write(&slices, docs.join("\n---\n")).unwrap();

    // Within a second no new connection reaches pod B.
    std::thread::sleep(Duration::from_millis(1200));
    let mut per_pod: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..100 {
        *per_pod.entry(get(&bed, keep_to).0).or_default() += 1;
    }
    assert!(!per_pod.contains_key(POD_B), "removed pod still gets new connections: {per_pod:?}\n{}", lbs[0].logs(4000));
    assert_eq!(per_pod.len(), 2, "the two remaining pods share the load: {per_pod:?}");

    // The open connection to pod A keeps working, on the same pod.
    for _ in 0..3 {
        assert_eq!(kept.get_pod().expect("open connection still answers"), kept_pod);
    }
    eprintln!("endpoint removal applied and verified {:?} after the write", removed_at.elapsed());
}

/// The EndpointSlice document without the endpoint of `pod`.
fn without_endpoint(doc: &str, pod: &str) -> String {
    let (head, endpoints) = doc.split_once("endpoints:\n").expect("slice has endpoints");
    let kept: Vec<&str> =
        endpoints.split("- addresses:").filter(|e| !e.trim().is_empty() && !e.contains(pod)).collect();
    format!("{head}endpoints:\n{}", kept.iter().map(|e| format!("- addresses:{e}")).collect::<String>())
}

#[test]
fn service_without_endpoints_is_refused_and_bad_input_is_skipped() {
    let manifests = copy_example_manifests().expect("copy of the example manifests");
    std::fs::write(
        manifests.path().join("extra.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: nobody-home\nspec:\n  type: NodePort\n  ports:\n  \
         - port: 80\n    nodePort: 30099\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: broken-port\nspec:\n  \
         ports:\n  - port: eighty\n",
    )
    .unwrap();
    std::fs::write(manifests.path().join("garbage.yaml"), "kind: [unclosed\n").unwrap();
    let (bed, lbs) = start(manifests.path());

    // Like kube-proxy: ICMP port unreachable, so connect() is refused at once.
    let to = addr(NODE1_IP, 30099);
    let started = Instant::now();
    let refused = in_netns(bed.client_ns(), || TcpStream::connect_timeout(&to, TIMEOUT)).unwrap();
    match refused {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{to}: {e}"),
        Ok(_) => panic!("{to} has no endpoints but accepted a connection"),
    }
    assert!(started.elapsed() < Duration::from_secs(1), "refused quickly, not timed out");

    // Everything else keeps working, and the log names the bad objects.
    assert!(!get(&bed, addr(NODE1_IP, 30007)).0.is_empty());
    let logs = lbs[0].logs(20_000);
    assert!(logs.contains("garbage.yaml"), "log names the unparsable file:\n{logs}");
    assert!(logs.contains("broken-port"), "log names the bad Service:\n{logs}");
}
