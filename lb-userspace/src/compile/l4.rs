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

mod frontends;
mod maglev_rows;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use lb_common::maglev::{self, MaglevBackend};

use super::endpoints::{BackendQuery, NodeTopology, Scope, Selection, ServiceRef, SliceIndex};
use super::tables::{
    BackendAddr, DataplaneTables, EndpointScope, FrontendEntry, MaglevRow, Protocol, ServiceEntry, ServicePortName,
    ServiceView,
};
use crate::diagnostics::Diagnostic;
use crate::snapshot::{Snapshot, object_key};
use frontends::ServiceAddresses;
pub use maglev_rows::MaglevRows;

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

/// Compiles the L4 tables of `node` from `snapshot`. Problems in the
/// objects are returned as diagnostics; what they concern is left out and
/// everything else is compiled.
pub fn compile_l4(
    snapshot: &Snapshot,
    node: &NodeContext,
    options: &CompileOptions,
) -> (DataplaneTables, Vec<Diagnostic>) {
    compile_l4_reusing(snapshot, node, options, &mut MaglevRows::new())
}

/// [`compile_l4`] reusing the Maglev rows of the last compile done with
/// `rows` (the agent keeps one [`MaglevRows`] for its lifetime): the tables
/// are the same, but only the rows whose backends changed are built.
pub fn compile_l4_reusing(
    snapshot: &Snapshot,
    node: &NodeContext,
    options: &CompileOptions,
    rows: &mut MaglevRows,
) -> (DataplaneTables, Vec<Diagnostic>) {
    rows.begin(options.maglev_table_size);
    let mut compiler = Compiler {
        node,
        zone: node_zone(snapshot, &node.name),
        cluster_node_addresses: cluster_node_addresses(snapshot, node),
        rows,
        maglev_size: Some(options.maglev_table_size),
        slices: SliceIndex::new(&snapshot.endpoint_slices),
        tables: DataplaneTables::default(),
        port_names: HashSet::new(),
        diagnostics: Vec::new(),
    };
    if !maglev::is_prime(options.maglev_table_size) {
        let message = format!("{} is not a prime number; no Maglev rows are built", options.maglev_table_size);
        compiler.diagnostics.push(Diagnostic::new("compile options", "maglev_table_size", message));
        compiler.maglev_size = None;
    }
    let mut services: Vec<&Service> = snapshot.services.iter().collect();
    services.sort_by(|a, b| object_key(&a.metadata).cmp(&object_key(&b.metadata)));
    for service in services {
        compiler.service(service);
    }
    let diagnostics = compiler.diagnostics_deduplicated();
    (compiler.tables, diagnostics)
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

/// The zone label of the Node named `name`, if the snapshot has it.
fn node_zone(snapshot: &Snapshot, name: &str) -> Option<String> {
    let node = snapshot.nodes.iter().find(|n| n.metadata.name.as_deref() == Some(name))?;
    node.metadata.labels.as_ref()?.get(ZONE_LABEL).filter(|z| !z.is_empty()).cloned()
}

/// This node's addresses and every Node's IPv4 `InternalIP` and
/// `ExternalIP` addresses: where the cluster's sockets reach node ports.
fn cluster_node_addresses(snapshot: &Snapshot, node: &NodeContext) -> Vec<Ipv4Addr> {
    let mut addresses = node.addresses.clone();
    for n in &snapshot.nodes {
        let listed = n.status.as_ref().and_then(|s| s.addresses.as_deref()).unwrap_or_default();
        addresses.extend(
            listed
                .iter()
                .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                .filter_map(|a| a.address.parse::<Ipv4Addr>().ok()),
        );
    }
    addresses.sort();
    addresses.dedup();
    addresses
}

/// The compile of one node's tables.
struct Compiler<'a> {
    node: &'a NodeContext,
    /// The node's zone, for topology hints.
    zone: Option<String>,
    /// Where the cluster's sockets reach node ports.
    cluster_node_addresses: Vec<Ipv4Addr>,
    rows: &'a mut MaglevRows,
    /// `None` when the configured size is unusable.
    maglev_size: Option<u32>,
    slices: SliceIndex<'a>,
    tables: DataplaneTables,
    /// The service ports compiled so far.
    port_names: HashSet<ServicePortName>,
    diagnostics: Vec<Diagnostic>,
}

