//! MetalLB's layer 2, served by lb, on the bed: the client has no route
//! for the LoadBalancer addresses beyond its connected LAN, so it reaches
//! them only because one node answers ARP for each. The agents serve the
//! example manifests, which hold the users' MetalLB pool and
//! L2Advertisement unchanged and LoadBalancer Services without a status.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use lb_testbed::arp::{ArpListener, format_mac, mac_of, neighbour, who_has};
use lb_testbed::fake_api::FakeApi;
use lb_testbed::{
    CLIENT_IP, INGRESS_IP, LOADBALANCER_IP, LbRun, NODE1_IP, NODE2_IP, ProcessHandle, TestBed, copy_example_manifests,
    example_manifests_dir, http_request,
};

const TIMEOUT: Duration = Duration::from_secs(3);
const ANSWERS_WITHIN: Duration = Duration::from_millis(500);
/// In the pool, given to no Service.
const UNALLOCATED: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 160);
const EXCLUDE: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

fn start(manifests: &std::path::Path) -> (TestBed, Vec<ProcessHandle>) {
    let bed = TestBed::builder().load_balancer_routes(false).build().expect("test bed (needs root)");
    bed.start_echo_pods().expect("echo pods");
    let lbs = bed.start_lb_on_every_node(manifests).expect("start lb");
    for (node, lb) in [NODE1_IP, NODE2_IP].into_iter().zip(&lbs) {
        lb_testbed::bed::wait_for_http(
            bed.client_ns(),
            SocketAddr::from((node, 30007)),
            Duration::from_secs(30),
            Some(lb),
        )
        .unwrap_or_else(|e| panic!("NodePort 30007 on {node} answers: {e:#}"));
    }
    (bed, lbs)
}

/// The owner of `ip` among `nodes` by MetalLB's rule, computed here from
/// the rule itself: the lowest `sha256(node + "#" + ip)`.
fn owner_by_rule<'n>(ip: Ipv4Addr, nodes: &[&'n str]) -> &'n str {
    use sha2::{Digest, Sha256};
    nodes.iter().copied().min_by_key(|node| Sha256::digest(format!("{node}#{ip}"))).expect("a node")
}

/// Who answers an ARP request for `ip` from the client.
fn answers(bed: &TestBed, client_mac: [u8; 6], ip: Ipv4Addr) -> Vec<[u8; 6]> {
    who_has(bed.client_ns(), "eth0", (client_mac, CLIENT_IP), ip, ANSWERS_WITHIN).expect("asking who has")
}

/// `n` requests on fresh connections to `to`: pods by answers; panics on a
/// failure.
fn spread(bed: &TestBed, to: SocketAddr, host: Option<&str>, n: usize) -> BTreeMap<String, usize> {
    let mut pods = BTreeMap::new();
    for i in 0..n {
        let headers: Vec<(&str, &str)> = host.map(|h| vec![("Host", h)]).unwrap_or_default();
        let resp = http_request(bed.client_ns(), to, "/", &headers, TIMEOUT)
            .unwrap_or_else(|e| panic!("request #{i} to {to}: {e:#}"));
        assert_eq!(resp.status, 200, "request #{i} to {to}: {resp:?}");
        *pods.entry(resp.pod_name().expect("the answer names its pod")).or_default() += 1;
    }
    pods
}

