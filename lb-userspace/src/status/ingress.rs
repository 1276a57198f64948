//! Ingress status: the addresses clients reach our Ingresses at, written to
//! `status.loadBalancer.ingress` of every Ingress of our classes (as
//! ingress-nginx does with `--publish-service`, or with node addresses).
//! Ingresses of other classes are never touched.

use k8s_openapi::api::core::v1::{NodeAddress, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};

use crate::cli::ServiceName;
use crate::compile::l7::{L7Options, our_ingresses};
use crate::config::IngressStatusSource;
use crate::snapshot::{Snapshot, object_key};

/// One address of `status.loadBalancer.ingress`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatusAddress {
    Ip(String),
    Hostname(String),
}

impl StatusAddress {
    /// The address of a status entry: its IP, else its host name.
    fn of(ip: &Option<String>, hostname: &Option<String>) -> Option<Self> {
        match (ip, hostname) {
            (Some(ip), _) if !ip.is_empty() => Some(Self::Ip(ip.clone())),
            (_, Some(h)) if !h.is_empty() => Some(Self::Hostname(h.clone())),
            _ => None,
        }
    }

    pub fn to_ingress(&self) -> IngressLoadBalancerIngress {
        match self {
            Self::Ip(ip) => IngressLoadBalancerIngress { ip: Some(ip.clone()), ..Default::default() },
            Self::Hostname(h) => IngressLoadBalancerIngress { hostname: Some(h.clone()), ..Default::default() },
        }
    }
}

/// An Ingress whose status must change, and the addresses it must show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressStatusUpdate {
    pub namespace: String,
    pub name: String,
    pub addresses: Vec<StatusAddress>,
}

/// The addresses of our Ingresses, sorted and without repeats:
/// - `Service`: the LoadBalancer addresses of the controller's Service
///   (`--ingress-service`), else its `spec.externalIPs`; none while it has
///   neither (or does not exist).
/// - `Nodes`: each Node's ExternalIP addresses, else its InternalIP ones.
pub fn ingress_addresses(
    snapshot: &Snapshot,
    source: IngressStatusSource,
    service: &ServiceName,
) -> Vec<StatusAddress> {
    let mut out = match source {
        IngressStatusSource::Service => {
            snapshot.service(&service.namespace, &service.name).map(|s| service_addresses(s)).unwrap_or_default()
        }
        IngressStatusSource::Nodes => snapshot
            .nodes
            .iter()
            .flat_map(|node| {
                let addresses = node.status.as_ref().and_then(|s| s.addresses.as_deref()).unwrap_or_default();
                node_addresses(addresses)
            })
            .collect(),
    };
    out.sort();
    out.dedup();
    out
}

fn service_addresses(service: &Service) -> Vec<StatusAddress> {
    let balancer = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_deref());
    let from_balancer: Vec<StatusAddress> =
        balancer.unwrap_or_default().iter().filter_map(|i| StatusAddress::of(&i.ip, &i.hostname)).collect();
    if !from_balancer.is_empty() {
        return from_balancer;
    }
    let external = service.spec.as_ref().and_then(|s| s.external_ips.as_deref()).unwrap_or_default();
    external.iter().map(|ip| StatusAddress::Ip(ip.clone())).collect()
}

fn node_addresses(addresses: &[NodeAddress]) -> Vec<StatusAddress> {
    let of_type = |kind: &str| -> Vec<StatusAddress> {
        addresses.iter().filter(|a| a.type_ == kind).map(|a| StatusAddress::Ip(a.address.clone())).collect()
    };
    let external = of_type("ExternalIP");
    if external.is_empty() { of_type("InternalIP") } else { external }
}

/// The Ingresses of our classes whose status differs from `addresses`.
pub fn ingress_updates(
    snapshot: &Snapshot,
    options: &L7Options,
    addresses: &[StatusAddress],
) -> Vec<IngressStatusUpdate> {
    our_ingresses(snapshot, options)
        .into_iter()
        .filter(|ingress| current_addresses(ingress) != addresses)
        .map(|ingress| {
            let (namespace, name) = object_key(&ingress.metadata);
            IngressStatusUpdate { namespace: namespace.into(), name: name.into(), addresses: addresses.to_vec() }
        })
        .collect()
}

/// The addresses an Ingress shows now, sorted.
fn current_addresses(ingress: &Ingress) -> Vec<StatusAddress> {
    let current = ingress.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_deref());
    let mut out: Vec<StatusAddress> =
        current.unwrap_or_default().iter().filter_map(|i| StatusAddress::of(&i.ip, &i.hostname)).collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::test_support::snapshot;

    const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: lb-ingress, namespace: lb-system}
spec: {type: LoadBalancer, ports: [{name: http, port: 80}]}
status: {loadBalancer: {ingress: [{ip: 192.168.1.151}, {hostname: lb.example.com}]}}
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
---
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

    #[test]
    fn addresses_of_the_controller_service() {
        let snapshot = snapshot(OBJECTS);
        let addresses = ingress_addresses(&snapshot, IngressStatusSource::Service, &ingress_service());
        assert_eq!(
            addresses,
            [StatusAddress::Ip("192.168.1.151".into()), StatusAddress::Hostname("lb.example.com".into())]
        );
        let missing: ServiceName = "lb-system/absent".parse().unwrap();
        assert!(ingress_addresses(&snapshot, IngressStatusSource::Service, &missing).is_empty());
    }

    #[test]
    fn external_ips_when_the_service_has_no_balancer_address() {
        let snapshot = snapshot(
            "apiVersion: v1\nkind: Service\nmetadata: {name: lb-ingress, namespace: lb-system}\n\
             spec: {externalIPs: [198.51.100.7], ports: [{port: 80}]}\n",
        );
        let addresses = ingress_addresses(&snapshot, IngressStatusSource::Service, &ingress_service());
        assert_eq!(addresses, [StatusAddress::Ip("198.51.100.7".into())]);
    }

    #[test]
    fn node_addresses_prefer_external_ones() {
        let snapshot = snapshot(OBJECTS);
        let addresses = ingress_addresses(&snapshot, IngressStatusSource::Nodes, &ingress_service());
        assert_eq!(addresses, [StatusAddress::Ip("10.0.0.1".into()), StatusAddress::Ip("203.0.113.2".into())]);
    }

    #[test]
    fn only_our_ingresses_that_differ_are_updated() {
        let snapshot = snapshot(OBJECTS);
        let addresses = ingress_addresses(&snapshot, IngressStatusSource::Service, &ingress_service());
        let updates = ingress_updates(&snapshot, &L7Options::default(), &addresses);
        let names: Vec<&str> = updates.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["ours"]);
        assert_eq!(updates[0].addresses, addresses);
        // With no address, the one that shows some is cleared.
        let cleared = ingress_updates(&snapshot, &L7Options::default(), &[]);
        let names: Vec<&str> = cleared.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["done"]);
    }
}
