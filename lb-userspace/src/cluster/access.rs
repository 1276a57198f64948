//! Every Kubernetes API call the agent makes, as RBAC sees it. The
//! manifests' ClusterRole and Role must grant exactly these (a test checks
//! it), and the fake-API tests check that the agent makes no other call.
//!
//! API discovery (`GET /apis/metallb.io/v1beta1`, asking whether MetalLB's
//! CRDs are installed) is not listed: discovery paths are non-resource URLs
//! that every authenticated client may read (the built-in
//! `system:discovery` ClusterRole), so no Role of ours grants them.

/// Where a permission applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessScope {
    /// Every namespace (a ClusterRole rule).
    Cluster,
    /// Only the agent's own namespace (`--leader-election-namespace`,
    /// `lb-system` in the manifests): a Role rule.
    OwnNamespace,
}

/// One resource (or subresource) and the verbs used on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiAccess {
    /// The API group; `""` is the core group.
    pub group: &'static str,
    /// The resource, with `/subresource` when it is one (`services/status`).
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub scope: AccessScope,
}

const fn cluster(group: &'static str, resource: &'static str, verbs: &'static [&'static str]) -> ApiAccess {
    ApiAccess { group, resource, verbs, scope: AccessScope::Cluster }
}

/// The calls the agent makes.
pub const API_ACCESS: &[ApiAccess] = &[
    // Reflectors: the objects the snapshot is built from.
    cluster("", "services", &["list", "watch"]),
    cluster("", "nodes", &["list", "watch"]),
    cluster("", "secrets", &["list", "watch"]),
    // Their labels select MetalLB pools (`serviceAllocation.namespaceSelectors`).
    cluster("", "namespaces", &["list", "watch"]),
    cluster("discovery.k8s.io", "endpointslices", &["list", "watch"]),
    cluster("networking.k8s.io", "ingresses", &["list", "watch"]),
    cluster("networking.k8s.io", "ingressclasses", &["list", "watch"]),
    // MetalLB's pools and layer-2 advertisements, watched while their CRDs
    // are installed.
    cluster("metallb.io", "ipaddresspools", &["list", "watch"]),
    cluster("metallb.io", "l2advertisements", &["list", "watch"]),
    // Status, written by the leader.
    cluster("", "services/status", &["patch"]),
    cluster("networking.k8s.io", "ingresses/status", &["patch"]),
    // Events on the objects we reject (kube-runtime's recorder creates an
    // event, then patches its series when it repeats).
    cluster("events.k8s.io", "events", &["create", "patch"]),
    // Leader election and each node's liveness Lease (held: get, create,
    // update; all node Leases followed: list, watch).
    ApiAccess {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update", "list", "watch"],
        scope: AccessScope::OwnNamespace,
    },
];
