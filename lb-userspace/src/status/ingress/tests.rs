//! Tests of [`super`]: which addresses, and which Ingresses to write.

use super::*;
use crate::compile::test_support::snapshot;
use crate::status::ipam::{AllocationProblem, ProblemReason};

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: lb-ingress, namespace: lb-system}
spec: {type: LoadBalancer, ports: [{name: http, port: 80}]}
status: {loadBalancer: {ingress: [{ip: 192.168.1.151}, {hostname: lb.example.com}]}}
"#;

/// node1 has only an InternalIP, node2 an ExternalIP too, node3 (no
/// agent in most tests) shares node2's ExternalIP (behind one NAT).
const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node3}
status: {addresses: [{type: InternalIP, address: 10.0.0.3}, {type: ExternalIP, address: 203.0.113.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: node1}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}, {type: Hostname, address: node1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2}
status: {addresses: [{type: InternalIP, address: 10.0.0.2}, {type: ExternalIP, address: 203.0.113.2}]}
"#;

const INGRESSES: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ours, namespace: default}
spec: {ingressClassName: lb, defaultBackend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: done, namespace: default}
spec: {ingressClassName: lb, defaultBackend: {service: {name: web, port: {number: 80}}}}
status: {loadBalancer: {ingress: [{hostname: lb.example.com}, {ip: 192.168.1.151}]}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: theirs, namespace: default}
spec: {ingressClassName: other, defaultBackend: {service: {name: web, port: {number: 80}}}}
"#;

fn ingress_service() -> ServiceName {
    "lb-system/lb-ingress".parse().unwrap()
}

fn alive(nodes: &[&str]) -> AgentNodes {
    AgentNodes::Alive(nodes.iter().map(|n| n.to_string()).collect())
}

fn ips(addresses: &[&str]) -> Vec<StatusAddress> {
    addresses.iter().map(|a| StatusAddress::Ip(a.to_string())).collect()
}

/// The addresses with `source`, the default Service name, no IPAM.
fn addresses_with(snapshot: &Snapshot, source: IngressStatusSource, agents: &AgentNodes) -> Option<IngressAddresses> {
    let (service, allocation) = (ingress_service(), Allocation::default());
    let inputs = AddressInputs { source, service: &service, allocation: &allocation, agents };
    ingress_addresses(snapshot, &inputs)
}

fn addresses(snapshot: &Snapshot, agents: &AgentNodes) -> Option<IngressAddresses> {
    addresses_with(snapshot, IngressStatusSource::Service, agents)
}

fn snapshot_with_service() -> Snapshot {
    snapshot(&format!("{SERVICE}---{NODES}"))
}

fn from_nodes(addresses: &[&str]) -> Option<IngressAddresses> {
    Some(IngressAddresses { origin: AddressOrigin::AgentNodes, addresses: ips(addresses) })
}

#[test]
fn addresses_of_the_controller_service_whatever_the_nodes() {
    let snapshot = snapshot_with_service();
    let expected = Some(IngressAddresses {
        origin: AddressOrigin::Service,
        addresses: vec![StatusAddress::Ip("192.168.1.151".into()), StatusAddress::Hostname("lb.example.com".into())],
    });
    assert_eq!(addresses(&snapshot, &alive(&["node1"])), expected);
    // Known or not, the agents' nodes do not matter while it has an address.
    assert_eq!(addresses(&snapshot, &AgentNodes::Unknown), expected);
}

#[test]
fn external_ips_when_the_service_has_no_balancer_address() {
    let snapshot = snapshot(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: lb-ingress, namespace: lb-system}}\n\
         spec: {{externalIPs: [198.51.100.7], ports: [{{port: 80}}]}}\n---{NODES}",
    ));
    let found = addresses(&snapshot, &alive(&["node1"])).unwrap();
    assert_eq!((found.origin, found.addresses), (AddressOrigin::Service, ips(&["198.51.100.7"])));
}

