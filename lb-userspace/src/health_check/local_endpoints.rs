//! Which Services get a health check node port, and how many ready
//! endpoints each has on this node.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::HealthCheck;
use crate::compile::Protocol;
use crate::compile::endpoints::{BackendQuery, Scope, ServiceRef, SliceIndex};
use crate::diagnostics::Diagnostic;
use crate::snapshot::{ObjectKey, Snapshot, object_key};

const FIELD: &str = "spec.healthCheckNodePort";

/// The health check node ports of `node_name`, by port: each Service of
/// `type: LoadBalancer` with `externalTrafficPolicy: Local` and its
/// `spec.healthCheckNodePort`, with the number of its ready endpoints on
/// this node (see the [module](super) documentation for the rules). Ports
/// that cannot be used (unset, out of range, set where it means nothing,
/// claimed by an earlier Service) are diagnosed and left out.
pub fn compile_health_checks(snapshot: &Snapshot, node_name: &str) -> (BTreeMap<u16, HealthCheck>, Vec<Diagnostic>) {
    let slices = SliceIndex::new(&snapshot.endpoint_slices);
    let mut services: Vec<&Service> = snapshot.services.iter().map(|s| &**s).collect();
    services.sort_by(|a, b| object_key(&a.metadata).cmp(&object_key(&b.metadata)));
    let mut checks = BTreeMap::new();
    let mut diagnostics = Vec::new();
    for service in services {
        let (namespace, name) = object_key(&service.metadata);
        let svc = ServiceRef { namespace: if namespace.is_empty() { "default" } else { namespace }, name };
        let Some(spec) = &service.spec else { continue };
        let Some(port) = health_check_port(&svc, spec, &mut diagnostics) else { continue };
        match checks.entry(port) {
            Entry::Occupied(owner) => {
                let owner: &HealthCheck = owner.get();
                let message = format!(
                    "port {port} is already the health check port of Service {}/{}; ignored here",
                    owner.namespace, owner.name
                );
                diagnostics.push(svc.diagnostic(FIELD, message));
            }
            Entry::Vacant(entry) => {
                let local_endpoints =
                    local_ready_endpoints(&svc, spec, slices.for_service(svc.namespace, name), node_name);
                entry.insert(HealthCheck { namespace: svc.namespace.into(), name: name.into(), local_endpoints });
            }
        }
    }
    (checks, diagnostics)
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

/// Whether a change of the Services `concerned` (their objects or their
/// EndpointSlices; see [`Changes::services_concerned`]) can change the
/// health checks compiled as `checks`: when one of them has a check, or
/// asks for one.
///
/// [`Changes::services_concerned`]: crate::snapshot::Changes::services_concerned
pub fn concerns_health_checks(
    concerned: &BTreeSet<ObjectKey>,
    checks: &BTreeMap<u16, HealthCheck>,
    snapshot: &Snapshot,
) -> bool {
    let checked: BTreeSet<(&str, &str)> = checks.values().map(|c| (c.namespace.as_str(), c.name.as_str())).collect();
    concerned.iter().any(|(namespace, name)| {
        checked.contains(&(namespace.as_str(), name.as_str()))
            || snapshot
                .service(namespace, name)
                .and_then(|s| s.spec.as_ref())
                .is_some_and(|spec| spec.health_check_node_port.is_some())
    })
}
