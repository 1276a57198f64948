//! One Service compiled on its own: its service ports' entries, the
//! frontends it claims and its diagnostics. Which claim wins a frontend
//! wanted by several Services is decided across Services ([`super::claims`]).

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use lb_common::maglev::{self, MaglevBackend};

use super::frontends::{Candidate, ServiceAddresses};
use super::{
    DEFAULT_AFFINITY_TIMEOUT_S, HEADLESS_LABEL, MAX_AFFINITY_TIMEOUT_S, MaglevRows, NodeContext,
    SERVICE_PROXY_NAME_LABEL,
};
use crate::compile::endpoints::{BackendQuery, NodeTopology, Scope, Selection, ServiceRef};
use crate::compile::tables::{
    BackendAddr, EndpointScope, FrontendAddr, FrontendEntry, MaglevRow, Protocol, ServiceEntry, ServicePortName,
    ServiceView,
};
use crate::diagnostics::Diagnostic;
use crate::snapshot::object_key;

/// Which program a frontend is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Hook {
    /// Traffic arriving on the uplinks.
    Xdp,
    /// Connects and sends of the cgroup's processes.
    Socket,
}

/// A frontend a service port wants for one of its views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Claim {
    pub hook: Hook,
    pub addr: FrontendAddr,
    pub entry: FrontendEntry,
    /// The field the frontend comes from, for the diagnostic of a claim
    /// that loses.
    pub field: String,
}

/// What one Service contributes to the tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ServiceOutput {
    /// The entry of every view some claim names.
    pub entries: BTreeMap<ServiceView, ServiceEntry>,
    /// In compile order (ports in order; per port the XDP frontends, then
    /// the cluster IPs, then the external frontends for sockets): between
    /// Services the first claim wins, as if they were compiled one after
    /// the other by namespace and name.
    pub claims: Vec<Claim>,
    /// Problems of the Service itself (not lost frontends).
    pub diagnostics: Vec<Diagnostic>,
}

/// What every Service is compiled against.
pub(super) struct ServiceContext<'a> {
    pub node: &'a NodeContext,
    /// The node's zone, for topology hints.
    pub zone: Option<&'a str>,
    /// Where the cluster's sockets reach node ports.
    pub cluster_node_addresses: &'a [Ipv4Addr],
    /// `None` when the configured size is unusable.
    pub maglev_size: Option<u32>,
}

/// Compiles `service`, whose EndpointSlices are `slices` (sorted).
pub(super) fn compile_service(
    context: &ServiceContext<'_>,
    service: &Service,
    slices: &[&EndpointSlice],
    rows: &mut MaglevRows,
) -> ServiceOutput {
    let (namespace, name) = object_key(&service.metadata);
    let svc = ServiceRef { namespace: if namespace.is_empty() { "default" } else { namespace }, name };
    let mut compiler = ServiceCompiler {
        context,
        svc: &svc,
        slices,
        rows,
        port_names: HashSet::new(),
        output: ServiceOutput::default(),
    };
    compiler.service(service);
    compiler.output
}

struct ServiceCompiler<'a> {
    context: &'a ServiceContext<'a>,
    svc: &'a ServiceRef<'a>,
    slices: &'a [&'a EndpointSlice],
    rows: &'a mut MaglevRows,
    /// The service ports compiled so far.
    port_names: HashSet<ServicePortName>,
    output: ServiceOutput,
}

