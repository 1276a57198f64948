//! Which Services get a health check node port, and how many ready
//! endpoints each has on this node.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::HealthCheck;
use crate::compile::Protocol;
use crate::compile::endpoints::{BackendQuery, Scope, ServiceRef};
use crate::diagnostics::Diagnostic;
use crate::snapshot::object_key;

const FIELD: &str = "spec.healthCheckNodePort";

/// One Service's part in the health checks: the port it may have, the
/// problems of its port field, and its check.
#[derive(Clone, Debug)]
pub(super) struct Wanted {
    port: Option<u16>,
    diagnostics: Vec<Diagnostic>,
    check: HealthCheck,
}

/// `service`'s part, given its EndpointSlices; `None` when it neither has
/// a health check port nor a problem with one.
pub(super) fn wanted(service: &Service, slices: &[&EndpointSlice], node_name: &str) -> Option<Wanted> {
    let (namespace, name) = service_key(service);
    let svc = ServiceRef { namespace, name };
    let spec = service.spec.as_ref()?;
    let mut diagnostics = Vec::new();
    let port = health_check_port(&svc, spec, &mut diagnostics);
    if port.is_none() && diagnostics.is_empty() {
        return None;
    }
    let local_endpoints = if port.is_some() { local_ready_endpoints(&svc, spec, slices, node_name) } else { 0 };
    Some(Wanted {
        port,
        diagnostics,
        check: HealthCheck { namespace: namespace.into(), name: name.into(), local_endpoints },
    })
}

/// The checks by port, and every problem, from the Services' parts in
/// canonical order: a port goes to the first Service that asks for it.
pub(super) fn assemble<'a>(
    wanted: impl IntoIterator<Item = &'a Wanted>,
) -> (BTreeMap<u16, HealthCheck>, Vec<Diagnostic>) {
    let mut checks = BTreeMap::new();
    let mut diagnostics = Vec::new();
    for wanted in wanted {
        diagnostics.extend(wanted.diagnostics.iter().cloned());
        let Some(port) = wanted.port else { continue };
        match checks.entry(port) {
            Entry::Occupied(owner) => {
                let owner: &HealthCheck = owner.get();
                let message = format!(
                    "port {port} is already the health check port of Service {}/{}; ignored here",
                    owner.namespace, owner.name
                );
                let svc = ServiceRef { namespace: &wanted.check.namespace, name: &wanted.check.name };
                diagnostics.push(svc.diagnostic(FIELD, message));
            }
            Entry::Vacant(entry) => {
                entry.insert(wanted.check.clone());
            }
        }
    }
    (checks, diagnostics)
}

/// A Service's (namespace, name) as its slices and diagnostics name it (an
/// empty namespace is `default`).
pub(super) fn service_key(service: &Service) -> (&str, &str) {
    let (namespace, name) = object_key(&service.metadata);
    (if namespace.is_empty() { "default" } else { namespace }, name)
}

/// The Service's health check node port, if it has a usable one.
fn health_check_port(svc: &ServiceRef<'_>, spec: &ServiceSpec, diagnostics: &mut Vec<Diagnostic>) -> Option<u16> {
    let load_balancer = spec.type_.as_deref() == Some("LoadBalancer");
    let local = spec.external_traffic_policy.as_deref() == Some("Local");
    let port = spec.health_check_node_port.unwrap_or(0);
    if !(load_balancer && local) {
        if port != 0 {
            let message =
                "only a LoadBalancer Service with externalTrafficPolicy Local has a health check port; ignored";
            diagnostics.push(svc.diagnostic(FIELD, message));
        }
        return None;
    }
    if spec.cluster_ip.as_deref() == Some("None") || spec.ports.as_deref().unwrap_or_default().is_empty() {
        return None; // Nothing is balanced: no service port, no health check (as kube-proxy).
    }
    match u16::try_from(port) {
        Ok(0) => {
            let message = "not set: load balancers cannot probe which nodes have endpoints of this Service";
            diagnostics.push(svc.diagnostic(FIELD, message));
            None
        }
        Ok(port) => Some(port),
        Err(_) => {
            diagnostics.push(svc.diagnostic(FIELD, format!("{port} is not a port number (1-65535); ignored")));
            None
        }
    }
}

/// The distinct addresses of the Service's ready endpoints on `node` that
/// are backends of at least one of its ports. Terminating endpoints are not
/// counted even where the data path falls back to them.
fn local_ready_endpoints(svc: &ServiceRef<'_>, spec: &ServiceSpec, slices: &[&EndpointSlice], node: &str) -> usize {
    // Keeping only the ready local endpoints leaves the port resolution to
    // the data path's rules and gives its terminating fallback nothing.
    let local_ready: Vec<EndpointSlice> = slices.iter().map(|slice| only_local_ready(slice, node)).collect();
    let local_ready: Vec<&EndpointSlice> = local_ready.iter().collect();
    // The L4 compiler reports problems with the Service's ports and slices.
    let mut already_reported = Vec::new();
    let mut addresses = BTreeSet::new();
    for (index, port) in spec.ports.iter().flatten().enumerate() {
        let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            _ => continue,
        };
        let query = BackendQuery { svc, index, port, protocol, scope: Scope::Node(node) };
        let backends = query.resolve(&local_ready, &mut already_reported);
        addresses.extend(backends.into_iter().map(|backend| backend.ip));
    }
    addresses.len()
}

/// `slice` with only its ready endpoints on `node`.
fn only_local_ready(slice: &EndpointSlice, node: &str) -> EndpointSlice {
    let endpoints = slice.endpoints.iter().flatten().filter(|e| is_local(e, node) && is_ready(e)).cloned().collect();
    let metadata = ObjectMeta {
        namespace: slice.metadata.namespace.clone(),
        name: slice.metadata.name.clone(),
        ..Default::default()
    };
    EndpointSlice {
        address_type: slice.address_type.clone(),
        endpoints: Some(endpoints),
        metadata,
        ports: slice.ports.clone(),
    }
}

fn is_local(endpoint: &Endpoint, node: &str) -> bool {
    !node.is_empty() && endpoint.node_name.as_deref() == Some(node)
}

/// `ready`, unset meaning ready (the API's default, and kube-proxy's).
fn is_ready(endpoint: &Endpoint) -> bool {
    endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
}
