//! The status task: while this agent leads, it makes the API server show
//! what the snapshot implies — Service addresses from the pools, Ingress
//! addresses — and publishes Events on the problems the compilers and the
//! IPAM found. It is the agent's only writer of other objects.
//!
//! Every round recomputes everything from the latest snapshot and writes
//! only the differences, so a failed write is simply retried by the next
//! round (on the next change, or at the latest after [`RESYNC`]).
//!
//! The Ingresses' addresses may be those of the nodes the agents run on
//! (see [`super::ingress`]), so a change of the nodes whose agents are
//! alive starts a round too, once it has settled.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use super::events::{EventLimiter, EventPublisher, Problem};
use super::ingress::{
    AddressInputs, AddressOrigin, AgentNodes, IngressStatusUpdate, PendingWrites, ingress_addresses, ingress_updates,
};
use super::ipam::{AddressPool, Allocation, IpamOptions, allocate, namespace_labels};
use super::services::{ServiceStatusUpdate, service_updates};
use crate::cli::ServiceName;
use crate::compile::l7::L7Options;
use crate::config::IngressStatusSource;
use crate::diagnostics::{Diagnostic, Subject};
use crate::metallb::pools::{all_pools, metallb_pools};
use crate::snapshot::Snapshot;

/// The longest time between two rounds (someone else may have changed a
/// status we own; a write may have failed).
pub const RESYNC: Duration = Duration::from_secs(30);

/// The longest a status write may take (then it is retried next round).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a change of the alive agents' nodes is left to settle before
/// a round reads it: the Leases of a list arrive one by one.
const AGENTS_SETTLE: Duration = Duration::from_millis(100);

/// The Event reason of the problems the compilers find.
pub const REJECTED: &str = "Rejected";

/// What the status task writes, and for which objects.
#[derive(Clone, Debug)]
pub struct StatusSettings {
    pub ingress: L7Options,
    pub ingress_service: ServiceName,
    pub ingress_status: IngressStatusSource,
    pub pools: Vec<AddressPool>,
    pub ipam: IpamOptions,
    /// This agent's identity (the Events' reporting instance).
    pub identity: String,
    /// This agent's node: the agents' nodes are known once its Lease is
    /// seen alive.
    pub node_name: String,
    /// The node Leases' duration: if this node's is not seen alive within
    /// it, the agents' nodes are every Node.
    pub node_lease_duration: Duration,
}

/// The inputs of the status task.
pub struct StatusInputs {
    pub leader: watch::Receiver<bool>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The problems of the last compilation of the snapshot.
    pub diagnostics: watch::Receiver<Arc<Vec<Diagnostic>>>,
    /// The nodes whose agent's Lease is alive, as observed.
    pub alive_agents: watch::Receiver<BTreeSet<String>>,
}

