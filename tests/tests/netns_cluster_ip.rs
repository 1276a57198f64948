//! East-west traffic on the netns bed: clients inside pods (and on a node's
//! host network) reach Services through lb's socket programs. Each node's
//! pods run in a cgroup of their own, which is that node's agent's
//! `--cgroup-root`, as a DaemonSet on the node would see its pods. The
//! clients are `lb-probe` processes that join the cgroup before making any
//! socket, and talk to the bed's lb-echo pods.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use lb_testbed::probe::Exchange;
use lb_testbed::{NODE1_IP, NODE2_IP, ProcessHandle, TestBed, copy_example_manifests};

const POD_A: &str = "nginx-7c5ddbdf54-2xkqn"; // node1, 10.244.1.10
const POD_B: &str = "nginx-7c5ddbdf54-8rz4m"; // node1, 10.244.1.11
const POD_C: &str = "nginx-7c5ddbdf54-q9wvt"; // node2, 10.244.2.10

/// The seed `nginx-service` (`curl 10.103.98.179` in the users' notes).
const NGINX_SERVICE: SocketAddr = addr(Ipv4Addr::new(10, 103, 98, 179), 80);
/// `echo-udp`'s DNS-like cluster IP.
const DNS_LIKE: SocketAddr = addr(Ipv4Addr::new(10, 96, 0, 53), 53);

const fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V4(ip), port)
}

/// Services of this test beside the examples: one without endpoints, one
/// `internalTrafficPolicy: Local` with its only endpoint on node2, one with
/// it on every node, a LoadBalancer with `externalTrafficPolicy: Local` and
/// its endpoints on node1, and one with ClientIP affinity.
const EAST_WEST: &str = "
apiVersion: v1
kind: Service
metadata: {name: no-endpoints}
spec:
  clusterIP: 10.96.9.1
  ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: node2-local}
spec:
  clusterIP: 10.96.9.2
  internalTrafficPolicy: Local
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: everywhere-local}
spec:
  clusterIP: 10.96.9.4
  internalTrafficPolicy: Local
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: local-lb}
spec:
  type: LoadBalancer
  clusterIP: 10.96.9.5
  externalTrafficPolicy: Local
  healthCheckNodePort: 32100
  ports: [{port: 80, nodePort: 30100}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  clusterIP: 10.96.9.3
  sessionAffinity: ClientIP
  ports: [{port: 80}]
";

/// An EndpointSlice of `service` on port 80 with the given (ip, node) pods.
fn slice(service: &str, pods: &[(&str, &str)]) -> String {
    let endpoints: String =
        pods.iter().map(|(ip, node)| format!("\n- addresses: [{ip}]\n  nodeName: {node}")).collect();
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  labels:\n    \
         kubernetes.io/service-name: {service}\naddressType: IPv4\nports: [{{port: 80}}]\nendpoints:{endpoints}\n"
    )
}

fn east_west_manifests() -> String {
    let all = [("10.244.1.10", "node1"), ("10.244.1.11", "node1"), ("10.244.2.10", "node2")];
    format!(
        "{EAST_WEST}{}{}{}{}",
        slice("node2-local", &[("10.244.2.10", "node2")]),
        slice("everywhere-local", &all),
        slice("local-lb", &all[..2]),
        slice("sticky", &all)
    )
}

/// A bed with echo pods and lb on both nodes, each node's pods in its
/// cgroup; returns once a pod on each node reaches the seed ClusterIP.
fn start(manifests: &Path) -> (TestBed, Vec<ProcessHandle>) {
    let bed = TestBed::new().expect("test bed (needs root)");
    bed.start_echo_pods().expect("echo pods");
    let lbs = bed.start_lb_on_every_node(manifests).expect("start lb");
    for pod in [POD_A, POD_C] {
        wait_until(Duration::from_secs(30), || {
            probe(&bed, pod_ns(&bed, pod), node_of(&bed, pod), &["tcp", &NGINX_SERVICE.to_string()])
                .first()
                .is_some_and(Exchange::ok)
        })
        .unwrap_or_else(|| {
            bed.dump_logs();
            panic!("{pod} reaches {NGINX_SERVICE}")
        });
    }
    (bed, lbs)
}

