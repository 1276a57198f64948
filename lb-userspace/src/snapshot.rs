//! Everything the agent knows about the cluster at one moment, as plain data.
//!
//! Sources (the manifests directory, or the Kubernetes API) produce
//! snapshots; compilers read them. A snapshot never refers to maps, routes
//! or sockets, so two snapshots of the same objects compare equal.
//!
//! Objects are shared (`Arc`): a source hands the next snapshot the very
//! objects that did not change, so [`Snapshot::changes_since`] finds what
//! changed by comparing pointers, without reading unchanged objects, and a
//! compiler can then work on those alone.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::compile::endpoints::SERVICE_NAME_LABEL;

/// The objects the agent uses, each list in canonical order (by namespace,
/// then name; see [`Snapshot::sort`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub ingresses: Vec<Arc<Ingress>>,
    /// IngressClasses are cluster-scoped: their namespace is empty.
    pub ingress_classes: Vec<Arc<IngressClass>>,
    /// Only TLS material is used (`tls.crt`, `tls.key`).
    pub secrets: Vec<Arc<Secret>>,
    /// The cluster's Nodes (cluster-scoped): their addresses are the
    /// Ingress status with `ingressStatus: nodes`, and this node's
    /// `topology.kubernetes.io/zone` label selects topology hints.
    pub nodes: Vec<Arc<Node>>,
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
    }
}

impl Snapshot {
    /// A snapshot of these objects, sorted canonically so that two loads of
    /// the same objects, in whatever order, compare equal.
    pub fn new(services: Vec<Service>, endpoint_slices: Vec<EndpointSlice>) -> Self {
        let mut snapshot = Self {
            services: services.into_iter().map(Arc::new).collect(),
            endpoint_slices: endpoint_slices.into_iter().map(Arc::new).collect(),
            ..Self::default()
        };
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

    /// What differs from `old`. Objects shared by both are skipped unread;
    /// the rest are compared by content, so a source that rebuilt an equal
    /// object reports no change. Both snapshots must be sorted.
    pub fn changes_since(&self, old: &Snapshot) -> Changes {
        Changes {
            services: changed(&old.services, &self.services),
            endpoint_slices: changed(&old.endpoint_slices, &self.endpoint_slices),
            ingresses: changed(&old.ingresses, &self.ingresses),
            ingress_classes: changed(&old.ingress_classes, &self.ingress_classes),
            secrets: changed(&old.secrets, &self.secrets),
            nodes: changed(&old.nodes, &self.nodes),
        }
    }

    /// Whether `self` holds the same objects as `other` (cheaper than `==`
    /// when they share most objects).
    pub fn same_as(&self, other: &Snapshot) -> bool {
        self.changes_since(other).is_empty()
    }

    /// The Service `namespace`/`name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        find(&self.services, namespace, name)
    }

    /// The Service `name` of `namespace` as a reference to it names it: in
    /// `default`, a Service without a namespace is found too.
    pub fn service_in(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        let found = self.service(namespace, name);
        found.or_else(|| if namespace == "default" { self.service("", name) } else { None })
    }

    /// The EndpointSlice `namespace`/`name`.
    pub fn endpoint_slice(&self, namespace: &str, name: &str) -> Option<&Arc<EndpointSlice>> {
        find(&self.endpoint_slices, namespace, name)
    }
}

/// The canonical ordering key of an object: (namespace, name).
pub fn object_key(meta: &ObjectMeta) -> (&str, &str) {
    (meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}

fn owned_key(meta: &ObjectMeta) -> ObjectKey {
    let (namespace, name) = object_key(meta);
    (namespace.to_string(), name.to_string())
}

fn sort_by_key<K: Metadata<Ty = ObjectMeta>>(objects: &mut [Arc<K>]) {
    objects.sort_by(|a, b| object_key(a.metadata()).cmp(&object_key(b.metadata())));
}

/// The object `namespace`/`name` of a sorted list.
fn find<'a, K: Metadata<Ty = ObjectMeta>>(objects: &'a [Arc<K>], namespace: &str, name: &str) -> Option<&'a Arc<K>> {
    let at = objects.binary_search_by(|o| object_key(o.metadata()).cmp(&(namespace, name))).ok()?;
    objects.get(at)
}

/// The keys of the objects added, removed or changed from `old` to `new`
/// (both sorted): a merge of the two lists.
fn changed<K: Metadata<Ty = ObjectMeta> + PartialEq>(old: &[Arc<K>], new: &[Arc<K>]) -> BTreeSet<ObjectKey> {
    let mut out = BTreeSet::new();
    let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => return out,
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {
                o.next();
                n.next();
            }
            (Some(a), Some(b)) => match object_key(a.metadata()).cmp(&object_key(b.metadata())) {
                std::cmp::Ordering::Equal => {
                    if a != b {
                        out.insert(owned_key(a.metadata()));
                    }
                    o.next();
                    n.next();
                }
                std::cmp::Ordering::Less => {
                    out.insert(owned_key(a.metadata()));
                    o.next();
                }
                std::cmp::Ordering::Greater => {
                    out.insert(owned_key(b.metadata()));
                    n.next();
                }
            },
            (Some(a), None) => {
                out.insert(owned_key(a.metadata()));
                o.next();
            }
            (None, Some(b)) => {
                out.insert(owned_key(b.metadata()));
                n.next();
            }
        }
    }
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
        new.services.push(Arc::new(edited));
        new.services.push(Arc::new(service("c", "added")));
        // An equal object rebuilt by the source is no change.
        new.services[0] = Arc::new(service("a", "kept"));
        new.sort();
        let changes = new.changes_since(&old);
        let keys: Vec<_> = changes.services.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
        assert_eq!(keys, ["a/gone", "b/edited", "c/added"]);
        assert!(changes.endpoint_slices.is_empty());
        assert!(new.same_as(&new.clone()) && !new.same_as(&old));
        assert_eq!(new.service("c", "added").map(|s| s.metadata.name.as_deref()), Some(Some("added")));
        assert!(new.service("a", "gone").is_none());
    }
}
