//! Which LoadBalancer addresses this node announces on its LAN, and on
//! which uplinks: MetalLB's layer-2 rules. An address is announced when it
//! lies in a MetalLB pool that an `L2Advertisement` covers; among the nodes
//! those advertisements select (and the other conditions of
//! [`eligible`]), the [`owner`] answers for it, on its uplinks whose
//! subnet holds the address (narrowed by the advertisements'
//! `interfaces`). Addresses of `--config` pools are not announced: they
//! keep being routed as before.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Node, Service};

use super::owner::{NodeFacts, eligible, owner};
use super::resources::{L2Advertisement, MetalLbPool};
use crate::compile::endpoints::SERVICE_NAME_LABEL;
use crate::snapshot::{Snapshot, object_key};

/// One of this node's uplinks: its name and its own address on the LAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Uplink {
    fn holds(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

/// An address this node answers ARP for, on one uplink.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Announcement {
    pub ip: Ipv4Addr,
    pub interface: String,
    /// The Service's namespace and name.
    pub service: (String, String),
}

/// What `node` announces, given the MetalLB pools and advertisements in
/// use, its uplinks, and which nodes' agents are alive.
pub fn announcements(
    snapshot: &Snapshot,
    pools: &[MetalLbPool],
    advertisements: &[L2Advertisement],
    node: &str,
    uplinks: &[Uplink],
    alive: impl Fn(&str) -> bool,
) -> Vec<Announcement> {
    let mut out = Vec::new();
    for service in snapshot.services.iter() {
        let Some(ip) = load_balancer_ip(service) else { continue };
        let Some(pool) = pools.iter().find(|p| p.pool.contains(ip)) else { continue };
        let ads: Vec<&L2Advertisement> = advertisements.iter().filter(|a| a.covers(pool)).collect();
        if ads.is_empty() {
            continue;
        }
        let (namespace, name) = object_key(&service.metadata);
        let local = local_policy(service).then(|| nodes_with_ready_endpoints(snapshot, namespace, name));
        // A node is eligible through any advertisement that selects it.
        let candidates: Vec<&str> = snapshot
            .nodes
            .iter()
            .filter(|n| {
                let facts = facts(n, &alive);
                ads.iter().any(|ad| eligible(&facts, &ad.node_selectors, local.as_ref()))
            })
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        if owner(ip, candidates.iter().copied()) != Some(node) {
            continue;
        }
        let named: BTreeSet<&str> = ads.iter().flat_map(|ad| ad.interfaces.iter().map(String::as_str)).collect();
        let any_interface = ads.iter().any(|ad| ad.interfaces.is_empty());
        for uplink in uplinks.iter().filter(|u| u.holds(ip)) {
            if any_interface || named.contains(uplink.name.as_str()) {
                let service = (namespace.to_string(), name.to_string());
                out.push(Announcement { ip, interface: uplink.name.clone(), service });
            }
        }
    }
    out.sort();
    out
}

/// The Service's first IPv4 load-balancer address, if it is of type
/// LoadBalancer.
fn load_balancer_ip(service: &Service) -> Option<Ipv4Addr> {
    if service.spec.as_ref()?.type_.as_deref() != Some("LoadBalancer") {
        return None;
    }
    let ingress = service.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?;
    ingress.iter().find_map(|i| i.ip.as_deref()?.parse().ok())
}

fn local_policy(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local")
}

/// The nodes holding a ready endpoint of the Service.
fn nodes_with_ready_endpoints(snapshot: &Snapshot, namespace: &str, name: &str) -> BTreeSet<String> {
    let ours = |labels: Option<&BTreeMap<String, String>>| {
        labels.and_then(|l| l.get(SERVICE_NAME_LABEL)).is_some_and(|s| s == name)
    };
    snapshot
        .endpoint_slices
        .iter()
        .filter(|s| object_key(&s.metadata).0 == namespace && ours(s.metadata.labels.as_ref()))
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.node_name.clone())
        .collect()
}

fn facts<'n>(node: &'n Node, alive: &impl Fn(&str) -> bool) -> NodeFacts<'n> {
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    let ready = conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    NodeFacts { name, labels: node.metadata.labels.as_ref().unwrap_or(&NO_LABELS), ready, alive: alive(name) }
}

#[cfg(test)]
mod tests;
