//! The endpoints of a service port, from its EndpointSlices, as kube-proxy
//! picks them (used by the L4 and the L7 compilers).
//!
//! - A Service's slices are the `addressType: IPv4` EndpointSlices of its
//!   namespace labelled `kubernetes.io/service-name: <name>`.
//! - Target port, per slice: the slice port with the service port's name
//!   (both unnamed counts as equal) and protocol; else, for a named
//!   `targetPort`, the slice port with that name; else, for a slice without
//!   ports, the numeric `targetPort` (or `port` when it is unset). A slice
//!   whose port cannot be resolved contributes nothing and is diagnosed.
//! - Endpoints: `ready` unset means ready, `serving` unset means the value
//!   of `ready`, `terminating` unset means false. Ready endpoints are used;
//!   when there are none, the serving and terminating ones are (kube-proxy's
//!   graceful termination fallback). Every address of an endpoint is a
//!   backend.
//! - [`Scope::Node`] (a `Local` traffic policy): only the endpoints on this
//!   node, by the same rules.
//! - [`Scope::Cluster`] with this node's topology: when every ready endpoint
//!   has node hints (`hints.forNodes`) and one is for this node, only those;
//!   else when every ready endpoint has zone hints (`hints.forZones`), this
//!   node has a zone (`topology.kubernetes.io/zone`) and one endpoint is for
//!   it, only those (kube-proxy's `CategorizeEndpoints`; the EndpointSlice
//!   controller writes hints for `trafficDistribution: PreferClose` and
//!   `PreferSameNode` and the `topology-mode: Auto` annotation). The
//!   terminating fallback ignores hints.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServicePort;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::compile::tables::{BackendAddr, Protocol};
use crate::diagnostics::Diagnostic;
use crate::snapshot::object_key;

pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The IPv4 EndpointSlices of each Service, by namespace and service name.
pub(crate) struct SliceIndex<'a> {
    by_service: HashMap<&'a str, HashMap<&'a str, Vec<&'a EndpointSlice>>>,
}

impl<'a> SliceIndex<'a> {
    pub fn new(slices: impl IntoIterator<Item = &'a Arc<EndpointSlice>>) -> Self {
        let mut by_service: HashMap<_, HashMap<_, Vec<_>>> = HashMap::new();
        for slice in slices.into_iter().map(|s| &**s).filter(|s| s.address_type == "IPv4") {
            let labels = slice.metadata.labels.as_ref();
            let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
            let namespace = slice.metadata.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default");
            by_service.entry(namespace).or_default().entry(service.as_str()).or_default().push(slice);
        }
        for slices in by_service.values_mut().flat_map(HashMap::values_mut) {
            slices.sort_by(|a, b| object_key(&a.metadata).cmp(&object_key(&b.metadata)));
        }
        Self { by_service }
    }

    pub fn for_service(&self, namespace: &str, name: &str) -> &[&'a EndpointSlice] {
        self.by_service.get(namespace).and_then(|services| services.get(name)).map(Vec::as_slice).unwrap_or_default()
    }
}

/// A Service, as diagnostics name it.
pub(crate) struct ServiceRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl ServiceRef<'_> {
    pub fn diagnostic(&self, field: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::for_object("Service", self.namespace, self.name, field, message)
    }
}

/// Which backends `spec.ports[index]` of a Service wants.
pub(crate) struct BackendQuery<'a> {
    pub svc: &'a ServiceRef<'a>,
    pub index: usize,
    pub port: &'a ServicePort,
    pub protocol: Protocol,
    pub scope: Scope<'a>,
}

/// Which endpoints a traffic policy allows.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope<'a> {
    /// Every endpoint of the cluster; narrowed by topology hints for this
    /// node when they apply (none given: hints are ignored).
    Cluster(Option<NodeTopology<'a>>),
    /// Only the endpoints on this node (a `Local` traffic policy).
    Node(&'a str),
}

/// Where this node is, for topology hints.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeTopology<'a> {
    pub name: &'a str,
    /// `topology.kubernetes.io/zone` of the node, if it has one.
    pub zone: Option<&'a str>,
}

