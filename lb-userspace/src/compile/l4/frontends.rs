//! The addresses on which a Service is offered: to the outside, and to the
//! cluster's own sockets.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Service, ServicePort};

use super::ServiceRef;
use crate::compile::tables::{FrontendAddr, Protocol};
use crate::diagnostics::Diagnostic;

/// A frontend a service port would like, and the field it comes from.
pub(super) struct Candidate {
    pub addr: FrontendAddr,
    pub field: String,
}

/// The IPv4 addresses of a Service that are the same for all its ports.
pub(super) struct ServiceAddresses {
    /// Whether ports' `nodePort`s are frontends (NodePort, LoadBalancer).
    node_ports: bool,
    /// `spec.externalIPs` and the load balancer's addresses, with the
    /// field each one comes from.
    external: Vec<(Ipv4Addr, String)>,
    /// The IPv4 cluster IPs (`spec.clusterIPs`, else `spec.clusterIP`).
    cluster_ips: Vec<(Ipv4Addr, String)>,
}

impl ServiceAddresses {
    pub fn new(svc: &ServiceRef<'_>, service: &Service, service_type: &str, diagnostics: &mut Vec<Diagnostic>) -> Self {
        let spec = service.spec.as_ref();
        let mut external = Vec::new();
        let external_ips = spec.and_then(|s| s.external_ips.as_deref()).unwrap_or_default();
        for (i, ip) in external_ips.iter().enumerate() {
            push_ipv4(svc, &mut external, ip, format!("spec.externalIPs[{i}]"), diagnostics);
        }
        if service_type == "LoadBalancer" {
            let status = service.status.as_ref().and_then(|s| s.load_balancer.as_ref());
            let ingress = status.and_then(|l| l.ingress.as_deref()).unwrap_or_default();
            let mut from_status = false;
            for (i, ip) in ingress.iter().enumerate().filter_map(|(i, ing)| Some((i, ing.ip.as_deref()?))) {
                push_ipv4(svc, &mut external, ip, format!("status.loadBalancer.ingress[{i}].ip"), diagnostics);
                from_status = true;
            }
            let requested = spec.and_then(|s| s.load_balancer_ip.as_deref()).filter(|ip| !ip.is_empty());
            if let (false, Some(ip)) = (from_status, requested) {
                push_ipv4(svc, &mut external, ip, "spec.loadBalancerIP".into(), diagnostics);
            }
        }
        let mut cluster_ips = Vec::new();
        let listed = spec.and_then(|s| s.cluster_ips.as_deref()).filter(|ips| !ips.is_empty());
        match (listed, spec.and_then(|s| s.cluster_ip.as_deref())) {
            (Some(ips), _) => {
                for (i, ip) in ips.iter().enumerate().filter(|(_, ip)| !ip.is_empty()) {
                    push_ipv4(svc, &mut cluster_ips, ip, format!("spec.clusterIPs[{i}]"), diagnostics);
                }
            }
            (None, Some(ip)) if !ip.is_empty() => {
                push_ipv4(svc, &mut cluster_ips, ip, "spec.clusterIP".into(), diagnostics)
            }
            _ => {}
        }
        Self { node_ports: matches!(service_type, "NodePort" | "LoadBalancer"), external, cluster_ips }
    }

    /// The cluster IP frontends of `spec.ports[index]` (for sockets only).
    pub fn cluster_ip_frontends(
        &self,
        svc: &ServiceRef<'_>,
        index: usize,
        port: &ServicePort,
        protocol: Protocol,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Vec<Candidate> {
        let Some(service_port) = valid_port(svc, port.port, format!("spec.ports[{index}].port"), diagnostics) else {
            return Vec::new();
        };
        let mut candidates: Vec<Candidate> = self
            .cluster_ips
            .iter()
            .map(|(ip, field)| Candidate {
                addr: FrontendAddr { ip: *ip, port: service_port, protocol },
                field: field.clone(),
            })
            .collect();
        candidates.sort_by_key(|c| c.addr);
        candidates.dedup_by_key(|c| c.addr);
        candidates
    }

    /// The frontends of `spec.ports[index]` with node ports on
    /// `node_addresses`, without duplicates, in a canonical order.
    pub fn frontends(
        &self,
        svc: &ServiceRef<'_>,
        node_addresses: &[Ipv4Addr],
        index: usize,
        port: &ServicePort,
        protocol: Protocol,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Vec<Candidate> {
        let mut candidates = Vec::new();
        let field = format!("spec.ports[{index}]");
        if self.node_ports
            && let Some(node_port) = port.node_port
            && let Some(node_port) = valid_port(svc, node_port, format!("{field}.nodePort"), diagnostics)
        {
            let field = format!("{field}.nodePort");
            candidates.extend(
                node_addresses.iter().map(|&ip| Candidate {
                    addr: FrontendAddr { ip, port: node_port, protocol },
                    field: field.clone(),
                }),
            );
        }
        if let Some(service_port) = valid_port(svc, port.port, format!("{field}.port"), diagnostics) {
            candidates.extend(self.external.iter().map(|(ip, field)| Candidate {
                addr: FrontendAddr { ip: *ip, port: service_port, protocol },
                field: field.clone(),
            }));
        }
        candidates.sort_by_key(|c| c.addr);
        candidates.dedup_by_key(|c| c.addr);
        candidates
    }
}

/// Adds `text` to `addresses` when it is an IPv4 address; IPv6 addresses
/// are skipped (the data path is IPv4 only) and anything else is diagnosed.
fn push_ipv4(
    svc: &ServiceRef<'_>,
    addresses: &mut Vec<(Ipv4Addr, String)>,
    text: &str,
    field: String,
    diagnostics: &mut Vec<Diagnostic>,
) {
    match text.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => addresses.push((ip, field)),
        Ok(IpAddr::V6(_)) => tracing::debug!(service = %svc.name, %field, "skipping IPv6 address {text}"),
        Err(_) => diagnostics.push(svc.diagnostic(field, format!("{text:?} is not an IP address"))),
    }
}

/// A port number from the API, diagnosed unless it is in 1..=65535.
pub(super) fn valid_port(
    svc: &ServiceRef<'_>,
    port: i32,
    field: String,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<u16> {
    match u16::try_from(port) {
        Ok(port) if port != 0 => Some(port),
        _ => {
            diagnostics.push(svc.diagnostic(field, format!("{port} is not a port number (1-65535)")));
            None
        }
    }
}
