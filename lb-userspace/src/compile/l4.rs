//! The L4 compiler: Services and EndpointSlices → frontends, service views,
//! backends and Maglev rows, with kube-proxy's semantics.
//!
//! - Every port of a `ClusterIP`, `NodePort` or `LoadBalancer` Service is a
//!   service port. `ExternalName` and headless Services are skipped, and so
//!   are Services labelled `service.kubernetes.io/service-proxy-name`
//!   (another proxy serves them) or `service.kubernetes.io/headless`, as
//!   kube-proxy skips them; SCTP ports are diagnosed and skipped.
//! - Frontends of traffic from outside (the XDP program): each node address
//!   × `nodePort` (NodePort and LoadBalancer), each `spec.externalIPs` entry
//!   × `port`, and for LoadBalancer each `status.loadBalancer.ingress[].ip`
//!   (or, when there is none, `spec.loadBalancerIP`) × `port`. They use the
//!   node's endpoints with `externalTrafficPolicy: Local`, else the
//!   cluster's.
//! - Frontends of the cluster's own sockets (the socket programs): each
//!   IPv4 `spec.clusterIPs` entry × `port`, using the node's endpoints with
//!   `internalTrafficPolicy: Local`, else the cluster's; and every frontend
//!   above again with the cluster's endpoints (kube-proxy sends pods'
//!   traffic to external addresses to every endpoint, whatever
//!   `externalTrafficPolicy` says), node ports on every Node's addresses
//!   (`InternalIP`, `ExternalIP`) too, so a pod reaching another node's
//!   node port goes straight to an endpoint.
//! - IPv6 addresses are skipped. A frontend claimed twice goes to the first
//!   Service (by namespace, then name) and the other one is diagnosed.
//! - Each (service port, endpoint scope) that some frontend uses is a
//!   [`ServiceView`] with its own backends and Maglev row (see
//!   [`super::endpoints`] for the selection, topology hints included). A
//!   view may have no backends: new flows are then rejected, or dropped
//!   when the Service has endpoints on other nodes (a `Local` policy), as
//!   kube-proxy does.
//! - `sessionAffinity: ClientIP` gives every view of the port its
//!   `timeoutSeconds` (default 10800).
//! - The ingress controller's Service (`NodeContext::ingress`) is the
//!   exception: its HTTP and HTTPS ports go to this node's proxy in every
//!   view (see [`IngressHandoff`]).
//! - If `options.maglev_table_size` is not a prime (≥ 2), a single
//!   diagnostic is returned and no entry gets a Maglev row.

mod claims;
mod frontends;
mod incremental;
mod maglev_rows;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod random_changes;
mod service;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServicePort;
use lb_common::maglev;

use super::endpoints::ServiceRef;
use super::tables::{BackendAddr, DataplaneTables, MaglevRow, Protocol};
use crate::diagnostics::Diagnostic;
use crate::snapshot::Snapshot;
pub use incremental::L4Compiler;
use maglev_rows::MaglevRows;

/// The node the tables are compiled for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeContext {
    /// The node's name, as in `EndpointSlice` endpoints' `nodeName`.
    pub name: String,
    /// The node's IPv4 addresses, on which NodePorts answer.
    pub addresses: Vec<Ipv4Addr>,
    /// The ingress controller's Service, whose HTTP(S) ports go to this
    /// node's proxy.
    pub ingress: Option<IngressHandoff>,
}

/// The local redirect of the ingress controller's entry points: the
/// Service's `http` port (by name, else port 80) and `https` port (by name,
/// else 443) get this node's proxy listeners as their only backend, instead
/// of the Service's endpoints. The data path then DNATs the flows to the
/// local listener and the kernel delivers them (see ARCHITECTURE.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressHandoff {
    pub namespace: String,
    pub name: String,
    pub http: BackendAddr,
    pub https: BackendAddr,
}

impl IngressHandoff {
    /// The proxy listener for `port` of the ingress Service, if it is the
    /// HTTP or HTTPS port.
    fn listener(&self, svc: &ServiceRef<'_>, port: &ServicePort, protocol: Protocol) -> Option<BackendAddr> {
        if (svc.namespace, svc.name) != (self.namespace.as_str(), self.name.as_str()) || protocol != Protocol::Tcp {
            return None;
        }
        match (port.name.as_deref(), port.port) {
            (Some("http"), _) => Some(self.http),
            (Some("https"), _) => Some(self.https),
            (Some(_), _) => None,
            (None, 80) => Some(self.http),
            (None, 443) => Some(self.https),
            (None, _) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Maglev table size M: a prime, the length of every Maglev row.
    pub maglev_table_size: u32,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self { maglev_table_size: maglev::DEFAULT_TABLE_SIZE }
    }
}

/// Compiles the L4 tables of `node` from `snapshot` at once (an agent keeps
/// an [`L4Compiler`], which compiles only what changed). Problems in the
/// objects are returned as diagnostics; what they concern is left out and
/// everything else is compiled.
pub fn compile_l4(
    snapshot: &Snapshot,
    node: &NodeContext,
    options: &CompileOptions,
) -> (DataplaneTables, Vec<Diagnostic>) {
    let mut compiler = L4Compiler::new(node.clone(), options.clone());
    let (_, diagnostics) = compiler.compile(&Arc::new(snapshot.clone()));
    (compiler.into_tables(), diagnostics)
}

/// The label of Services that another proxy serves (kube-proxy skips them).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// The label of Services without a cluster IP to serve (kube-proxy skips them).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The Node label topology hints refer to.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// kube-proxy's default and maximum `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10_800;
pub const MAX_AFFINITY_TIMEOUT_S: u32 = 86_400;