/// Runs until the inputs' senders are gone.
pub async fn write_status(client: Client, settings: StatusSettings, mut inputs: StatusInputs) {
    let mut writer = Writer {
        events: EventPublisher::new(client.clone(), settings.identity.clone()),
        client,
        settings,
        limiter: EventLimiter::default(),
        ingress_origin: None,
        pending_ingresses: PendingWrites::default(),
    };
    // The node Leases are followed from about now on.
    let started = Instant::now();
    loop {
        if inputs.leader.wait_for(|leading| *leading).await.is_err() {
            return;
        }
        writer.limiter.reset();
        writer.pending_ingresses = PendingWrites::default();
        // As seen from now on: changes settle before they are read again.
        let mut alive = inputs.alive_agents.borrow_and_update().clone();
        while *inputs.leader.borrow_and_update() {
            let snapshot = inputs.snapshots.borrow_and_update().clone();
            let diagnostics = inputs.diagnostics.borrow_and_update().clone();
            let settings = &writer.settings;
            let agents =
                AgentNodes::new(alive.clone(), &settings.node_name, started.elapsed(), settings.node_lease_duration);
            // Not known yet: known (or every Node) at the latest then.
            let known_by = (agents == AgentNodes::Unknown).then(|| started + settings.node_lease_duration);
            writer.round(&snapshot, &diagnostics, &agents).await;
            tokio::select! {
                changed = inputs.snapshots.changed() => if changed.is_err() { return },
                changed = inputs.diagnostics.changed() => if changed.is_err() { return },
                changed = inputs.leader.changed() => if changed.is_err() { return },
                Ok(()) = inputs.alive_agents.changed() => {
                    tokio::time::sleep(AGENTS_SETTLE).await;
                    alive = inputs.alive_agents.borrow_and_update().clone();
                }
                () = sleep_until(known_by) => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }
}

/// Sleeps until `at`, forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

struct Writer {
    client: Client,
    events: EventPublisher,
    settings: StatusSettings,
    limiter: EventLimiter,
    /// Where the Ingresses' addresses came from in the last round that
    /// knew (logged when it changes).
    ingress_origin: Option<AddressOrigin>,
    /// The Ingress statuses written and not seen back yet.
    pending_ingresses: PendingWrites,
}

impl Writer {
    async fn round(&mut self, snapshot: &Snapshot, diagnostics: &[Diagnostic], agents: &AgentNodes) {
        let (metallb, _) = metallb_pools(&self.settings.pools, &snapshot.ip_address_pools);
        let pools = all_pools(&self.settings.pools, &metallb);
        let namespaces = namespace_labels(&snapshot.namespaces);
        let allocation = allocate(&pools, &snapshot.services, &namespaces, &self.settings.ipam);
        for update in service_updates(snapshot, &allocation) {
            self.write_service(&update).await;
        }
        let inputs = AddressInputs {
            source: self.settings.ingress_status,
            service: &self.settings.ingress_service,
            allocation: &allocation,
            agents,
        };
        if let Some(ingress) = ingress_addresses(snapshot, &inputs) {
            self.log_ingress_origin(ingress.origin);
            self.pending_ingresses.forget_seen(snapshot);
            let updates =
                ingress_updates(snapshot, &self.settings.ingress, &ingress.addresses, &self.pending_ingresses);
            for update in updates {
                if let Some(written) = self.write_ingress(&update).await {
                    self.pending_ingresses.record(&update, written.metadata.resource_version);
                }
            }
        }
        let problems = problems(diagnostics, &allocation);
        let admitted = self.limiter.admit(problems, Instant::now());
        if tokio::time::timeout(WRITE_TIMEOUT, self.events.publish(&admitted, snapshot)).await.is_err() {
            warn!("publishing Events timed out");
        }
    }

    /// Logs where the Ingresses' addresses come from when that changes
    /// (with `ingressStatus: service`: the Service, or the fallback).
    fn log_ingress_origin(&mut self, origin: AddressOrigin) {
        if self.ingress_origin == Some(origin) || self.settings.ingress_status != IngressStatusSource::Service {
            self.ingress_origin = Some(origin);
            return;
        }
        let service = &self.settings.ingress_service;
        match origin {
            AddressOrigin::Service => info!(%service, "Ingress status: the addresses of the ingress Service"),
            AddressOrigin::AgentNodes => info!(
                %service,
                "Ingress status: the ingress Service has no address (or does not exist): the addresses of the nodes the agents run on"
            ),
        }
        self.ingress_origin = Some(origin);
    }

    async fn write_service(&self, update: &ServiceStatusUpdate) {
        let ingress = match update.address {
            Some(ip) => json!([{ "ip": ip.to_string(), "ipMode": "VIP" }]),
            None => json!([]),
        };
        let patch = json!({ "status": { "loadBalancer": { "ingress": ingress } } });
        let api: Api<Service> = Api::namespaced(self.client.clone(), &update.namespace);
        let name = format!("{}/{}", update.namespace, update.name);
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let written = api.patch_status(&update.name, &params, &patch);
        match tokio::time::timeout(WRITE_TIMEOUT, written).await {
            Ok(Ok(_)) => info!(service = %name, address = ?update.address, "Service status written"),
            Ok(Err(e)) => warn!(service = %name, "writing Service status failed (retried): {e}"),
            Err(_) => warn!(service = %name, "writing Service status timed out (retried)"),
        }
    }

    /// The Ingress as written; `None` if it was not.
    async fn write_ingress(&self, update: &IngressStatusUpdate) -> Option<Ingress> {
        let ingress: Vec<_> = update.addresses.iter().map(|a| a.to_ingress()).collect();
        let patch = json!({ "status": { "loadBalancer": { "ingress": ingress } } });
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &update.namespace);
        let name = format!("{}/{}", update.namespace, update.name);
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let written = api.patch_status(&update.name, &params, &patch);
        match tokio::time::timeout(WRITE_TIMEOUT, written).await {
            Ok(Ok(written)) => {
                info!(ingress = %name, addresses = update.addresses.len(), "Ingress status written");
                return Some(written);
            }
            Ok(Err(e)) => warn!(ingress = %name, "writing Ingress status failed (retried): {e}"),
            Err(_) => warn!(ingress = %name, "writing Ingress status timed out (retried)"),
        }
        None
    }
}

/// The problems to report as Events: the compilers' diagnostics about
/// objects, and the Services the IPAM left without an address.
fn problems(diagnostics: &[Diagnostic], allocation: &Allocation) -> BTreeSet<Problem> {
    let compiled = diagnostics.iter().filter_map(|d| {
        let subject = d.subject.clone()?;
        let action = if d.field.is_empty() { "Sync".to_string() } else { d.field.clone() };
        Some(Problem { subject, reason: REJECTED.into(), action, note: d.note() })
    });
    let unallocated = allocation.problems.iter().map(|p| Problem {
        subject: Subject { kind: "Service".into(), namespace: p.namespace.clone(), name: p.name.clone() },
        reason: p.reason.reason().into(),
        action: "AllocateAddress".into(),
        note: p.message.clone(),
    });
    compiled.chain(unallocated).collect()
}