#[test]
fn one_node_answers_arp_for_each_pool_address_and_the_next_takes_over() {
    let manifests = copy_example_manifests().expect("example manifests");
    let (bed, _lbs) = start(manifests.path());
    let client_mac = mac_of(bed.client_ns(), "eth0").unwrap();
    let node_mac: BTreeMap<&str, [u8; 6]> =
        ["node1", "node2"].into_iter().map(|n| (n, mac_of(bed.node_ns(n).unwrap(), "eth0").unwrap())).collect();
    let name_of = |mac: &[u8; 6]| node_mac.iter().find(|(_, m)| *m == mac).map(|(n, _)| n.to_string());

    // nginx2-service got the pool's first address in memory; lb-ingress the
    // one its spec.loadBalancerIP asks for. Each is answered by exactly one
    // node: the owner by MetalLB's rule.
    for ip in [LOADBALANCER_IP, INGRESS_IP] {
        let owner = owner_by_rule(ip, &["node1", "node2"]);
        let got = answers(&bed, client_mac, ip);
        let names: Vec<_> = got.iter().map(|m| name_of(m).unwrap_or_else(|| format_mac(m))).collect();
        assert_eq!(names, [owner], "ARP for {ip}: one answer, from its owner {owner}");
    }
    // A pool address no Service has: no answer.
    assert_eq!(answers(&bed, client_mac, UNALLOCATED), Vec::<[u8; 6]>::new(), "{UNALLOCATED} is not allocated");

    // TCP to the address (no route but the LAN's) spreads over the pods.
    let vip = SocketAddr::from((LOADBALANCER_IP, 8088));
    let pods = spread(&bed, vip, None, 30);
    assert_eq!(pods.len(), 3, "all three pods answer through {vip}: {pods:?}");
    // The Ingress controller's address, as spec.loadBalancerIP asked.
    let pods = spread(&bed, SocketAddr::from((INGRESS_IP, 80)), Some("a.com"), 3);
    assert!(!pods.is_empty());

    // The owner of LOADBALANCER_IP is excluded from load balancers: the
    // other node takes it over and announces it.
    let owner = owner_by_rule(LOADBALANCER_IP, &["node1", "node2"]);
    let next = if owner == "node1" { "node2" } else { "node1" };
    let cached = neighbour(bed.client_ns(), LOADBALANCER_IP).unwrap();
    assert_eq!(cached, Some(node_mac[owner]), "the client's neighbour entry points at the owner");
    let next_mac = node_mac[next];
    let listener = ArpListener::start(bed.client_ns(), "eth0", Duration::from_secs(10), move |p| {
        p.is_gratuitous() && p.sender_ip == LOADBALANCER_IP && p.sender_mac == next_mac
    })
    .unwrap();
    let nodes = manifests.path().join("nodes.yaml");
    let text = std::fs::read_to_string(&nodes).unwrap();
    let excluded = text.replacen(
        &format!("  name: {owner}\n  labels:\n"),
        &format!("  name: {owner}\n  labels:\n    {EXCLUDE}: \"\"\n"),
        1,
    );
    assert_ne!(excluded, text, "the owner's labels are found in nodes.yaml");
    std::fs::write(&nodes, excluded).unwrap();
    let (announcement, after) = listener.wait().unwrap().unwrap_or_else(|| {
        bed.dump_logs();
        panic!("no gratuitous ARP for {LOADBALANCER_IP} from {next} within 10 s")
    });
    eprintln!("gratuitous ARP from {next} after {after:?}: {announcement:?}");
    assert!(after < Duration::from_secs(5), "the takeover is announced within 5 s (took {after:?})");
    // The client's entry moved without anyone flushing it, and the address
    // keeps working.
    assert_eq!(
        neighbour(bed.client_ns(), LOADBALANCER_IP).unwrap(),
        Some(next_mac),
        "the client follows the gratuitous ARP"
    );
    let pods = spread(&bed, vip, None, 30);
    assert_eq!(pods.len(), 3, "all three pods answer through {vip} after the takeover: {pods:?}");
    let got: Vec<_> = answers(&bed, client_mac, LOADBALANCER_IP).iter().filter_map(name_of).collect();
    assert_eq!(got, [next], "only {next} answers now");
}

/// `lb-system/lb-node-node1`, as node1's agent would hold it, renewed now.
fn node1_lease(duration_s: u32) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "lb-node-node1", "namespace": "lb-system"},
        "spec": {"holderIdentity": "node1", "leaseDurationSeconds": duration_s, "acquireTime": now, "renewTime": now},
    })
}