/// The backends of a query, and whether the Service has usable endpoints
/// anywhere (a `Local` scope that finds none of them drops new flows
/// instead of rejecting them, as kube-proxy does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    /// Sorted, without duplicates.
    pub backends: Vec<BackendAddr>,
    /// Terminating endpoints left out of `backends` because ready ones
    /// exist: flows already open to them keep going (sorted, without
    /// duplicates, none of `backends`).
    pub draining: Vec<BackendAddr>,
    pub usable_anywhere: bool,
}

/// An endpoint address usable as a backend, and its endpoint.
struct Candidate<'e> {
    backend: BackendAddr,
    endpoint: &'e Endpoint,
    ready: bool,
    serving_terminating: bool,
    terminating: bool,
}

impl Candidate<'_> {
    fn on_node(&self, node: &str) -> bool {
        self.endpoint.node_name.as_deref() == Some(node)
    }

    fn zone_hints(&self) -> impl Iterator<Item = &str> {
        let hints = self.endpoint.hints.as_ref().and_then(|h| h.for_zones.as_deref()).unwrap_or_default();
        hints.iter().map(|z| z.name.as_str())
    }

    fn node_hints(&self) -> impl Iterator<Item = &str> {
        let hints = self.endpoint.hints.as_ref().and_then(|h| h.for_nodes.as_deref()).unwrap_or_default();
        hints.iter().map(|n| n.name.as_str())
    }
}