impl ServiceCompiler<'_> {
    fn diagnose(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let diagnostic = self.svc.diagnostic(field, message);
        self.output.diagnostics.push(diagnostic);
    }

    fn service(&mut self, service: &Service) {
        let Some(spec) = &service.spec else { return };
        let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
        match service_type {
            "ClusterIP" | "NodePort" | "LoadBalancer" => {}
            "ExternalName" => return,
            other => {
                return self.diagnose("spec.type", format!("unknown Service type {other:?}; the Service is ignored"));
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
            let svc = self.svc;
            tracing::debug!(service = %svc.name, namespace = %svc.namespace, label, "labelled for another proxy; skipped");
            return;
        }
        let addresses = ServiceAddresses::new(self.svc, service, service_type, &mut self.output.diagnostics);
        let affinity_timeout_s = self.affinity(spec);
        for (index, port) in spec.ports.iter().flatten().enumerate() {
            self.service_port(spec, &addresses, affinity_timeout_s, index, port);
        }
    }

    /// `sessionAffinity: ClientIP`'s timeout; 0 without affinity.
    fn affinity(&mut self, spec: &ServiceSpec) -> u32 {
        match spec.session_affinity.as_deref() {
            None | Some("None") | Some("") => return 0,
            Some("ClientIP") => {}
            Some(other) => {
                let message = format!("unknown session affinity {other:?}; the Service is served without affinity");
                self.diagnose("spec.sessionAffinity", message);
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
                self.diagnose("spec.sessionAffinityConfig.clientIP.timeoutSeconds", message);
                DEFAULT_AFFINITY_TIMEOUT_S
            }
        }
    }

    fn service_port(
        &mut self,
        spec: &ServiceSpec,
        addresses: &ServiceAddresses,
        affinity_timeout_s: u32,
        index: usize,
        port: &ServicePort,
    ) {
        let svc = self.svc;
        let field = format!("spec.ports[{index}]");
        let Some(protocol) = self.protocol(&field, port.protocol.as_deref()) else { return };
        let name = ServicePortName {
            namespace: svc.namespace.to_string(),
            name: svc.name.to_string(),
            port: port.name.clone().unwrap_or_default(),
            protocol,
        };
        if !self.port_names.insert(name.clone()) {
            let message = format!("another port of this Service is also named {:?} for {protocol}; ignored", name.port);
            return self.diagnose(format!("{field}.name"), message);
        }
        let context = self.context;
        let diagnostics = &mut self.output.diagnostics;
        let external = addresses.frontends(svc, &context.node.addresses, index, port, protocol, diagnostics);
        let nodes = context.cluster_node_addresses;
        let socket_external = addresses.frontends(svc, nodes, index, port, protocol, diagnostics);
        let cluster_ips = addresses.cluster_ip_frontends(svc, index, port, protocol, diagnostics);
        let listener = context.node.ingress.as_ref().and_then(|handoff| handoff.listener(svc, port, protocol));
        let local = |policy: Option<&str>| listener.is_none() && policy == Some("Local");
        let external_local = local(spec.external_traffic_policy.as_deref());
        let internal_local = local(spec.internal_traffic_policy.as_deref());
        let view =
            |local: bool| if local { ServiceView::node(name.clone()) } else { ServiceView::cluster(name.clone()) };

        let snat = listener.is_none() && !external_local;
        let mut views = Vec::new();
        views.extend(self.claim(Hook::Xdp, view(external_local), &external, snat));
        views.extend(self.claim(Hook::Socket, view(internal_local), &cluster_ips, false));
        views.extend(self.claim(Hook::Socket, view(false), &socket_external, false));
        for view in views {
            if self.output.entries.contains_key(&view) {
                continue;
            }
            let selection = match listener {
                Some(listener) => Selection { backends: vec![listener], draining: Vec::new(), usable_anywhere: true },
                None => {
                    let topology = NodeTopology { name: &context.node.name, zone: context.zone };
                    let scope = match view.scope {
                        EndpointScope::Cluster => Scope::Cluster(Some(topology)),
                        EndpointScope::Node => Scope::Node(&context.node.name),
                    };
                    let query = BackendQuery { svc, index, port, protocol, scope };
                    query.select(self.slices, &mut self.output.diagnostics)
                }
            };
            let maglev = self.maglev_row(&field, &selection.backends);
            let drop_when_empty = selection.backends.is_empty() && selection.usable_anywhere;
            let entry = ServiceEntry {
                backends: selection.backends,
                draining: selection.draining,
                maglev,
                affinity_timeout_s,
                drop_when_empty,
            };
            self.output.entries.insert(view, entry);
        }
    }

    fn protocol(&mut self, field: &str, protocol: Option<&str>) -> Option<Protocol> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            other => {
                let message = format!("protocol {other:?} is not supported (only TCP and UDP); the port is ignored");
                self.diagnose(format!("{field}.protocol"), message);
                None
            }
        }
    }

    /// Records the claims of `view` on `candidates`; returns the view if
    /// there are any.
    fn claim(&mut self, hook: Hook, view: ServiceView, candidates: &[Candidate], snat: bool) -> Option<ServiceView> {
        let claims = candidates.iter().map(|candidate| Claim {
            hook,
            addr: candidate.addr,
            entry: FrontendEntry { service: view.clone(), snat },
            field: candidate.field.clone(),
        });
        self.output.claims.extend(claims);
        (!candidates.is_empty()).then_some(view)
    }

    fn maglev_row(&mut self, field: &str, backends: &[BackendAddr]) -> MaglevRow {
        let Some(size) = self.context.maglev_size else { return MaglevRow::default() };
        let built = self.rows.row(backends, || {
            let names: Vec<String> = backends.iter().map(BackendAddr::to_string).collect();
            let weighted: Vec<MaglevBackend<'_>> =
                names.iter().map(|n| MaglevBackend { name: n.as_bytes(), weight: 1 }).collect();
            maglev::build_table(&weighted, size)
        });
        built.unwrap_or_else(|e| {
            self.diagnose(field, format!("{e}; the port gets no Maglev row"));
            MaglevRow::default()
        })
    }
}