/// Which program a frontend is for.
#[derive(Clone, Copy)]
enum Hook {
    Xdp,
    Socket,
}

impl Compiler<'_> {
    fn service(&mut self, service: &Service) {
        let (namespace, name) = object_key(&service.metadata);
        let svc = ServiceRef { namespace: if namespace.is_empty() { "default" } else { namespace }, name };
        let Some(spec) = &service.spec else { return };
        let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
        match service_type {
            "ClusterIP" | "NodePort" | "LoadBalancer" => {}
            "ExternalName" => return,
            other => {
                let message = format!("unknown Service type {other:?}; the Service is ignored");
                return self.diagnostics.push(svc.diagnostic("spec.type", message));
            }
        }
        if spec.cluster_ip.as_deref() == Some("None") {
            return; // Headless: nothing to balance.
        }
        let labels = service.metadata.labels.as_ref();
        if let Some(label) = [SERVICE_PROXY_NAME_LABEL, HEADLESS_LABEL]
            .into_iter()
            .find(|l| labels.is_some_and(|ls| ls.contains_key(*l)))
        {
            tracing::debug!(service = %svc.name, namespace = %svc.namespace, label, "labelled for another proxy; skipped");
            return;
        }
        let addresses = ServiceAddresses::new(&svc, service, service_type, &mut self.diagnostics);
        let affinity_timeout_s = self.affinity(&svc, spec);
        for (index, port) in spec.ports.iter().flatten().enumerate() {
            self.service_port(&svc, spec, &addresses, affinity_timeout_s, index, port);
        }
    }

    /// `sessionAffinity: ClientIP`'s timeout; 0 without affinity.
    fn affinity(&mut self, svc: &ServiceRef<'_>, spec: &ServiceSpec) -> u32 {
        match spec.session_affinity.as_deref() {
            None | Some("None") | Some("") => return 0,
            Some("ClientIP") => {}
            Some(other) => {
                let message = format!("unknown session affinity {other:?}; the Service is served without affinity");
                self.diagnostics.push(svc.diagnostic("spec.sessionAffinity", message));
                return 0;
            }
        }
        let config = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref());
        match config.and_then(|c| c.timeout_seconds) {
            None => DEFAULT_AFFINITY_TIMEOUT_S,
            Some(t) if t >= 1 && t as u32 <= MAX_AFFINITY_TIMEOUT_S => t as u32,
            Some(t) => {
                let message = format!(
                    "{t} is not a timeout in 1..={MAX_AFFINITY_TIMEOUT_S} seconds; using {DEFAULT_AFFINITY_TIMEOUT_S}"
                );
                let field = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
                self.diagnostics.push(svc.diagnostic(field, message));
                DEFAULT_AFFINITY_TIMEOUT_S
            }
        }
    }

    fn service_port(
        &mut self,
        svc: &ServiceRef<'_>,
        spec: &ServiceSpec,
        addresses: &ServiceAddresses,
        affinity_timeout_s: u32,
        index: usize,
        port: &ServicePort,
    ) {
        let field = format!("spec.ports[{index}]");
        let Some(protocol) = self.protocol(svc, &field, port.protocol.as_deref()) else { return };
        let name = ServicePortName {
            namespace: svc.namespace.to_string(),
            name: svc.name.to_string(),
            port: port.name.clone().unwrap_or_default(),
            protocol,
        };
        if !self.port_names.insert(name.clone()) {
            let message = format!("another port of this Service is also named {:?} for {protocol}; ignored", name.port);
            return self.diagnostics.push(svc.diagnostic(format!("{field}.name"), message));
        }
        let external = addresses.frontends(svc, &self.node.addresses, index, port, protocol, &mut self.diagnostics);
        let nodes = &self.cluster_node_addresses;
        let socket_external = addresses.frontends(svc, nodes, index, port, protocol, &mut self.diagnostics);
        let cluster_ips = addresses.cluster_ip_frontends(svc, index, port, protocol, &mut self.diagnostics);
        let listener = self.node.ingress.as_ref().and_then(|handoff| handoff.listener(svc, port, protocol));
        let local = |policy: Option<&str>| listener.is_none() && policy == Some("Local");
        let external_local = local(spec.external_traffic_policy.as_deref());
        let internal_local = local(spec.internal_traffic_policy.as_deref());
        let view =
            |local: bool| if local { ServiceView::node(name.clone()) } else { ServiceView::cluster(name.clone()) };

        let mut views = Vec::new();
        let snat = listener.is_none() && !external_local;
        views.extend(self.claim(Hook::Xdp, svc, &view(external_local), external.iter(), snat));
        views.extend(self.claim(Hook::Socket, svc, &view(internal_local), cluster_ips.iter(), false));
        views.extend(self.claim(Hook::Socket, svc, &view(false), socket_external.iter(), false));
        for view in views {
            if self.tables.services.contains_key(&view) {
                continue;
            }
            let selection = match listener {
                Some(listener) => Selection { backends: vec![listener], usable_anywhere: true },
                None => {
                    let topology = NodeTopology { name: &self.node.name, zone: self.zone.as_deref() };
                    let scope = match view.scope {
                        EndpointScope::Cluster => Scope::Cluster(Some(topology)),
                        EndpointScope::Node => Scope::Node(&self.node.name),
                    };
                    let query = BackendQuery { svc, index, port, protocol, scope };
                    query.select(self.slices.for_service(svc.namespace, svc.name), &mut self.diagnostics)
                }
            };
            let maglev = self.maglev_row(svc, &field, &selection.backends);
            let drop_when_empty = selection.backends.is_empty() && selection.usable_anywhere;
            let entry = ServiceEntry { backends: selection.backends, maglev, affinity_timeout_s, drop_when_empty };
            self.tables.services.insert(view, entry);
        }
    }

    fn protocol(&mut self, svc: &ServiceRef<'_>, field: &str, protocol: Option<&str>) -> Option<Protocol> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            other => {
                let message = format!("protocol {other:?} is not supported (only TCP and UDP); the port is ignored");
                self.diagnostics.push(svc.diagnostic(format!("{field}.protocol"), message));
                None
            }
        }
    }

    /// Claims for `view` the frontends of `hook` not taken yet by an
    /// earlier service port; returns the view if it got any.
    fn claim<'c>(
        &mut self,
        hook: Hook,
        svc: &ServiceRef<'_>,
        view: &ServiceView,
        candidates: impl Iterator<Item = &'c frontends::Candidate>,
        snat: bool,
    ) -> Option<ServiceView> {
        let frontends = match hook {
            Hook::Xdp => &mut self.tables.frontends,
            Hook::Socket => &mut self.tables.socket_frontends,
        };
        let mut claimed = false;
        for candidate in candidates {
            match frontends.get(&candidate.addr) {
                Some(owner) if owner.service.port == view.port => {}
                Some(owner) => {
                    let message =
                        format!("frontend {} is already used by {}; ignored here", candidate.addr, owner.service.port);
                    self.diagnostics.push(svc.diagnostic(candidate.field.clone(), message));
                }
                None => {
                    frontends.insert(candidate.addr, FrontendEntry { service: view.clone(), snat });
                    claimed = true;
                }
            }
        }
        claimed.then(|| view.clone())
    }

    fn maglev_row(&mut self, svc: &ServiceRef<'_>, field: &str, backends: &[BackendAddr]) -> MaglevRow {
        let Some(size) = self.maglev_size else { return MaglevRow::default() };
        let built = self.rows.row(backends, || {
            let names: Vec<String> = backends.iter().map(BackendAddr::to_string).collect();
            let weighted: Vec<MaglevBackend<'_>> =
                names.iter().map(|n| MaglevBackend { name: n.as_bytes(), weight: 1 }).collect();
            maglev::build_table(&weighted, size)
        });
        built.unwrap_or_else(|e| {
            self.diagnostics.push(svc.diagnostic(field, format!("{e}; the port gets no Maglev row")));
            MaglevRow::default()
        })
    }

    /// The diagnostics in the order found, each once (a bad EndpointSlice is
    /// seen once per service port that uses it).
    fn diagnostics_deduplicated(&mut self) -> Vec<Diagnostic> {
        let mut seen = HashSet::new();
        std::mem::take(&mut self.diagnostics).into_iter().filter(|d| seen.insert(d.clone())).collect()
    }
}
