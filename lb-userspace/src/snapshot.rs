//! Everything the agent knows about the cluster at one moment, as plain data.
//!
//! Sources (the manifests directory, or the Kubernetes API) produce
//! snapshots; compilers read them. A snapshot never refers to maps, routes
//! or sockets, so two snapshots of the same objects compare equal.
//!
//! Each kind's objects are an [`Objects`]: a persistent map that a source
//! copies and changes in time that does not grow with the cluster, sharing
//! every object (`Arc`) and every part of the map that did not change, so
//! [`Snapshot::changes_since`] finds what changed without reading the
//! rest, and a compiler can then work on those alone.

mod objects;

pub use objects::Objects;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::compile::endpoints::SERVICE_NAME_LABEL;
use crate::metallb::objects::{IpAddressPoolObject, L2AdvertisementObject};

/// The objects the agent uses, each kind in canonical order (by namespace,
/// then name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub services: Objects<Service>,
    pub endpoint_slices: Objects<EndpointSlice>,
    pub ingresses: Objects<Ingress>,
    /// IngressClasses are cluster-scoped: their namespace is empty.
    pub ingress_classes: Objects<IngressClass>,
    /// Only TLS material is used (`tls.crt`, `tls.key`).
    pub secrets: Objects<Secret>,
    /// The cluster's Nodes (cluster-scoped): their addresses are the
    /// Ingress status with `ingressStatus: nodes`, and this node's
    /// `topology.kubernetes.io/zone` label selects topology hints.
    pub nodes: Objects<Node>,
    /// The cluster's Namespaces (cluster-scoped), with only their name and
    /// labels: MetalLB pools' `serviceAllocation.namespaceSelectors` match
    /// them.
    pub namespaces: Objects<Namespace>,
    /// MetalLB's pools and layer-2 advertisements (from its CRDs, or from
    /// manifests files).
    pub ip_address_pools: Objects<IpAddressPoolObject>,
    pub l2_advertisements: Objects<L2AdvertisementObject>,
}

/// An object's (namespace, name).
pub type ObjectKey = (String, String);

/// The objects that differ between two snapshots, by kind: added, removed
/// or changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub services: BTreeSet<ObjectKey>,
    pub endpoint_slices: BTreeSet<ObjectKey>,
    pub ingresses: BTreeSet<ObjectKey>,
    pub ingress_classes: BTreeSet<ObjectKey>,
    pub secrets: BTreeSet<ObjectKey>,
    pub nodes: BTreeSet<ObjectKey>,
    pub namespaces: BTreeSet<ObjectKey>,
    pub ip_address_pools: BTreeSet<ObjectKey>,
    pub l2_advertisements: BTreeSet<ObjectKey>,
}