/// With the API: node1's agent is represented by its node Lease, renewed
/// by the test (node1 runs no agent); node2's agent follows the fake API.
/// While node1's Lease is renewed, node1 owns 192.168.1.150 and node2
/// stays silent; when it expires, node2 takes the address over within the
/// lease time and announces it; when it is renewed again, node2 lets go.
#[test]
fn with_the_api_a_node_whose_lease_expires_loses_its_addresses_to_the_next() {
    const LEASE_S: u32 = 4;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _serving = runtime.enter();
    let bed = TestBed::builder().load_balancer_routes(false).build().expect("test bed (needs root)");
    bed.start_echo_pods().expect("echo pods");
    let api = FakeApi::new();
    api.install_crds("metallb.io").unwrap();
    for file in ["services.yaml", "endpointslices.yaml", "nodes.yaml", "metallb-pool.yaml"] {
        let yaml = std::fs::read_to_string(example_manifests_dir().join(file)).unwrap();
        api.apply_yaml(&yaml).unwrap_or_else(|e| panic!("{file}: {e:#}"));
    }
    api.apply(node1_lease(LEASE_S)).unwrap();
    // node1's "agent": renews while `renewing`.
    let renewing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let (api, renewing, stop) = (api.clone(), renewing.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if renewing.load(std::sync::atomic::Ordering::Relaxed) {
                    api.apply(node1_lease(LEASE_S)).unwrap();
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let node2 = bed.node_ns("node2").unwrap().to_string();
    let addr = api.listen_in_netns(&node2).expect("fake API inside node2's namespace");
    let kubeconfig = bed.log_dir().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig(addr)).unwrap();
    let run = LbRun::new().kubeconfig(&kubeconfig).interface("eth0").identity("node2");
    let lb: ProcessHandle = bed.start_lb_run("node2", run).expect("lb on node2");
    lb_testbed::bed::wait_for_http(
        bed.client_ns(),
        SocketAddr::from((NODE2_IP, 30007)),
        Duration::from_secs(30),
        Some(&lb),
    )
    .expect("NodePort 30007 on node2 answers");
    // The leader (node2's agent) gives nginx2-service the pool's first address.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = || {
        api.get("v1", "Service", Some("default"), "nginx2-service")
            .and_then(|s| s.pointer("/status/loadBalancer/ingress/0/ip").and_then(|v| v.as_str()).map(str::to_string))
    };
    while status().as_deref() != Some("192.168.1.150") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        status().as_deref(),
        Some("192.168.1.150"),
        "the MetalLB pool from the API gives the address\n{}",
        lb.logs(8000)
    );
    assert_eq!(owner_by_rule(LOADBALANCER_IP, &["node1", "node2"]), "node1", "the test assumes node1 owns it");
    // node2's own Lease is there and held by its agent.
    let holder = api
        .get("coordination.k8s.io/v1", "Lease", Some("lb-system"), "lb-node-node2")
        .and_then(|l| l.pointer("/spec/holderIdentity").and_then(|v| v.as_str()).map(str::to_string));
    assert_eq!(holder.as_deref(), Some("node2"));

    let client_mac = mac_of(bed.client_ns(), "eth0").unwrap();
    let node2_mac = mac_of(&node2, "eth0").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        answers(&bed, client_mac, LOADBALANCER_IP),
        Vec::<[u8; 6]>::new(),
        "node1 (alive, no responder here) owns it"
    );

    // node1's agent "dies": its Lease is no longer renewed.
    let listener = ArpListener::start(bed.client_ns(), "eth0", Duration::from_secs(3 * LEASE_S as u64), move |p| {
        p.is_gratuitous() && p.sender_ip == LOADBALANCER_IP && p.sender_mac == node2_mac
    })
    .unwrap();
    renewing.store(false, std::sync::atomic::Ordering::Relaxed);
    let (_, after) = listener.wait().unwrap().unwrap_or_else(|| panic!("node2 never took over\n{}", lb.logs(8000)));
    eprintln!("node2 took 192.168.1.150 over {after:?} after node1's last renewal (lease {LEASE_S} s)");
    // The lease, the observer's 2 s read period and the last renewal's 0.5 s.
    assert!(after <= Duration::from_secs(LEASE_S as u64 + 3), "took {after:?}");
    assert_eq!(answers(&bed, client_mac, LOADBALANCER_IP), [node2_mac], "node2 answers now");
    let pods = spread(&bed, SocketAddr::from((LOADBALANCER_IP, 8088)), None, 10);
    assert!(!pods.is_empty());

    // node1 comes back: it owns the address again, node2 lets go.
    renewing.store(true, std::sync::atomic::Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !answers(&bed, client_mac, LOADBALANCER_IP).is_empty() && std::time::Instant::now() < deadline {}
    assert_eq!(answers(&bed, client_mac, LOADBALANCER_IP), Vec::<[u8; 6]>::new(), "node2 no longer answers");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    renewer.join().unwrap();
    drop(lb);
}
