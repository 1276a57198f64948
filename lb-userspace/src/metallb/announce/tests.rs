use serde_json::json;

use super::*;
use crate::compile::test_support::snapshot;
use crate::metallb::resources::{parse_advertisement, parse_pool};

fn node(name: &str, ready: bool, labels: &str) -> String {
    let status = if ready { "True" } else { "False" };
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n\
         status: {{conditions: [{{type: Ready, status: \"{status}\"}}]}}\n---\n"
    )
}

fn service(name: &str, ip: &str, policy: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n\
         spec: {{type: LoadBalancer, externalTrafficPolicy: {policy}, ports: [{{port: 80}}]}}\n\
         status: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n---\n"
    )
}

/// An EndpointSlice of `service` with one ready endpoint on `node`.
fn endpoint_on(service: &str, node: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {service}-1, labels: {{kubernetes.io/service-name: {service}}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [10.244.2.10], nodeName: {node}, conditions: {{ready: true}}}}]\n\
         ports: [{{port: 80}}]\n---\n"
    )
}

fn pools() -> Vec<MetalLbPool> {
    let object = json!({"metadata": {"name": "first-pool", "namespace": "metallb-system"},
        "spec": {"addresses": ["192.168.1.150-192.168.1.200"]}});
    vec![parse_pool(&object).unwrap().0]
}

fn advertisement(spec: serde_json::Value) -> Vec<L2Advertisement> {
    vec![
        parse_advertisement(&json!({"metadata": {"name": "l2", "namespace": "metallb-system"}, "spec": spec})).unwrap(),
    ]
}

fn eth0(addr: &str) -> Vec<Uplink> {
    vec![Uplink { name: "eth0".into(), addr: addr.parse().unwrap(), prefix_len: 24 }]
}

/// Who announces 192.168.1.150 (owner by MetalLB's rule among node1 and
/// node2: node1), as node1 and node2 see it.
fn announcers(yaml: &str, ads: &[L2Advertisement]) -> Vec<(String, String)> {
    let snapshot = snapshot(yaml);
    let mut out = Vec::new();
    for (name, addr) in [("node1", "192.168.1.11"), ("node2", "192.168.1.12")] {
        for a in announcements(&snapshot, &pools(), ads, name, &eth0(addr), |_| true) {
            out.push((name.to_string(), format!("{} {} {}/{}", a.ip, a.interface, a.service.0, a.service.1)));
        }
    }
    out
}

fn expect(node: &str) -> Vec<(String, String)> {
    vec![(node.to_string(), "192.168.1.150 eth0 default/web".to_string())]
}

#[test]
fn exactly_one_node_announces_the_owner_by_the_rule() {
    let nodes = node("node1", true, "") + &node("node2", true, "") + &node("node3", false, "");
    let yaml = nodes.clone() + &service("web", "192.168.1.150", "Cluster");
    let all = advertisement(json!({}));
    assert_eq!(announcers(&yaml, &all), expect("node1"));
    // The owner excluded: the other node takes over.
    let excluded = node("node1", true, "node.kubernetes.io/exclude-from-external-load-balancers: ''")
        + &node("node2", true, "")
        + &service("web", "192.168.1.150", "Cluster");
    assert_eq!(announcers(&excluded, &all), expect("node2"));
    // The owner's agent gone (its Lease expired): the same.
    let snapshot = snapshot(&yaml);
    let alive = |n: &str| n != "node1";
    let node2 = announcements(&snapshot, &pools(), &all, "node2", &eth0("192.168.1.12"), alive);
    assert_eq!(node2.len(), 1);
    // nodeSelectors narrow the candidates.
    let only_node2 = advertisement(json!({"nodeSelectors": [{"matchLabels": {"lan": "yes"}}]}));
    let labelled =
        node("node1", true, "") + &node("node2", true, "lan: 'yes'") + &service("web", "192.168.1.150", "Cluster");
    assert_eq!(announcers(&labelled, &only_node2), expect("node2"));
}

#[test]
fn local_policy_needs_a_ready_endpoint_on_the_node() {
    let yaml = node("node1", true, "")
        + &node("node2", true, "")
        + &service("web", "192.168.1.150", "Local")
        + &endpoint_on("web", "node2");
    assert_eq!(announcers(&yaml, &advertisement(json!({}))), expect("node2"));
}

#[test]
fn nothing_is_announced_without_a_covering_advertisement_or_outside_the_uplinks() {
    let nodes = node("node1", true, "") + &node("node2", true, "");
    let yaml = nodes.clone() + &service("web", "192.168.1.150", "Cluster");
    assert_eq!(announcers(&yaml, &[]), [], "no advertisement");
    let other_pool = advertisement(json!({"ipAddressPools": ["another"]}));
    assert_eq!(announcers(&yaml, &other_pool), [], "the advertisement covers another pool");
    let eth1_only = advertisement(json!({"interfaces": ["eth1"]}));
    assert_eq!(announcers(&yaml, &eth1_only), [], "not on eth0");
    let elsewhere = nodes.clone() + &service("web", "192.168.9.150", "Cluster");
    assert_eq!(announcers(&elsewhere, &advertisement(json!({}))), [], "not in a pool");
    // In the pool but outside the uplink's subnet.
    let snapshot = snapshot(&yaml);
    let far = vec![Uplink { name: "eth0".into(), addr: "10.0.0.11".parse().unwrap(), prefix_len: 24 }];
    assert!(announcements(&snapshot, &pools(), &advertisement(json!({})), "node1", &far, |_| true).is_empty());
}