impl Changes {
    /// The Services (namespace, name; an empty namespace is `default`) whose
    /// object or EndpointSlices changed from `old` to `new`: a slice counts
    /// for the Service its `kubernetes.io/service-name` label names, before
    /// and after the change.
    pub fn services_concerned(&self, old: &Snapshot, new: &Snapshot) -> BTreeSet<ObjectKey> {
        let key = |namespace: &str, name: &str| {
            (if namespace.is_empty() { "default" } else { namespace }.to_string(), name.to_string())
        };
        let mut out: BTreeSet<ObjectKey> = self.services.iter().map(|(ns, n)| key(ns, n)).collect();
        for (namespace, name) in &self.endpoint_slices {
            for snapshot in [old, new] {
                let slice = snapshot.endpoint_slice(namespace, name);
                let labels = slice.and_then(|s| s.metadata.labels.as_ref());
                if let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                    out.insert(key(namespace, service));
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.endpoint_slices.is_empty()
            && self.ingresses.is_empty()
            && self.ingress_classes.is_empty()
            && self.secrets.is_empty()
            && self.nodes.is_empty()
            && self.namespaces.is_empty()
            && self.ip_address_pools.is_empty()
            && self.l2_advertisements.is_empty()
    }
}

impl Snapshot {
    /// A snapshot of these objects (in canonical order, whatever their
    /// order here).
    pub fn new(services: Vec<Service>, endpoint_slices: Vec<EndpointSlice>) -> Self {
        Self { services: services.into(), endpoint_slices: endpoint_slices.into(), ..Self::default() }
    }

    /// What differs from `old`. What both share is skipped unread; the
    /// rest is compared by content, so a source that rebuilt an equal object
    /// reports no change.
    pub fn changes_since(&self, old: &Snapshot) -> Changes {
        Changes {
            services: self.services.changed_since(&old.services),
            endpoint_slices: self.endpoint_slices.changed_since(&old.endpoint_slices),
            ingresses: self.ingresses.changed_since(&old.ingresses),
            ingress_classes: self.ingress_classes.changed_since(&old.ingress_classes),
            secrets: self.secrets.changed_since(&old.secrets),
            nodes: self.nodes.changed_since(&old.nodes),
            namespaces: self.namespaces.changed_since(&old.namespaces),
            ip_address_pools: self.ip_address_pools.changed_since(&old.ip_address_pools),
            l2_advertisements: self.l2_advertisements.changed_since(&old.l2_advertisements),
        }
    }

    /// Whether `self` holds the same objects as `other` (cheaper than `==`
    /// when they share most objects).
    pub fn same_as(&self, other: &Snapshot) -> bool {
        self.changes_since(other).is_empty()
    }

    /// The Service `namespace`/`name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        self.services.get(namespace, name)
    }

    /// The Service `name` of `namespace` as a reference to it names it: in
    /// `default`, a Service without a namespace is found too.
    pub fn service_in(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        let found = self.service(namespace, name);
        found.or_else(|| if namespace == "default" { self.service("", name) } else { None })
    }

    /// The EndpointSlice `namespace`/`name`.
    pub fn endpoint_slice(&self, namespace: &str, name: &str) -> Option<&Arc<EndpointSlice>> {
        self.endpoint_slices.get(namespace, name)
    }
}

/// What a snapshot keeps of a Namespace: its name and labels (all that
/// pools' namespace selectors read), so that its status and annotations
/// neither take memory nor count as changes.
pub fn keep_name_and_labels(namespace: &mut Namespace) {
    let metadata = std::mem::take(&mut namespace.metadata);
    *namespace = Namespace {
        metadata: ObjectMeta { name: metadata.name, labels: metadata.labels, ..ObjectMeta::default() },
        ..Namespace::default()
    };
}

/// The canonical ordering key of an object: (namespace, name).
pub fn object_key(meta: &ObjectMeta) -> (&str, &str) {
    (meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
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

    #[test]
    fn changes_are_the_objects_added_removed_or_changed() {
        let old = Snapshot::new(vec![service("a", "kept"), service("a", "gone"), service("b", "edited")], vec![]);
        let mut new = old.clone();
        new.services.retain(|s| s.metadata.name.as_deref() != Some("gone"));
        let mut edited = service("b", "edited");
        edited.metadata.labels = Some([("k".to_string(), "v".to_string())].into());
        new.services.insert(Arc::new(edited));
        new.services.insert(Arc::new(service("c", "added")));
        // An equal object rebuilt by the source is no change.
        new.services.insert(Arc::new(service("a", "kept")));
        let changes = new.changes_since(&old);
        let keys: Vec<_> = changes.services.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
        assert_eq!(keys, ["a/gone", "b/edited", "c/added"]);
        assert!(changes.endpoint_slices.is_empty());
        assert!(new.same_as(&new.clone()) && !new.same_as(&old));
        assert_eq!(new.service("c", "added").map(|s| s.metadata.name.as_deref()), Some(Some("added")));
        assert!(new.service("a", "gone").is_none());
    }

    #[test]
    fn a_copy_changed_in_one_object_differs_in_that_object_alone() {
        let services: Vec<Service> = (0..5_000).map(|i| service(&format!("ns-{}", i % 7), &format!("s-{i}"))).collect();
        let old = Snapshot::new(services, vec![]);
        let mut new = old.clone();
        assert!(new.same_as(&old));
        let mut edited = service("ns-5", "s-2000");
        edited.metadata.labels = Some([("k".to_string(), "v".to_string())].into());
        new.services.insert(Arc::new(edited));
        assert!(new.services.remove("ns-3", "s-4000").is_some());
        new.services.insert(Arc::new(service("ns-0", "s-new")));
        // Rebuilt equal: no change.
        new.services.insert(Arc::new(service("ns-1", "s-1")));
        let changes = new.changes_since(&old);
        let keys: Vec<_> = changes.services.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
        assert_eq!(keys, ["ns-0/s-new", "ns-3/s-4000", "ns-5/s-2000"]);
        assert_eq!(old.services.len(), 5_000, "the old snapshot is unchanged");
        assert_eq!(new.services.len(), 5_000);
        // The reverse direction names the same objects.
        assert_eq!(old.changes_since(&new), changes);
    }
}
