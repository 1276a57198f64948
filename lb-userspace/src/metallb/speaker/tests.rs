use super::*;
use crate::compile::test_support::snapshot;

const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
    metadata: {name: first-pool, namespace: metallb-system}\n\
    spec: {addresses: [192.168.1.150-192.168.1.200]}\n---\n";
const ADVERTISEMENT: &str = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\n\
    metadata: {name: l2, namespace: metallb-system}\nspec: {ipAddressPools: [first-pool]}\n---\n";

fn node(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n\
         status: {{conditions: [{{type: Ready, status: \"True\"}}]}}\n---\n"
    )
}

/// 192.168.1.150's owner among node1 and node2 is node1 by MetalLB's rule.
fn service(ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\n\
         spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n\
         status: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n---\n"
    )
}

fn speaker(node: &str) -> Speaker {
    let eth0 = L2Uplink {
        name: "eth0".into(),
        ifindex: 7,
        mac: [2, 0, 0, 0, 0, 0x11],
        networks: vec![("192.168.1.11".parse().unwrap(), 24)],
    };
    let other = L2Uplink {
        name: "eth1".into(),
        ifindex: 8,
        mac: [2, 0, 0, 0, 0, 0x22],
        networks: vec![("10.0.0.11".parse().unwrap(), 24)],
    };
    Speaker::new(node.into(), vec![eth0, other], Vec::new())
}

#[test]
fn the_owner_answers_on_the_uplink_of_the_address_lan_and_announces_once() {
    let yaml = [POOL, ADVERTISEMENT, &node("node1", ""), &node("node2", ""), &service("192.168.1.150")].concat();
    let snapshot = snapshot(&yaml);
    let mut node1 = speaker("node1");
    let update = node1.update(&snapshot, |_| true);
    let key = L2VipKey { ifindex: 7, addr: addr_to_map("192.168.1.150".parse().unwrap()) };
    assert_eq!(update.entries, BTreeMap::from([(key, L2Vip { mac: [2, 0, 0, 0, 0, 0x11], _pad: [0; 2] })]));
    assert_eq!(
        update.gained,
        vec![Takeover {
            ifindex: 7,
            interface: "eth0".into(),
            mac: [2, 0, 0, 0, 0, 0x11],
            ip: "192.168.1.150".parse().unwrap()
        }]
    );
    assert!(update.lost.is_empty() && update.diagnostics.is_empty());
    // Nothing new the second time: no second gratuitous ARP.
    let again = node1.update(&snapshot, |_| true);
    assert_eq!(again.entries.len(), 1);
    assert!(again.gained.is_empty() && again.lost.is_empty());
    // node2 is not the owner.
    assert!(speaker("node2").update(&snapshot, |_| true).entries.is_empty());
}

#[test]
fn an_excluded_or_dead_owner_hands_the_address_to_the_next_node() {
    let yaml = [POOL, ADVERTISEMENT, &node("node1", ""), &node("node2", ""), &service("192.168.1.150")].concat();
    let (mut node1, mut node2) = (speaker("node1"), speaker("node2"));
    node1.update(&snapshot(&yaml), |_| true);
    node2.update(&snapshot(&yaml), |_| true);
    let excluded = [
        POOL,
        ADVERTISEMENT,
        &node("node1", "node.kubernetes.io/exclude-from-external-load-balancers: \"\""),
        &node("node2", ""),
        &service("192.168.1.150"),
    ]
    .concat();
    let lost = node1.update(&snapshot(&excluded), |_| true);
    assert!(lost.entries.is_empty());
    assert_eq!(lost.lost.len(), 1);
    assert_eq!(lost.lost[0].ip.to_string(), "192.168.1.150");
    let gained = node2.update(&snapshot(&excluded), |_| true);
    assert_eq!(gained.gained.len(), 1);
    assert_eq!(gained.entries.len(), 1);
    // node1's agent dead (its Lease expired): node2 owns it as well.
    let mut node2 = speaker("node2");
    assert_eq!(node2.update(&snapshot(&yaml), |n| n != "node1").entries.len(), 1);
}

#[test]
fn addresses_outside_the_pools_and_a_bad_advertisement_are_not_announced() {
    let bad = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\n\
        metadata: {name: bad, namespace: metallb-system}\nspec: {ipAddressPools: [first-pool], serviceSelectors: [{}]}\n---\n";
    let yaml = [POOL, bad, &node("node1", ""), &service("192.168.1.150")].concat();
    let update = speaker("node1").update(&snapshot(&yaml), |_| true);
    assert!(update.entries.is_empty());
    assert_eq!(update.diagnostics.len(), 1, "{:?}", update.diagnostics);
    assert!(update.diagnostics[0].to_string().contains("bad"), "{}", update.diagnostics[0]);
    let yaml = [POOL, ADVERTISEMENT, &node("node1", ""), &service("192.168.9.150")].concat();
    assert!(speaker("node1").update(&snapshot(&yaml), |_| true).entries.is_empty());
}
