//! IPAM without an API server (`--manifests`): the same allocation as in a
//! cluster, from the `--config` pools and the MetalLB pools of the files,
//! its addresses put into the Services' status in the snapshot the data
//! path compiles. Nothing is written back to the files.

use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceStatus};

use super::ipam::{AddressPool, IpamOptions, allocate, namespace_labels};
use crate::diagnostics::Diagnostic;
use crate::metallb::pools::{all_pools, metallb_pools};
use crate::snapshot::{Snapshot, object_key};

/// `snapshot` with each managed Service's status showing its allocated
/// address (or none), and the problems: pools left out, Services left
/// without an address. Without any pool the snapshot is returned as it is.
pub fn with_addresses(
    snapshot: &Snapshot,
    configured: &[AddressPool],
    options: &IpamOptions,
) -> (Snapshot, Vec<Diagnostic>) {
    let (metallb, mut diagnostics) = metallb_pools(configured, &snapshot.ip_address_pools);
    let pools = all_pools(configured, &metallb);
    let allocation = allocate(&pools, &snapshot.services, &namespace_labels(&snapshot.namespaces), options);
    for problem in &allocation.problems {
        let message = format!("{} ({}); it has no load-balancer address", problem.message, problem.reason.reason());
        diagnostics.push(Diagnostic::for_object("Service", &problem.namespace, &problem.name, "", message));
    }
    let mut out = snapshot.clone();
    for service in snapshot.services.iter() {
        let (namespace, name) = object_key(&service.metadata);
        if !allocation.is_managed(namespace, name) {
            continue;
        }
        let address = allocation.assignments.get(&(namespace.to_string(), name.to_string())).copied();
        if shown(service) != address.map(|ip| vec![ip]).unwrap_or_default() {
            out.services.insert(Arc::new(showing(service, address)));
        }
    }
    (out, diagnostics)
}

/// The IPv4 addresses a Service's status shows.
fn shown(service: &Service) -> Vec<Ipv4Addr> {
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_deref());
    ingress.unwrap_or_default().iter().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect()
}

/// `service` with its status showing `address` (as the status writer
/// writes it in a cluster: `ipMode: VIP`), or no address.
fn showing(service: &Service, address: Option<Ipv4Addr>) -> Service {
    let ingress = address.map(|ip| {
        vec![LoadBalancerIngress { ip: Some(ip.to_string()), ip_mode: Some("VIP".into()), ..Default::default() }]
    });
    let mut service = service.clone();
    let status = service.status.get_or_insert_with(ServiceStatus::default);
    status.load_balancer = Some(LoadBalancerStatus { ingress });
    service
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::test_support::snapshot;

    const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: first, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: second, namespace: default, creationTimestamp: "2026-01-02T00:00:00Z"}
spec: {type: LoadBalancer, loadBalancerIP: 192.168.1.199, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: outside, namespace: default}
spec: {type: LoadBalancer, loadBalancerIP: 10.1.1.1, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 10.1.1.1}]}}
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: default}
spec: {type: ClusterIP, ports: [{port: 80}]}
"#;

    fn pool_object() -> crate::metallb::objects::IpAddressPoolObject {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "metallb-system", "name": "first-pool"},
            "spec": {"addresses": ["192.168.1.150-192.168.1.200"]},
        }))
        .unwrap()
    }

    fn address(snapshot: &Snapshot, name: &str) -> Vec<Ipv4Addr> {
        shown(snapshot.services.get("default", name).unwrap())
    }

    #[test]
    fn metallb_pools_of_the_files_give_addresses_in_memory() {
        let mut input = snapshot(OBJECTS);
        input.ip_address_pools = [pool_object()].into_iter().collect();
        let (out, diagnostics) = with_addresses(&input, &[], &IpamOptions::default());
        assert_eq!(address(&out, "first"), ["192.168.1.150".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(address(&out, "second"), ["192.168.1.199".parse::<Ipv4Addr>().unwrap()]);
        // Outside every pool: no address, and why.
        assert!(address(&out, "outside").is_empty());
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert!(
            diagnostics[0].object == "Service default/outside" && diagnostics[0].message.contains("AddressNotInPool")
        );
        // Unmanaged Services are the same objects.
        assert!(Arc::ptr_eq(
            out.services.get("default", "plain").unwrap(),
            input.services.get("default", "plain").unwrap()
        ));
        // The same input again: the same addresses (stickiness through
        // the status put in memory).
        let (again, _) = with_addresses(&out, &[], &IpamOptions::default());
        assert!(again.same_as(&out));
    }

    /// A pool for the Namespaces labelled `team: web` (by priority before
    /// the general pool), and Services in such a Namespace, in another one
    /// and in one no Namespace object describes.
    const BY_NAMESPACE: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: web-pool, namespace: metallb-system}
spec:
  addresses: [192.168.2.10/32]
  serviceAllocation:
    priority: 1
    namespaceSelectors: [{matchLabels: {team: web}}]
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: general, namespace: metallb-system}
spec: {addresses: [192.168.3.0/24]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: web}}
---
apiVersion: v1
kind: Namespace
metadata: {name: db, labels: {team: data}}
---
apiVersion: v1
kind: Service
metadata: {name: front, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: store, namespace: db}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: stray, namespace: undescribed}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"#;

    #[test]
    fn namespace_selectors_match_the_labels_of_the_snapshots_namespaces() {
        let input = snapshot(BY_NAMESPACE);
        let (out, diagnostics) = with_addresses(&input, &[], &IpamOptions::default());
        assert_eq!(diagnostics, []);
        let shown_in = |namespace: &str, name: &str| shown(out.services.get(namespace, name).unwrap());
        assert_eq!(shown_in("shop", "front"), ["192.168.2.10".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(shown_in("db", "store"), ["192.168.3.0".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(shown_in("undescribed", "stray"), ["192.168.3.1".parse::<Ipv4Addr>().unwrap()]);

        // The label moves to another Namespace: so does the pool's address.
        let moved = BY_NAMESPACE
            .replace("{name: shop, labels: {team: web}}", "{name: shop}")
            .replace("{name: db, labels: {team: data}}", "{name: db, labels: {team: web}}");
        let (out, _) = with_addresses(&snapshot(&moved), &[], &IpamOptions::default());
        let shown_in = |namespace: &str, name: &str| shown(out.services.get(namespace, name).unwrap());
        assert_eq!(shown_in("db", "store"), ["192.168.2.10".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(shown_in("shop", "front"), ["192.168.3.0".parse::<Ipv4Addr>().unwrap()]);
    }

    #[test]
    fn without_pools_the_snapshot_is_untouched() {
        let input = snapshot(OBJECTS);
        let (out, diagnostics) = with_addresses(&input, &[], &IpamOptions::default());
        assert!(out.same_as(&input) && diagnostics.is_empty());
        assert_eq!(address(&out, "outside"), ["10.1.1.1".parse::<Ipv4Addr>().unwrap()]);
    }
}
