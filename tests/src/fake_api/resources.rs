//! The resource types the fake API server knows, and its discovery documents.
//!
//! Built-in types are always served. Custom resources (MetalLB's) are
//! served only once a test installs their CRDs ([`super::FakeApi::install_crds`]):
//! until then their group is missing from discovery and their paths answer
//! `404`, as on a cluster without them.

use std::collections::BTreeSet;

use serde_json::{Value, json};

/// One resource type: where it lives in the URL space and what it is called.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// API version inside the group (`v1`).
    pub version: &'static str,
    /// Plural resource name used in URLs (`services`).
    pub plural: &'static str,
    /// Kind (`Service`).
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the type has a `status` subresource (then writes to the object
    /// leave `status` alone and writes to `/status` change only `status`).
    pub has_status: bool,
    /// Field selector labels supported besides `metadata.name` and
    /// `metadata.namespace` (as the real server, others are rejected with 400).
    pub fields: &'static [&'static str],
    /// Whether the type is a custom resource, served only while its
    /// group's CRDs are installed.
    pub custom: bool,
}

impl ResourceType {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `ServiceList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `services` or `leases.coordination.k8s.io`, as in Status details and messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }
}

const fn rt(
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    has_status: bool,
    fields: &'static [&'static str],
) -> ResourceType {
    ResourceType { group, version: "v1", plural, kind, namespaced, has_status, fields, custom: false }
}

/// A namespaced custom resource without a status subresource.
const fn custom(group: &'static str, version: &'static str, plural: &'static str, kind: &'static str) -> ResourceType {
    ResourceType { group, version, plural, kind, namespaced: true, has_status: false, fields: &[], custom: true }
}

/// The groups of custom resources whose CRDs are installed.
pub type InstalledGroups = BTreeSet<String>;

impl ResourceType {
    /// Whether the server serves this type with `installed` CRD groups.
    pub fn served(&self, installed: &InstalledGroups) -> bool {
        !self.custom || installed.contains(self.group)
    }
}

const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const EVENT_FIELDS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "reason",
    "reportingController",
    "type",
];
const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

/// Every resource type served.
pub static RESOURCES: &[ResourceType] = &[
    rt("", "services", "Service", true, true, &[]),
    rt("", "endpoints", "Endpoints", true, false, &[]),
    rt("", "nodes", "Node", false, true, &["spec.unschedulable"]),
    rt("", "secrets", "Secret", true, false, &["type"]),
    rt("", "configmaps", "ConfigMap", true, false, &[]),
    rt("", "namespaces", "Namespace", false, true, &["status.phase"]),
    rt("", "pods", "Pod", true, true, POD_FIELDS),
    rt("", "events", "Event", true, false, CORE_EVENT_FIELDS),
    rt("discovery.k8s.io", "endpointslices", "EndpointSlice", true, false, &[]),
    rt("networking.k8s.io", "ingresses", "Ingress", true, true, &[]),
    rt("networking.k8s.io", "ingressclasses", "IngressClass", false, false, &[]),
    rt("coordination.k8s.io", "leases", "Lease", true, false, &[]),
    rt("events.k8s.io", "events", "Event", true, false, EVENT_FIELDS),
    custom("metallb.io", "v1beta1", "ipaddresspools", "IPAddressPool"),
    custom("metallb.io", "v1beta1", "l2advertisements", "L2Advertisement"),
];

/// The type served at `/api{s}/{group}/{version}/{plural}`.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The type of objects with this `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Index of a type in [`RESOURCES`] (the store's key).
pub fn index_of(res: &'static ResourceType) -> usize {
    RESOURCES.iter().position(|r| std::ptr::eq(r, res)).expect("resource type from RESOURCES")
}

/// `/api`: the core group's versions.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
}

/// `/apis`: every named group served (each with its one version).
pub fn group_list(installed: &InstalledGroups) -> Value {
    let mut groups: Vec<(&str, &str)> =
        RESOURCES.iter().filter(|r| !r.group.is_empty() && r.served(installed)).map(|r| (r.group, r.version)).collect();
    groups.dedup();
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/api/v1` or `/apis/{group}/{version}`: the group version's resources, or
/// `None` when it serves none.
pub fn resource_list(group: &str, version: &str, installed: &InstalledGroups) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group && r.version == version && r.served(installed)) {
        let verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
        resources.push(json!({
            "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
            "kind": r.kind, "verbs": verbs,
        }));
        if r.has_status {
            resources.push(json!({
                "name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}
