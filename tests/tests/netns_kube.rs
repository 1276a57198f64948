//! The agent with its XDP data path on a bed node, following the fake API
//! server (served inside the node's network namespace, where the agent
//! reaches it on 127.0.0.1): real traffic from the client to NodePort
//! 30007 reaches the pods the EndpointSlices name, and an EndpointSlice
//! changed through the API changes the BPF maps and the traffic.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use lb_common::maps::Backend;
use lb_testbed::fake_api::FakeApi;
use lb_testbed::{NODE1_IP, ProcessHandle, TestBed, example_manifests_dir, http_request};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(3);
const POD_B: &str = "nginx-7c5ddbdf54-8rz4m"; // node1, 10.244.1.11
const POD_B_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 11);

/// The pod answering one request on a fresh connection.
fn pod(bed: &TestBed, to: SocketAddr) -> String {
    let resp = http_request(bed.client_ns(), to, "/", &[], TIMEOUT).unwrap_or_else(|e| panic!("GET {to}: {e:#}"));
    assert_eq!(resp.status, 200, "GET {to}: {resp:?}");
    resp.pod_name().expect("answer names its pod")
}

fn spread(bed: &TestBed, to: SocketAddr, n: usize) -> BTreeMap<String, u32> {
    let mut per_pod = BTreeMap::new();
    for _ in 0..n {
        *per_pod.entry(pod(bed, to)).or_default() += 1;
    }
    per_pod
}

/// How many entries of the newest `BACKENDS` map point at each address
/// (the agent's map: it is the only data path this test binary loads).
fn backends_per_address() -> BTreeMap<Ipv4Addr, usize> {
    let newest = aya::maps::loaded_maps()
        .filter_map(Result::ok)
        .filter(|info| info.name_as_str() == Some("BACKENDS"))
        .map(|info| info.id())
        .max()
        .expect("a BACKENDS map is loaded");
    let map = BpfHashMap::<MapData, u32, Backend>::try_from(Map::HashMap(MapData::from_id(newest).unwrap())).unwrap();
    let mut out = BTreeMap::new();
    for entry in map.iter() {
        let (_, backend) = entry.expect("BACKENDS entry");
        *out.entry(Ipv4Addr::from(u32::from_be(backend.addr))).or_default() += 1;
    }
    out
}

/// The example EndpointSlice of `my-service-nodeport` without pod B.
fn slice_without_pod_b(api: &FakeApi) -> Value {
    let mut slice = api
        .get("discovery.k8s.io/v1", "EndpointSlice", Some("default"), "my-service-nodeport-x7k2p")
        .expect("the example slice is in the fake API");
    let endpoints = slice["endpoints"].as_array_mut().unwrap();
    endpoints.retain(|e| e.pointer("/targetRef/name").and_then(Value::as_str) != Some(POD_B));
    slice
}

#[test]
fn the_agent_routes_what_the_api_says_and_follows_an_endpointslice_change() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _serving = runtime.enter();
    let bed = TestBed::new().expect("test bed (needs root)");
    bed.start_echo_pods().expect("echo pods");

    let api = FakeApi::new();
    for file in ["services.yaml", "endpointslices.yaml"] {
        let yaml = std::fs::read_to_string(example_manifests_dir().join(file)).unwrap();
        api.apply_yaml(&yaml).unwrap_or_else(|e| panic!("{file}: {e:#}"));
    }
    let node1 = bed.node_ns("node1").unwrap().to_string();
    let addr = api.listen_in_netns(&node1).expect("fake API inside node1's namespace");
    let kubeconfig = bed.log_dir().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig(addr)).unwrap();
    let run = lb_testbed::LbRun::new().kubeconfig(&kubeconfig).interface("eth0").identity("node1");
    let lb: ProcessHandle = bed.start_lb_run("node1", run).expect("lb on node1");
    let nodeport = SocketAddr::from((NODE1_IP, 30007));
    lb_testbed::bed::wait_for_http(bed.client_ns(), nodeport, Duration::from_secs(30), Some(&lb))
        .expect("NodePort 30007 on node1 answers");

    let before = spread(&bed, nodeport, 60);
    assert_eq!(before.len(), 3, "the three pods of the slice answer: {before:?}");
    let maps_before = backends_per_address();
    assert!(maps_before.get(&POD_B_IP).is_some_and(|&n| n >= 1), "pod B is a backend: {maps_before:?}");

    // The EndpointSlice changes in the API: the maps and the traffic follow.
    api.apply(slice_without_pod_b(&api)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut maps_after = backends_per_address();
    while maps_after.get(&POD_B_IP) == maps_before.get(&POD_B_IP) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        maps_after = backends_per_address();
    }
    assert_eq!(
        maps_after.get(&POD_B_IP).copied().unwrap_or(0),
        maps_before[&POD_B_IP] - 1,
        "one backend entry of pod B is gone: {maps_before:?} → {maps_after:?}\n{}",
        lb.logs(8000)
    );
    for (ip, n) in &maps_before {
        if *ip != POD_B_IP {
            assert_eq!(maps_after.get(ip), Some(n), "other backends are untouched: {maps_before:?} → {maps_after:?}");
        }
    }
    let after = spread(&bed, nodeport, 60);
    assert!(!after.contains_key(POD_B), "pod B gets no new connection: {after:?}");
    assert_eq!(after.len(), 2, "the two remaining pods share the load: {after:?}");

    // The agent watched (list + watch) and, as the only agent, took the Lease.
    let calls = api.rbac_calls();
    for resource in ["services", "endpointslices"] {
        let group = if resource == "services" { "" } else { "discovery.k8s.io" };
        assert!(calls.contains(&(group.into(), resource.into(), "watch".into())), "{resource} watched: {calls:?}");
    }
    let holder = api
        .get("coordination.k8s.io/v1", "Lease", Some("lb-system"), "lb-leader")
        .and_then(|l| l.pointer("/spec/holderIdentity").and_then(Value::as_str).map(str::to_string));
    assert_eq!(holder.as_deref(), Some("node1"));
    drop(lb);
}