/// Which topology hints this node may follow, if any.
enum Hints<'a> {
    None,
    Node(&'a str),
    Zone(&'a str),
}

impl<'a> Hints<'a> {
    /// kube-proxy's rule: hints are used only when every ready endpoint has
    /// them and at least one is for this node (or its zone).
    fn for_node(candidates: &[Candidate<'_>], topology: Option<NodeTopology<'a>>) -> Self {
        let Some(node) = topology else { return Hints::None };
        let ready = || candidates.iter().filter(|c| c.ready);
        let all_have = |hints: &dyn Fn(&Candidate<'_>) -> bool| ready().all(hints);
        if all_have(&|c| c.node_hints().next().is_some()) && ready().any(|c| c.node_hints().any(|n| n == node.name)) {
            return Hints::Node(node.name);
        }
        match node.zone {
            Some(zone)
                if all_have(&|c| c.zone_hints().next().is_some())
                    && ready().any(|c| c.zone_hints().any(|z| z == zone)) =>
            {
                Hints::Zone(zone)
            }
            _ => Hints::None,
        }
    }

    fn allow(&self, candidate: &Candidate<'_>) -> bool {
        match self {
            Hints::None => true,
            Hints::Node(node) => candidate.node_hints().any(|n| n == *node),
            Hints::Zone(zone) => candidate.zone_hints().any(|z| z == *zone),
        }
    }
}

impl BackendQuery<'_> {
    /// The backends, sorted and without duplicates.
    pub fn resolve(&self, slices: &[&EndpointSlice], diagnostics: &mut Vec<Diagnostic>) -> Vec<BackendAddr> {
        self.select(slices, diagnostics).backends
    }

    /// The backends and whether the Service has usable endpoints anywhere.
    pub fn select(&self, slices: &[&EndpointSlice], diagnostics: &mut Vec<Diagnostic>) -> Selection {
        let mut candidates = Vec::new();
        let mut unresolved = Vec::new();
        for slice in slices {
            match self.target_port(slice) {
                Some(port) => self.candidates(slice, port, &mut candidates, diagnostics),
                None => unresolved.push(*slice),
            }
        }
        if !unresolved.is_empty() {
            diagnostics.push(self.unresolved(&unresolved, unresolved.len() == slices.len()));
        }
        let usable_anywhere = candidates.iter().any(|c| c.ready || c.serving_terminating);
        let (eligible, hints): (Vec<&Candidate<'_>>, Hints<'_>) = match self.scope {
            Scope::Cluster(topology) => (candidates.iter().collect(), Hints::for_node(&candidates, topology)),
            Scope::Node(node) => (candidates.iter().filter(|c| c.on_node(node)).collect(), Hints::None),
        };
        let ready: BTreeSet<BackendAddr> =
            eligible.iter().filter(|c| c.ready && hints.allow(c)).map(|c| c.backend).collect();
        let (backends, draining) = if ready.is_empty() {
            let terminating = eligible.iter().filter(|c| c.serving_terminating).map(|c| c.backend);
            (terminating.collect::<BTreeSet<_>>().into_iter().collect(), Vec::new())
        } else {
            let draining: BTreeSet<BackendAddr> =
                eligible.iter().filter(|c| c.terminating && !ready.contains(&c.backend)).map(|c| c.backend).collect();
            (ready.into_iter().collect(), draining.into_iter().collect())
        };
        Selection { backends, draining, usable_anywhere }
    }

    /// The target port of this service port in `slice`, if it resolves.
    fn target_port(&self, slice: &EndpointSlice) -> Option<u16> {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let numeric = match &self.port.target_port {
            None => Some(self.port.port),
            Some(IntOrString::Int(port)) => Some(*port),
            Some(IntOrString::String(_)) => None,
        };
        let wanted = self.port.name.as_deref().unwrap_or_default();
        let by_name = |name: &str| {
            ports.iter().find(|p| p.name.as_deref().unwrap_or_default() == name && self.protocol_matches(p))
        };
        let found = by_name(wanted).or_else(|| match &self.port.target_port {
            Some(IntOrString::String(target)) => by_name(target),
            _ => None,
        });
        let port = match found {
            Some(found) => found.port.or(numeric),
            None if ports.is_empty() => numeric,
            None => None,
        };
        port.and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0)
    }

    fn protocol_matches(&self, port: &EndpointPort) -> bool {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        protocol == self.protocol.as_str()
    }

    fn candidates<'e>(
        &self,
        slice: &'e EndpointSlice,
        port: u16,
        candidates: &mut Vec<Candidate<'e>>,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        for (i, endpoint) in slice.endpoints.iter().flatten().enumerate() {
            let (ready, serving, terminating) = conditions(endpoint);
            for (j, address) in endpoint.addresses.iter().enumerate() {
                let Ok(ip) = address.parse::<Ipv4Addr>() else {
                    let (namespace, name) = object_key(&slice.metadata);
                    let field = format!("endpoints[{i}].addresses[{j}]");
                    let message = format!("{address:?} is not an IPv4 address; the endpoint address is ignored");
                    diagnostics.push(Diagnostic::for_object("EndpointSlice", namespace, name, field, message));
                    continue;
                };
                let backend = BackendAddr { ip, port };
                candidates.push(Candidate {
                    backend,
                    endpoint,
                    ready,
                    serving_terminating: serving && terminating,
                    terminating,
                });
            }
        }
    }

    fn unresolved(&self, slices: &[&EndpointSlice], all: bool) -> Diagnostic {
        let names: Vec<String> = slices
            .iter()
            .map(|s| {
                let (namespace, name) = object_key(&s.metadata);
                format!("{namespace}/{name}")
            })
            .collect();
        let names = names.join(", ");
        let field = format!("spec.ports[{}]", self.index);
        let (field, what) = match &self.port.target_port {
            Some(IntOrString::String(target)) => (format!("{field}.targetPort"), format!("named port {target:?}")),
            _ => {
                let name = self.port.name.as_deref().unwrap_or_default();
                (format!("{field}.name"), format!("a {} port named {name:?}", self.protocol))
            }
        };
        let message = if all {
            format!("{what} not found in any EndpointSlice ({names})")
        } else {
            format!("{what} not found in EndpointSlice {names}; its endpoints are not used")
        };
        self.svc.diagnostic(field, message)
    }
}

/// (ready, serving, terminating) with the API's defaults for unset values.
fn conditions(endpoint: &Endpoint) -> (bool, bool, bool) {
    let conditions = endpoint.conditions.as_ref();
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    (ready, serving, terminating)
}
