//! Service status from the IPAM's allocation: which Services of type
//! LoadBalancer must show a new address, or none.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;

use super::ipam::Allocation;
use crate::snapshot::{Snapshot, object_key};

/// A managed Service whose `status.loadBalancer.ingress` must change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatusUpdate {
    pub namespace: String,
    pub name: String,
    /// The address it must show; `None`: no address (it was left without
    /// one, see the allocation's problems).
    pub address: Option<Ipv4Addr>,
}

/// The Services the allocation manages whose status shows something else
/// than their allocated address. Services it does not manage are left
/// alone.
pub fn service_updates(snapshot: &Snapshot, allocation: &Allocation) -> Vec<ServiceStatusUpdate> {
    let mut out = Vec::new();
    for service in &snapshot.services {
        let (namespace, name) = object_key(&service.metadata);
        if !allocation.is_managed(namespace, name) {
            continue;
        }
        let key = (namespace.to_string(), name.to_string());
        let address = allocation.assignments.get(&key).copied();
        let wanted: Vec<String> = address.iter().map(Ipv4Addr::to_string).collect();
        if shown_addresses(service) != wanted {
            out.push(ServiceStatusUpdate { namespace: key.0, name: key.1, address });
        }
    }
    out
}

/// The addresses a Service's status shows (IPs and hostnames).
fn shown_addresses(service: &Service) -> Vec<String> {
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_deref());
    ingress.unwrap_or_default().iter().filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::test_support::snapshot;
    use crate::config::AgentConfig;
    use crate::status::ipam::{IpamOptions, allocate};

    const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: new, namespace: default, creationTimestamp: "2026-01-02T00:00:00Z"}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: settled, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {type: LoadBalancer, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 192.168.1.240, ipMode: VIP}]}}
---
apiVersion: v1
kind: Service
metadata: {name: lost, namespace: default, creationTimestamp: "2026-01-03T00:00:00Z", annotations: {lb.dev/address-pool: nope}}
spec: {type: LoadBalancer, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 192.168.1.250}]}}
---
apiVersion: v1
kind: Service
metadata: {name: someone-elses, namespace: default}
spec: {type: LoadBalancer, loadBalancerClass: other.io/lb, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 10.1.1.1}]}}
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: default}
spec: {type: ClusterIP, ports: [{port: 80}]}
"#;

    #[test]
    fn writes_new_addresses_clears_the_unallocated_and_leaves_the_rest_alone() {
        let config = AgentConfig::parse("addressPools: [{name: lan, addresses: [192.168.1.240/29]}]", "test").unwrap();
        let snapshot = snapshot(SERVICES);
        let allocation =
            allocate(&config.address_pools, &snapshot.services, &Default::default(), &IpamOptions::default());
        let updates = service_updates(&snapshot, &allocation);
        let update = |name: &str, address: Option<Ipv4Addr>| ServiceStatusUpdate {
            namespace: "default".into(),
            name: name.into(),
            address,
        };
        assert_eq!(updates, [update("lost", None), update("new", Some(Ipv4Addr::new(192, 168, 1, 241)))]);
    }

    #[test]
    fn no_pools_touch_nothing() {
        let snapshot = snapshot(SERVICES);
        let allocation = allocate(&[], &snapshot.services, &Default::default(), &IpamOptions::default());
        assert!(service_updates(&snapshot, &allocation).is_empty());
    }
}