#[test]
fn the_agents_nodes_when_the_service_is_missing() {
    let snapshot = snapshot(NODES);
    assert_eq!(addresses(&snapshot, &alive(&["node1", "node2"])), from_nodes(&["10.0.0.1", "203.0.113.2"]));
    // The Service `--ingress-service` names is not this one: missing too.
    let (other, allocation) = ("lb-system/absent".parse().unwrap(), Allocation::default());
    let agents = alive(&["node1"]);
    let inputs = AddressInputs {
        source: IngressStatusSource::Service,
        service: &other,
        allocation: &allocation,
        agents: &agents,
    };
    assert_eq!(ingress_addresses(&snapshot_with_service(), &inputs), from_nodes(&["10.0.0.1"]));
}

#[test]
fn the_agents_nodes_when_the_service_has_no_address() {
    let snapshot = snapshot(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: lb-ingress, namespace: lb-system}}\n\
         spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\nstatus: {{loadBalancer: {{ingress: [{{ip: ''}}]}}}}\n---{NODES}",
    ));
    assert_eq!(addresses(&snapshot, &alive(&["node2"])), from_nodes(&["203.0.113.2"]));
    // Not known yet: the Ingresses are left alone.
    assert_eq!(addresses(&snapshot, &AgentNodes::Unknown), None);
}

#[test]
fn node_addresses_prefer_external_ones_and_are_sorted_without_repeats() {
    let snapshot = snapshot(NODES);
    // node2 and node3 share 203.0.113.2; node3's InternalIP is not used.
    assert_eq!(addresses(&snapshot, &AgentNodes::Every), from_nodes(&["10.0.0.1", "203.0.113.2"]));
    let nodes = addresses_with(&snapshot, IngressStatusSource::Nodes, &alive(&["node3", "node1"]));
    assert_eq!(nodes, from_nodes(&["10.0.0.1", "203.0.113.2"]));
    // A live Lease of a node without a Node object adds nothing; no
    // agent's node at all: no address.
    assert_eq!(addresses(&snapshot, &alive(&["node1", "gone"])), from_nodes(&["10.0.0.1"]));
    assert_eq!(addresses(&snapshot, &alive(&[])), from_nodes(&[]));
}

#[test]
fn with_ingress_status_nodes_the_service_is_not_read() {
    let snapshot = snapshot_with_service();
    let found = addresses_with(&snapshot, IngressStatusSource::Nodes, &alive(&["node1"]));
    assert_eq!(found, from_nodes(&["10.0.0.1"]));
    assert_eq!(addresses_with(&snapshot, IngressStatusSource::Nodes, &AgentNodes::Unknown), None);
}

#[test]
fn the_address_the_ipam_allocates_counts_before_it_is_written() {
    // The Service shows its old address; the IPAM gives it another.
    let snapshot = snapshot_with_service();
    let service = ingress_service();
    let key = ("lb-system".to_string(), "lb-ingress".to_string());
    let agents = alive(&["node1"]);
    let mut allocation = Allocation::default();
    allocation.assignments.insert(key.clone(), "192.0.2.9".parse().unwrap());
    let inputs = AddressInputs {
        source: IngressStatusSource::Service,
        service: &service,
        allocation: &allocation,
        agents: &agents,
    };
    let found = ingress_addresses(&snapshot, &inputs).unwrap();
    assert_eq!((found.origin, found.addresses), (AddressOrigin::Service, ips(&["192.0.2.9"])));
    // The IPAM leaves it without one (its status is being cleared): the nodes.
    let problem = AllocationProblem {
        namespace: key.0,
        name: key.1,
        reason: ProblemReason::PoolExhausted,
        message: "no address left".into(),
    };
    let allocation = Allocation { assignments: Default::default(), problems: vec![problem] };
    let inputs = AddressInputs { allocation: &allocation, ..inputs };
    assert_eq!(ingress_addresses(&snapshot, &inputs), from_nodes(&["10.0.0.1"]));
}

