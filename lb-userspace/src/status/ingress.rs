//! Ingress status: the addresses clients reach our Ingresses at, written to
//! `status.loadBalancer.ingress` of every Ingress of our classes (as
//! ingress-nginx does with `--publish-service`, or with node addresses).
//! Ingresses of other classes are never touched.
//!
//! With `ingressStatus: service` (the default) the addresses are those of
//! the controller's Service (`--ingress-service`); while it has none (it
//! does not exist, or has no LoadBalancer address nor `externalIPs`), those
//! of the nodes the agents run on, as ingress-nginx reports its pods' nodes
//! without a publish Service. With `ingressStatus: nodes`, always the
//! latter.
//!
//! *The nodes the agents run on* are the Nodes whose `lb-node-<node>` Lease
//! is alive as the leader observes it (see [`crate::metallb::liveness`]):
//! not every Node — a DaemonSet with a node selector runs on some only, and
//! a node whose agent died serves no Ingress. They are known once the
//! leader sees its own node's Lease alive (the Leases are listed); until
//! then, for at most one lease duration after start, the Ingresses' status
//! is left as it is rather than written from a partial picture. If the
//! Leases cannot be followed (the leader never sees its own), every Node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeAddress, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};

use super::ipam::Allocation;
use crate::cli::ServiceName;
use crate::compile::l7::{L7Options, our_ingresses};
use crate::config::IngressStatusSource;
use crate::snapshot::{Snapshot, object_key};

/// One address of `status.loadBalancer.ingress`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatusAddress {
    Ip(String),
    Hostname(String),
}

impl StatusAddress {
    /// The address of a status entry: its IP, else its host name.
    fn of(ip: &Option<String>, hostname: &Option<String>) -> Option<Self> {
        match (ip, hostname) {
            (Some(ip), _) if !ip.is_empty() => Some(Self::Ip(ip.clone())),
            (_, Some(h)) if !h.is_empty() => Some(Self::Hostname(h.clone())),
            _ => None,
        }
    }

    pub fn to_ingress(&self) -> IngressLoadBalancerIngress {
        match self {
            Self::Ip(ip) => IngressLoadBalancerIngress { ip: Some(ip.clone()), ..Default::default() },
            Self::Hostname(h) => IngressLoadBalancerIngress { hostname: Some(h.clone()), ..Default::default() },
        }
    }
}

/// An Ingress whose status must change, and the addresses it must show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressStatusUpdate {
    pub namespace: String,
    pub name: String,
    /// The Ingress's `resourceVersion` in the snapshot.
    pub resource_version: Option<String>,
    pub addresses: Vec<StatusAddress>,
}

/// The Ingress statuses this leader wrote and has not seen back yet. A
/// round runs on every change (the compilers' diagnostics of a snapshot
/// come after it, a node comes or goes) while a write takes a watch event
/// and the snapshot's debounce to come back; until then the snapshot still
/// shows the old status, and the same status must not be written again.
#[derive(Clone, Debug, Default)]
pub struct PendingWrites {
    writes: BTreeMap<(String, String), PendingWrite>,
}

/// The last status written to one Ingress, and the Ingress's
/// `resourceVersion`s that do not show it yet or show it: those it had
/// when written (also earlier writes' whose echo had not come back) and
/// the one the write made.
#[derive(Clone, Debug, Default)]
struct PendingWrite {
    versions: BTreeSet<Option<String>>,
    addresses: Vec<StatusAddress>,
}

impl PendingWrites {
    /// `update` was written and made the Ingress's version `written`.
    pub fn record(&mut self, update: &IngressStatusUpdate, written: Option<String>) {
        let key = (update.namespace.clone(), update.name.clone());
        let pending = self.writes.entry(key).or_default();
        pending.versions.insert(update.resource_version.clone());
        pending.versions.insert(written);
        pending.addresses = update.addresses.clone();
    }

    /// Forgets the writes whose Ingress has changed since (someone else
    /// wrote it) or is gone.
    pub fn forget_seen(&mut self, snapshot: &Snapshot) {
        self.writes.retain(|(namespace, name), pending| {
            let ingress = snapshot.ingresses.get(namespace, name);
            ingress.is_some_and(|i| pending.versions.contains(&i.metadata.resource_version))
        });
    }

    /// Whether `addresses` were written to `ingress` as it is or before.
    fn is_pending(&self, ingress: &Ingress, addresses: &[StatusAddress]) -> bool {
        let (namespace, name) = object_key(&ingress.metadata);
        let pending = self.writes.get(&(namespace.to_string(), name.to_string()));
        pending.is_some_and(|p| p.versions.contains(&ingress.metadata.resource_version) && p.addresses == addresses)
    }
}

/// The nodes the agents run on, as the leader knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentNodes {
    /// The nodes whose agent's Lease is alive.
    Alive(BTreeSet<String>),
    /// The Leases cannot be followed: every Node.
    Every,
    /// Not known yet (the Leases are still being listed).
    Unknown,
}

impl AgentNodes {
    /// From the nodes whose Lease is alive, the leader's own node, and how
    /// long the Leases have been followed: known once the leader's own
    /// node is among them (its agent renews it), every Node if that has not
    /// happened within `lease_duration`.
    pub fn new(alive: BTreeSet<String>, own_node: &str, followed_for: Duration, lease_duration: Duration) -> Self {
        if alive.contains(own_node) {
            Self::Alive(alive)
        } else if followed_for >= lease_duration {
            Self::Every
        } else {
            Self::Unknown
        }
    }

