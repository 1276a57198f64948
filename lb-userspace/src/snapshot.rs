//! Everything the agent knows about the cluster at one moment, as plain data.
//!
//! Sources (the manifests directory, or the Kubernetes API) produce
//! snapshots; compilers read them. A snapshot never refers to maps, routes
//! or sockets, so two snapshots of the same objects compare equal.

use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The objects the agent uses, each list in canonical order (by namespace,
/// then name; see [`Snapshot::sort`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub ingresses: Vec<Ingress>,
    /// IngressClasses are cluster-scoped: their namespace is empty.
    pub ingress_classes: Vec<IngressClass>,
    /// Only TLS material is used (`tls.crt`, `tls.key`).
    pub secrets: Vec<Secret>,
    /// The cluster's Nodes (cluster-scoped): their addresses are the
    /// Ingress status with `ingressStatus: nodes`, and this node's
    /// `topology.kubernetes.io/zone` label selects topology hints.
    pub nodes: Vec<Node>,
}

impl Snapshot {
    /// A snapshot of these objects, sorted canonically so that two loads of
    /// the same objects, in whatever order, compare equal.
    pub fn new(services: Vec<Service>, endpoint_slices: Vec<EndpointSlice>) -> Self {
        let mut snapshot = Self { services, endpoint_slices, ..Self::default() };
        snapshot.sort();
        snapshot
    }

    /// Puts every list in canonical order (by namespace, then name).
    pub fn sort(&mut self) {
        sort_by_key(&mut self.services);
        sort_by_key(&mut self.endpoint_slices);
        sort_by_key(&mut self.ingresses);
        sort_by_key(&mut self.ingress_classes);
        sort_by_key(&mut self.secrets);
        sort_by_key(&mut self.nodes);
    }
}

/// The canonical ordering key of an object: (namespace, name).
pub fn object_key(meta: &ObjectMeta) -> (&str, &str) {
    (meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}

fn sort_by_key<K: Metadata<Ty = ObjectMeta>>(objects: &mut [K]) {
    objects.sort_by(|a, b| object_key(a.metadata()).cmp(&object_key(b.metadata())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(namespace: &str, name: &str) -> Service {
        Service {
            metadata: ObjectMeta { namespace: Some(namespace.into()), name: Some(name.into()), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn sorts_by_namespace_then_name() {
        let a = Snapshot::new(vec![service("b", "a"), service("a", "z"), service("a", "b")], vec![]);
        let names: Vec<_> = a.services.iter().map(|s| object_key(&s.metadata)).collect();
        assert_eq!(names, [("a", "b"), ("a", "z"), ("b", "a")]);
        let b = Snapshot::new(vec![service("a", "b"), service("b", "a"), service("a", "z")], vec![]);
        assert_eq!(a, b);
    }
}