fn pod_ns<'b>(bed: &'b TestBed, pod: &str) -> &'b str {
    &bed.pod(pod).expect("pod").ns
}

fn node_of<'b>(bed: &'b TestBed, pod: &str) -> &'b str {
    &bed.pod(pod).expect("pod").node
}

/// Runs `lb-probe ARGS` in `ns`, in `node`'s cgroup (`""`: none), to its end.
fn probe(bed: &TestBed, ns: &str, node: &str, args: &[&str]) -> Vec<Exchange> {
    let node = (!node.is_empty()).then_some(node);
    bed.run_probe(ns, node, args, Duration::from_secs(60)).unwrap_or_else(|e| panic!("lb-probe {args:?}: {e:#}"))
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Answers per pod; panics on any failure.
#[track_caller]
fn per_pod(what: &str, exchanges: &[Exchange]) -> BTreeMap<String, usize> {
    let failed: Vec<&Exchange> = exchanges.iter().filter(|e| !e.ok()).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} failed: {:?}",
        failed.len(),
        exchanges.len(),
        &failed[..failed.len().min(5)]
    );
    let mut pods = BTreeMap::new();
    for e in exchanges {
        *pods.entry(e.pod.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    eprintln!("{what}: {pods:?}");
    pods
}

/// All three pods answer, each with a share a uniform random choice gives
/// with overwhelming probability: between n/10 and 3n/5 (for n = 60, a
/// binomial(60, 1/3) leaves that range about once in 100,000 tries).
#[track_caller]
fn assert_spread(what: &str, pods: &BTreeMap<String, usize>, n: usize) {
    assert_eq!(pods.len(), 3, "{what}: all three pods answer: {pods:?}");
    for (pod, got) in pods {
        assert!((n / 10..=n * 3 / 5).contains(got), "{what}: {pod} got {got} of {n}: {pods:?}");
    }
}

#[test]
fn pods_and_nodes_reach_cluster_ips_on_both_nodes() {
    let manifests = copy_example_manifests().expect("manifests");
    let (bed, lbs) = start(manifests.path());
    for lb in &lbs {
        let logs = lb.logs(20_000);
        assert!(logs.contains("socket load balancing attached"), "cgroup hooks attached:\n{logs}");
    }
    let service = NGINX_SERVICE.to_string();

    // TCP from a pod on each node spreads over the pods of both nodes, and
    // the socket shows the ClusterIP as its peer.
    for pod in [POD_A, POD_C] {
        let exchanges = probe(&bed, pod_ns(&bed, pod), node_of(&bed, pod), &["tcp", &service, "--count", "150"]);
        let what = format!("TCP from {pod} to {service}");
        assert_spread(&what, &per_pod(&what, &exchanges), 150);
        assert!(exchanges.iter().all(|e| e.peer == Some(NGINX_SERVICE)), "{what}: getpeername shows the ClusterIP");
    }

    // A host-network process of node1 (in node1's cgroup).
    let node1_ns = bed.node_ns("node1").unwrap().to_string();
    let exchanges = probe(&bed, &node1_ns, "node1", &["tcp", &service, "--count", "60"]);
    assert_spread("TCP from node1's host network", &per_pod("from node1's host network", &exchanges), 60);

    // A pod reaches the other node's NodePort: its socket goes straight to
    // a pod (the pods see the client pod's own address, not node2's, which
    // a hairpin through node2's uplink would masquerade to).
    let node2_port = addr(NODE2_IP, 30007);
    let exchanges = probe(&bed, pod_ns(&bed, POD_A), "node1", &["tcp", &node2_port.to_string(), "--count", "60"]);
    assert_spread("TCP from a node1 pod to node2's NodePort", &per_pod("to node2's NodePort", &exchanges), 60);
    assert!(exchanges.iter().all(|e| e.peer == Some(node2_port)));
    let pod_a_ip = bed.pod(POD_A).unwrap().ip;
    assert!(
        exchanges.iter().all(|e| e.seen_from.is_some_and(|a| a.ip() == pod_a_ip)),
        "no hairpin: {:?}",
        exchanges.iter().map(|e| e.seen_from).collect::<Vec<_>>()
    );
    let node1_port = addr(NODE1_IP, 30007);
    per_pod(
        "TCP from a node2 pod to node1's NodePort",
        &probe(&bed, pod_ns(&bed, POD_C), "node2", &["tcp", &node1_port.to_string(), "--count", "30"]),
    );

    // UDP: unconnected sockets get every answer from the ClusterIP …
    let dns = DNS_LIKE.to_string();
    let exchanges = probe(&bed, pod_ns(&bed, POD_B), "node1", &["udp", &dns, "--count", "150"]);
    assert_spread("unconnected UDP", &per_pod("unconnected UDP", &exchanges), 150);
    assert!(exchanges.iter().all(|e| e.from == Some(DNS_LIKE)), "recvfrom shows the ClusterIP: {:?}", &exchanges[..3]);
    // … and so do connected ones (one pod per socket, as a resolver's).
    let exchanges = probe(&bed, pod_ns(&bed, POD_C), "node2", &["udp", &dns, "--count", "20", "--connected"]);
    assert_eq!(per_pod("connected UDP", &exchanges).len(), 1, "a connected socket keeps its pod");
    assert!(exchanges.iter().all(|e| e.from == Some(DNS_LIKE) && e.peer == Some(DNS_LIKE)));

    // Dual-stack sockets (the JVM's default) reach the IPv4 ClusterIP as
    // ::ffff:10.103.98.179, and see it as their peer and their answers' source.
    let mapped = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    let exchanges = probe(&bed, pod_ns(&bed, POD_B), "node1", &["--mapped", "tcp", &service, "--count", "60"]);
    assert_spread("TCP from an IPv6 socket", &per_pod("TCP from an IPv6 socket", &exchanges), 60);
    assert!(exchanges.iter().all(|e| e.peer == Some(mapped(NGINX_SERVICE))), "{:?}", &exchanges[..2]);
    let exchanges = probe(&bed, pod_ns(&bed, POD_C), "node2", &["--mapped", "udp", &dns, "--count", "30"]);
    per_pod("UDP from an IPv6 socket", &exchanges);
    assert!(exchanges.iter().all(|e| e.from == Some(mapped(DNS_LIKE))), "{:?}", &exchanges[..2]);

    // A process outside the cgroups (the client, outside the cluster) is
    // not load-balanced at the socket: the cluster IP is not routed there.
    let outside = probe(&bed, bed.client_ns(), "", &["tcp", &service]);
    assert!(!outside[0].ok(), "the ClusterIP is not reachable from outside the cluster: {outside:?}");
}

#[test]
fn kube_proxy_semantics_at_the_socket() {
    let manifests = copy_example_manifests().expect("manifests");
    std::fs::write(manifests.path().join("east-west.yaml"), east_west_manifests()).unwrap();
    let (bed, _lbs) = start(manifests.path());
    let (a_ns, c_ns) = (pod_ns(&bed, POD_A).to_string(), pod_ns(&bed, POD_C).to_string());

    // No endpoints: refused at once (TCP and UDP), as kube-proxy's REJECT.
    let started = Instant::now();
    let refused = probe(&bed, &a_ns, "node1", &["tcp", "10.96.9.1:80", "--count", "5"]);
    assert!(refused.iter().all(|e| e.error.as_deref() == Some("ECONNREFUSED")), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused at once, not after a timeout");
    let refused = probe(&bed, &a_ns, "node1", &["udp", "10.96.9.1:53", "--count", "2"]);
    assert!(refused.iter().all(|e| e.error.as_deref() == Some("ECONNREFUSED")), "UDP: {refused:?}");

    // internalTrafficPolicy: Local with the only endpoint on node2: dropped
    // on node1 (not refused), served on node2.
    let dropped = probe(&bed, &a_ns, "node1", &["tcp", "10.96.9.2:80", "--count", "3"]);
    assert!(dropped.iter().all(|e| e.error.as_deref() == Some("ETIMEDOUT")), "dropped: {dropped:?}");
    let served = probe(&bed, &c_ns, "node2", &["tcp", "10.96.9.2:80", "--count", "20"]);
    assert_eq!(per_pod("node2-local from node2", &served).keys().collect::<Vec<_>>(), [POD_C]);

    // internalTrafficPolicy: Local with endpoints everywhere: each node's
    // pods stay on their node.
    let local = probe(&bed, &a_ns, "node1", &["tcp", "10.96.9.4:80", "--count", "60"]);
    assert_eq!(per_pod("everywhere-local from node1", &local).keys().collect::<Vec<_>>(), [POD_A, POD_B]);
    let local = probe(&bed, &c_ns, "node2", &["tcp", "10.96.9.4:80", "--count", "20"]);
    assert_eq!(per_pod("everywhere-local from node2", &local).keys().collect::<Vec<_>>(), [POD_C]);

    // externalTrafficPolicy: Local: the health check node port says which
    // node has endpoints (kube-proxy's answer), a node without any drops
    // flows from outside instead of refusing them, and the cluster's own
    // sockets still reach every endpoint through either node's NodePort.
    let health = |node_ip: Ipv4Addr| {
        lb_testbed::http_request(bed.client_ns(), addr(node_ip, 32100), "/healthz", &[], Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("health check node port on {node_ip}: {e:#}"))
    };
    let (node1, node2) = (health(NODE1_IP), health(NODE2_IP));
    assert_eq!(node1.status, 200, "node1 has local endpoints: {node1:?}");
    assert!(node1.body.contains(r#""localEndpoints":2"#), "{}", node1.body);
    assert!(node1.body.contains(r#""name":"local-lb""#), "{}", node1.body);
    assert_eq!(node2.status, 503, "node2 has none: {node2:?}");
    assert!(node2.body.contains(r#""localEndpoints":0"#), "{}", node2.body);
    let client = bed.client_ns().to_string();
    let from_outside = probe(&bed, &client, "", &["tcp", &addr(NODE2_IP, 30100).to_string()]);
    assert_eq!(from_outside[0].error.as_deref(), Some("timeout"), "dropped, not refused: {from_outside:?}");
    let from_outside = probe(&bed, &client, "", &["tcp", &addr(NODE1_IP, 30100).to_string(), "--count", "10"]);
    per_pod("local-lb from outside through node1", &from_outside);
    let inside = probe(&bed, &c_ns, "node2", &["tcp", &addr(NODE2_IP, 30100).to_string(), "--count", "30"]);
    assert_eq!(per_pod("local-lb from a node2 pod", &inside).keys().collect::<Vec<_>>(), [POD_A, POD_B]);

    // sessionAffinity: ClientIP: every connection of one pod goes to one
    // endpoint; the pods of the cluster as a whole still spread.
    for pod in [POD_A, POD_B, POD_C] {
        let sticky = probe(&bed, pod_ns(&bed, pod), node_of(&bed, pod), &["tcp", "10.96.9.3:80", "--count", "40"]);
        assert_eq!(per_pod(&format!("sticky from {pod}"), &sticky).len(), 1, "{pod} keeps one endpoint");
    }
}

/// Removes the endpoint with address `ip` from `service`'s EndpointSlice
/// in the examples' `endpointslices.yaml` of `dir`.
fn remove_endpoint(dir: &Path, service: &str, ip: &str) {
    let path = dir.join("endpointslices.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<String> = text
        .split("\n---\n")
        .map(|doc| {
            if !doc.contains(&format!("kubernetes.io/service-name: {service}\n")) {
                return doc.to_string();
            }
            let mut parts = doc.split("\n- addresses:");
            let mut kept = parts.next().unwrap().to_string();
            for endpoint in parts.filter(|e| !e.starts_with(&format!("\n  - {ip}\n"))) {
                kept.push_str("\n- addresses:");
                kept.push_str(endpoint);
            }
            kept
        })
        .collect();
    let changed = docs.join("\n---\n");
    assert_ne!(changed, text, "{service} has an endpoint {ip}");
    std::fs::write(&path, changed).unwrap();
}

fn pod_ip(bed: &TestBed, pod: &str) -> String {
    bed.pod(pod).unwrap().ip.to_string()
}

#[test]
fn removed_endpoints_new_connections_move_established_stay_and_resolvers_recover() {
    let manifests = copy_example_manifests().expect("manifests");
    let (bed, _lbs) = start(manifests.path());
    let a_ns = pod_ns(&bed, POD_A).to_string();
    // A kept-alive connection and a resolver-style UDP client, both from a
    // pod on node1, for 12 seconds.
    let hold = bed
        .spawn_probe(
            &a_ns,
            Some("node1"),
            &["hold", &NGINX_SERVICE.to_string(), "--seconds", "12", "--interval-ms", "100"],
        )
        .expect("hold");
    let resolver = bed
        .spawn_probe(
            &a_ns,
            Some("node1"),
            &["resolver", &DNS_LIKE.to_string(), "--seconds", "12", "--interval-ms", "100"],
        )
        .expect("resolver");
    // The same from a dual-stack (IPv6) socket, as a JVM's resolver.
    let resolver6 = bed
        .spawn_probe(
            &a_ns,
            Some("node1"),
            &["--mapped", "resolver", &DNS_LIKE.to_string(), "--seconds", "12", "--interval-ms", "100"],
        )
        .expect("resolver over IPv6");
    let first_pod = |handle: &ProcessHandle| {
        let mut found = None;
        wait_until(Duration::from_secs(5), || {
            found = lb_testbed::probe::parse_exchanges(&handle.process().stdout()).into_iter().find_map(|e| e.pod);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("the probe answers:\n{}", handle.logs(4000)))
    };
    let held = first_pod(&hold);
    let resolved = first_pod(&resolver);
    let resolved6 = first_pod(&resolver6);
    // Remove another pod than the held one from nginx-service, and the
    // resolvers' pods from echo-udp (the pods themselves keep running:
    // without lb destroying their sockets, the resolvers would go on asking
    // them).
    let other = [POD_A, POD_B, POD_C].into_iter().find(|p| *p != held).unwrap();
    let removed_at = Instant::now();
    remove_endpoint(manifests.path(), "nginx-service", &pod_ip(&bed, other));
    remove_endpoint(manifests.path(), "echo-udp", &pod_ip(&bed, &resolved));
    if resolved6 != resolved {
        remove_endpoint(manifests.path(), "echo-udp", &pod_ip(&bed, &resolved6));
    }

    // New connections avoid the removed pod (once the agents have the change).
    wait_until(Duration::from_secs(10), || {
        let fresh = probe(&bed, &a_ns, "node1", &["tcp", &NGINX_SERVICE.to_string(), "--count", "30"]);
        fresh.iter().all(|e| e.ok() && e.pod.as_deref() != Some(other))
    })
    .unwrap_or_else(|| panic!("new connections still reach {other}"));
    eprintln!("new connections avoid {other} {:?} after the change", removed_at.elapsed());

    for handle in [&hold, &resolver, &resolver6] {
        wait_until(Duration::from_secs(20), || !handle.process().is_running()).expect("the probes end");
    }
    // The established connection to another pod kept working throughout.
    let held_exchanges = lb_testbed::probe::parse_exchanges(&hold.process().stdout());
    assert!(held_exchanges.len() >= 60, "the held connection asked throughout: {}", held_exchanges.len());
    let pods = per_pod("the held connection", &held_exchanges);
    assert_eq!(pods.keys().collect::<Vec<_>>(), [&held]);

    // The resolvers were moved off the removed endpoints: their sockets
    // were destroyed, they opened new ones, and from then on a pod still in
    // the Service answers.
    let removed = [resolved.as_str(), resolved6.as_str()];
    for (what, handle) in [("resolver", &resolver), ("IPv6 resolver", &resolver6)] {
        let answers = lb_testbed::probe::parse_exchanges(&handle.process().stdout());
        let errors: Vec<&Exchange> = answers.iter().filter(|e| !e.ok()).collect();
        assert!(errors.len() <= 3, "the {what} recovers at once: {errors:?}");
        assert!(
            errors.iter().all(|e| matches!(e.error.as_deref(), Some("ECONNABORTED") | Some("EDESTADDRREQ"))),
            "{what}: only the destroyed socket's error: {errors:?}"
        );
        let last: Vec<&Exchange> = answers.iter().rev().take(30).collect();
        assert!(
            last.iter().all(|e| e.ok() && e.pod.as_deref().is_some_and(|p| !removed.contains(&p))),
            "the {what}'s last answers come from a pod still in the Service (not {removed:?}): {:?}",
            last.iter().map(|e| (&e.pod, &e.error)).collect::<Vec<_>>()
        );
    }
}