#[test]
fn the_agents_nodes_are_known_once_the_leaders_own_lease_is_seen() {
    let (duration, set) = (Duration::from_secs(15), |nodes: &[&str]| -> BTreeSet<String> {
        nodes.iter().map(|n| n.to_string()).collect()
    });
    let early = Duration::from_secs(1);
    assert_eq!(AgentNodes::new(set(&["a", "b"]), "a", early, duration), alive(&["a", "b"]));
    // Other nodes' Leases listed before this node's own: not yet.
    assert_eq!(AgentNodes::new(set(&["b"]), "a", early, duration), AgentNodes::Unknown);
    assert_eq!(AgentNodes::new(set(&[]), "a", early, duration), AgentNodes::Unknown);
    // Its own never seen within a lease duration: the Leases cannot be followed.
    assert_eq!(AgentNodes::new(set(&["b"]), "a", duration, duration), AgentNodes::Every);
    assert_eq!(AgentNodes::new(set(&["a"]), "a", duration * 10, duration), alive(&["a"]));
}

#[test]
fn only_our_ingresses_that_differ_are_updated() {
    let snapshot = snapshot(&format!("{SERVICE}---{INGRESSES}"));
    let found = addresses(&snapshot, &AgentNodes::Unknown).unwrap();
    let updates = ingress_updates(&snapshot, &L7Options::default(), &found.addresses, &PendingWrites::default());
    let names: Vec<&str> = updates.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["ours"]);
    assert_eq!(updates[0].addresses, found.addresses);
    // With no address, the one that shows some is cleared.
    let cleared = ingress_updates(&snapshot, &L7Options::default(), &[], &PendingWrites::default());
    let names: Vec<&str> = cleared.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["done"]);
}

#[test]
fn a_status_written_is_not_written_again_until_the_ingress_changes() {
    let with_version = |version: &str, ips: &str| {
        snapshot(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, namespace: default, resourceVersion: '{version}'}}\n\
             spec: {{ingressClassName: lb, defaultBackend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n\
             status: {{loadBalancer: {{ingress: [{ips}]}}}}\n"
        ))
    };
    let (options, mut pending) = (L7Options::default(), PendingWrites::default());
    let (both, one) = (ips(&["10.0.0.1", "10.0.0.2"]), ips(&["10.0.0.1"]));
    let v7 = with_version("7", "");
    let updates = ingress_updates(&v7, &options, &both, &pending);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].resource_version.as_deref(), Some("7"));
    pending.record(&updates[0], Some("8".into()));
    // The next round still sees version 7 (the write is on its way): nothing.
    pending.forget_seen(&v7);
    assert!(ingress_updates(&v7, &options, &both, &pending).is_empty());
    // Other addresses are written at once all the same (making version 9)...
    let updates = ingress_updates(&v7, &options, &one, &pending);
    assert_eq!(updates.len(), 1);
    pending.record(&updates[0], Some("9".into()));
    // ...and the first write coming back (version 8) is not undone.
    let v8 = with_version("8", "{ip: 10.0.0.1}, {ip: 10.0.0.2}");
    pending.forget_seen(&v8);
    assert!(ingress_updates(&v8, &options, &one, &pending).is_empty());
    // The second comes back: nothing to write.
    let v9 = with_version("9", "{ip: 10.0.0.1}");
    pending.forget_seen(&v9);
    assert!(ingress_updates(&v9, &options, &one, &pending).is_empty());
    // Someone else overwrote it: forgotten, written again.
    let v10 = with_version("10", "{ip: 198.51.100.1}");
    pending.forget_seen(&v10);
    assert!(pending.writes.is_empty());
    assert_eq!(ingress_updates(&v10, &options, &one, &pending).len(), 1);
    // An Ingress gone is forgotten.
    pending.record(&IngressStatusUpdate { resource_version: Some("10".into()), ..updates[0].clone() }, None);
    pending.forget_seen(&Snapshot::default());
    assert!(pending.writes.is_empty());
}
