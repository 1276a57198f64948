//! `/inspect/services` from the compiled tables, the maps' service ids
//! and the snapshot (frontend kinds, endpoint states).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::model::{BackendReport, FrontendReport, ServiceReport};
use crate::compile::{BackendAddr, DataplaneTables, EndpointScope, FrontendAddr, FrontendEntry, ServiceView};
use crate::snapshot::Snapshot;

/// What a report is made from.
pub struct ServicesSource<'a> {
    pub tables: &'a DataplaneTables,
    pub ids: HashMap<&'a ServiceView, u32>,
    pub snapshot: Option<&'a Snapshot>,
    /// The EndpointSlices of a Service.
    pub slices: &'a dyn Fn(&(String, String)) -> Vec<&'a EndpointSlice>,
    pub node_name: &'a str,
}

/// Every service view, sorted by name; counters left at 0 (the caller
/// reads them).
pub fn services_report(source: &ServicesSource<'_>) -> Vec<ServiceReport> {
    let mut frontends: HashMap<&ServiceView, Vec<(&FrontendAddr, &FrontendEntry)>> = HashMap::new();
    for (addr, entry) in source.tables.frontends.iter().chain(&source.tables.socket_frontends) {
        let list = frontends.entry(&entry.service).or_default();
        if !list.iter().any(|(a, _)| *a == addr) {
            list.push((addr, entry));
        }
    }
    let mut out = Vec::with_capacity(source.tables.services.len());
    for (view, entry) in &source.tables.services {
        let key = (view.port.namespace.clone(), view.port.name.clone());
        let service = source.snapshot.and_then(|s| s.services.get(&key.0, &key.1));
        let mut fronts: Vec<FrontendReport> = frontends
            .get(view)
            .into_iter()
            .flatten()
            .map(|(addr, entry)| FrontendReport {
                address: addr.to_string(),
                kind: frontend_kind(service.map(|s| &**s), addr).into(),
                masquerade: entry.snat,
            })
            .collect();
        fronts.sort_by(|a, b| (&a.kind, &a.address).cmp(&(&b.kind, &b.address)));
        let slices = (source.slices)(&key);
        let slots = entry.maglev.len().max(1) as f64;
        let backends = entry
            .backends
            .iter()
            .enumerate()
            .map(|(index, backend)| {
                let share = entry.maglev.iter().filter(|&&slot| slot as usize == index).count() as f64 / slots;
                backend_report(backend, &slices, source.node_name, share)
            })
            .collect();
        out.push(ServiceReport {
            namespace: view.port.namespace.clone(),
            name: view.port.name.clone(),
            port: view.port.port.clone(),
            protocol: view.port.protocol.as_str().into(),
            scope: match view.scope {
                EndpointScope::Cluster => "cluster".into(),
                EndpointScope::Node => "node".into(),
            },
            id: source.ids.get(view).copied(),
            frontends: fronts,
            backends,
            packets: 0,
            bytes: 0,
        });
    }
    out
}

/// How a Service offers `addr`: its cluster IP, a node port, an external
/// IP, else a load-balancer address.
fn frontend_kind(service: Option<&Service>, addr: &FrontendAddr) -> &'static str {
    let Some(spec) = service.and_then(|s| s.spec.as_ref()) else { return "Unknown" };
    let ip = addr.ip.to_string();
    let cluster_ips = spec.cluster_ips.iter().flatten().chain(spec.cluster_ip.iter());
    if cluster_ips.into_iter().any(|c| *c == ip) {
        return "ClusterIP";
    }
    if spec.external_ips.iter().flatten().any(|e| *e == ip) {
        return "ExternalIP";
    }
    let node_port = spec.ports.iter().flatten().any(|p| p.node_port == Some(i32::from(addr.port)));
    let lb_ips = service.and_then(|s| s.status.as_ref()).and_then(|s| s.load_balancer.as_ref());
    let lb_ip = lb_ips.and_then(|l| l.ingress.as_ref()).into_iter().flatten().any(|i| i.ip.as_deref() == Some(&ip))
        || spec.load_balancer_ip.as_deref() == Some(&ip);
    match (lb_ip, node_port) {
        (true, _) => "LoadBalancer",
        (false, true) => "NodePort",
        (false, false) => "LoadBalancer",
    }
}

/// A backend's conditions, from the endpoint of the Service's slices with
/// its address (a backend no slice names any more: all false).
fn backend_report(backend: &BackendAddr, slices: &[&EndpointSlice], node: &str, share: f64) -> BackendReport {
    let ip = backend.ip.to_string();
    let endpoint = slices.iter().flat_map(|s| s.endpoints.iter().flatten()).find(|e| e.addresses.contains(&ip));
    let conditions = endpoint.and_then(|e| e.conditions.as_ref());
    let ready = conditions.and_then(|c| c.ready).unwrap_or(endpoint.is_some());
    BackendReport {
        address: backend.to_string(),
        ready,
        serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
        terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
        local: endpoint.and_then(|e| e.node_name.as_deref()) == Some(node),
        maglev_share: share,
    }
}

/// The address a flow's fields hold (network byte order) as text.
pub fn ipv4(be: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(be))
}
