//! The L4 compiler: Services and EndpointSlices → frontends, service ports,
//! backends and Maglev rows, with kube-proxy's semantics.
//!
//! - Every port of a `ClusterIP`, `NodePort` or `LoadBalancer` Service is a
//!   service port (`ExternalName` and headless Services are skipped; SCTP
//!   ports are diagnosed and skipped).
//! - Its frontends are the addresses on which traffic arrives from outside
//!   the cluster: each node address × `nodePort` (NodePort and LoadBalancer),
//!   each `spec.externalIPs` entry × `port`, and for LoadBalancer each
//!   `status.loadBalancer.ingress[].ip` (or, when there is none,
//!   `spec.loadBalancerIP`) × `port`. The cluster IP is not a frontend: the
//!   data path only sees traffic from outside. IPv6 addresses are skipped.
//!   A frontend claimed twice goes to the first Service (by namespace, then
//!   name) and the other one is diagnosed.
//! - Only service ports with at least one frontend get a [`ServiceEntry`]
//!   (each entry costs a Maglev row in the data path). An entry may have no
//!   backends: new flows are then rejected, as kube-proxy does.
//! - Backends come from the Service's EndpointSlices (see [`super::endpoints`]).
//! - The ingress controller's Service (`NodeContext::ingress`) is the
//!   exception: its HTTP and HTTPS ports go to this node's proxy (see
//!   [`IngressHandoff`]).
//! - If `options.maglev_table_size` is not a prime (≥ 2), a single
//!   diagnostic is returned and no entry gets a Maglev row.

mod frontends;
mod maglev_rows;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use lb_common::maglev::{self, MaglevBackend};

use super::endpoints::{BackendQuery, ServiceRef, SliceIndex};
use super::tables::{BackendAddr, DataplaneTables, FrontendEntry, MaglevRow, Protocol, ServiceEntry, ServicePortName};
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
        rows,
        maglev_size: Some(options.maglev_table_size),
        slices: SliceIndex::new(&snapshot.endpoint_slices),
        tables: DataplaneTables::default(),
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

/// One Service being compiled: its name and the diagnostics helper.
struct Compiler<'a> {
    node: &'a NodeContext,
    rows: &'a mut MaglevRows,
    /// `None` when the configured size is unusable.
    maglev_size: Option<u32>,
    slices: SliceIndex<'a>,
    tables: DataplaneTables,
    diagnostics: Vec<Diagnostic>,
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
        let addresses = ServiceAddresses::new(&svc, service, service_type, &mut self.diagnostics);
        for (index, port) in spec.ports.iter().flatten().enumerate() {
            self.service_port(&svc, spec, &addresses, index, port);
        }
    }

    fn service_port(
        &mut self,
        svc: &ServiceRef<'_>,
        spec: &ServiceSpec,
        addresses: &ServiceAddresses,
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
        if self.tables.services.contains_key(&name) {
            let message = format!("another port of this Service is also named {:?} for {protocol}; ignored", name.port);
            return self.diagnostics.push(svc.diagnostic(format!("{field}.name"), message));
        }
        let candidates = addresses.frontends(svc, self.node, index, port, protocol, &mut self.diagnostics);
        let listener = self.node.ingress.as_ref().and_then(|handoff| handoff.listener(svc, port, protocol));
        let snat = listener.is_none() && spec.external_traffic_policy.as_deref() != Some("Local");
        if !self.claim_frontends(svc, &name, candidates, snat) {
            return;
        }
        let backends = match listener {
            Some(listener) => vec![listener],
            None => {
                let local_node = (!snat).then_some(self.node.name.as_str());
                let query = BackendQuery { svc, index, port, protocol, local_node };
                query.resolve(self.slices.for_service(svc.namespace, svc.name), &mut self.diagnostics)
            }
        };
        let maglev = self.maglev_row(svc, &field, &backends);
        self.tables.services.insert(name, ServiceEntry { backends, maglev });
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

    /// Claims the frontends not taken yet by an earlier service port;
    /// returns whether this service port got any.
    fn claim_frontends(
        &mut self,
        svc: &ServiceRef<'_>,
        name: &ServicePortName,
        candidates: Vec<frontends::Candidate>,
        snat: bool,
    ) -> bool {
        let mut claimed = false;
        for candidate in candidates {
            match self.tables.frontends.get(&candidate.addr) {
                Some(owner) if &owner.service == name => {}
                Some(owner) => {
                    let message =
                        format!("frontend {} is already used by {}; ignored here", candidate.addr, owner.service);
                    self.diagnostics.push(svc.diagnostic(candidate.field, message));
                }
                None => {
                    let entry = FrontendEntry { service: name.clone(), snat };
                    self.tables.frontends.insert(candidate.addr, entry);
                    claimed = true;
                }
            }
        }
        claimed
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