    fn includes(&self, node: &Node) -> bool {
        match self {
            Self::Alive(alive) => node.metadata.name.as_ref().is_some_and(|name| alive.contains(name)),
            Self::Every => true,
            Self::Unknown => false,
        }
    }
}

/// Where the Ingresses' addresses come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressOrigin {
    /// The controller's Service (`--ingress-service`).
    Service,
    /// The nodes the agents run on.
    AgentNodes,
}

/// The addresses our Ingresses must show, sorted and without repeats, and
/// where they come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressAddresses {
    pub origin: AddressOrigin,
    pub addresses: Vec<StatusAddress>,
}

/// What decides the Ingresses' addresses besides the snapshot.
#[derive(Clone, Copy, Debug)]
pub struct AddressInputs<'a> {
    pub source: IngressStatusSource,
    /// The controller's Service (`--ingress-service`).
    pub service: &'a ServiceName,
    /// This round's IPAM allocation: a Service it manages shows the address
    /// it allocates once this round has written it, so that address counts
    /// already (no detour through the nodes' addresses on a fresh install).
    pub allocation: &'a Allocation,
    pub agents: &'a AgentNodes,
}

/// The addresses of our Ingresses (see the module documentation); `None`
/// while they would be the agents' nodes' and those are not known yet:
/// the Ingresses are then left alone.
pub fn ingress_addresses(snapshot: &Snapshot, inputs: &AddressInputs) -> Option<IngressAddresses> {
    let of_service = match inputs.source {
        IngressStatusSource::Service => {
            let service = snapshot.service(&inputs.service.namespace, &inputs.service.name);
            service.map(|s| service_addresses(s, inputs.allocation)).unwrap_or_default()
        }
        IngressStatusSource::Nodes => Vec::new(),
    };
    let (origin, mut addresses) = if of_service.is_empty() {
        (AddressOrigin::AgentNodes, agent_node_addresses(snapshot, inputs.agents)?)
    } else {
        (AddressOrigin::Service, of_service)
    };
    addresses.sort();
    addresses.dedup();
    Some(IngressAddresses { origin, addresses })
}

/// The Service's LoadBalancer addresses (those the allocation gives it if
/// it manages it), else its `spec.externalIPs`.
fn service_addresses(service: &Service, allocation: &Allocation) -> Vec<StatusAddress> {
    let (namespace, name) = object_key(&service.metadata);
    let from_balancer: Vec<StatusAddress> = if allocation.is_managed(namespace, name) {
        let allocated = allocation.assignments.get(&(namespace.to_string(), name.to_string()));
        allocated.map(|ip| StatusAddress::Ip(ip.to_string())).into_iter().collect()
    } else {
        let balancer =
            service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_deref());
        balancer.unwrap_or_default().iter().filter_map(|i| StatusAddress::of(&i.ip, &i.hostname)).collect()
    };
    if !from_balancer.is_empty() {
        return from_balancer;
    }
    let external = service.spec.as_ref().and_then(|s| s.external_ips.as_deref()).unwrap_or_default();
    external.iter().map(|ip| StatusAddress::Ip(ip.clone())).collect()
}

/// The addresses of the agents' nodes (`None`: not known yet): each one's
/// ExternalIP addresses, else its InternalIP ones.
fn agent_node_addresses(snapshot: &Snapshot, agents: &AgentNodes) -> Option<Vec<StatusAddress>> {
    if *agents == AgentNodes::Unknown {
        return None;
    }
    let nodes = snapshot.nodes.iter().filter(|node| agents.includes(node));
    let addresses = nodes.flat_map(|node| {
        let addresses = node.status.as_ref().and_then(|s| s.addresses.as_deref()).unwrap_or_default();
        node_addresses(addresses)
    });
    Some(addresses.collect())
}

fn node_addresses(addresses: &[NodeAddress]) -> Vec<StatusAddress> {
    let of_type = |kind: &str| -> Vec<StatusAddress> {
        addresses.iter().filter(|a| a.type_ == kind).map(|a| StatusAddress::Ip(a.address.clone())).collect()
    };
    let external = of_type("ExternalIP");
    if external.is_empty() { of_type("InternalIP") } else { external }
}

/// The Ingresses of our classes whose status differs from `addresses`,
/// but for those `addresses` were just written to.
pub fn ingress_updates(
    snapshot: &Snapshot,
    options: &L7Options,
    addresses: &[StatusAddress],
    pending: &PendingWrites,
) -> Vec<IngressStatusUpdate> {
    our_ingresses(snapshot, options)
        .into_iter()
        .filter(|ingress| current_addresses(ingress) != addresses && !pending.is_pending(ingress, addresses))
        .map(|ingress| {
            let (namespace, name) = object_key(&ingress.metadata);
            IngressStatusUpdate {
                namespace: namespace.into(),
                name: name.into(),
                resource_version: ingress.metadata.resource_version.clone(),
                addresses: addresses.to_vec(),
            }
        })
        .collect()
}

/// The addresses an Ingress shows now, sorted.
fn current_addresses(ingress: &Ingress) -> Vec<StatusAddress> {
    let current = ingress.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_deref());
    let mut out: Vec<StatusAddress> =
        current.unwrap_or_default().iter().filter_map(|i| StatusAddress::of(&i.ip, &i.hostname)).collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests;
