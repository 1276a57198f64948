//! The cluster side of `lb run` that writes: this node's liveness Lease
//! (and the watch of every node's, which layer-2 announcement reads), and
//! unless `--no-status`, the leader election and the status task that
//! writes while this agent leads.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::liveness::Liveness;
use super::settings::AgentSettings;
use crate::cli::RunArgs;
use crate::cluster::{LeaseSettings, elect, log_liveness, node_lease_settings, renew_node_lease, watch_node_leases};
use crate::compile::l7::L7Options;
use crate::diagnostics::Diagnostic;
use crate::metallb::liveness::NodeLeases;
use crate::snapshot::Snapshot;
use crate::status::ipam::IpamOptions;
use crate::status::{StatusInputs, StatusSettings, write_status};

/// The time a stopping agent gives itself to release its Leases.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the status task reads (it runs only when given these).
pub struct StatusSources {
    pub ingress: L7Options,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub diagnostics: watch::Receiver<Arc<Vec<Diagnostic>>>,
}

pub struct Writers {
    /// Tells the Lease tasks to release their Leases and end.
    stop: watch::Sender<bool>,
    node_lease: JoinHandle<()>,
    node_leases: watch::Receiver<NodeLeases>,
    election: Option<JoinHandle<()>>,
    status: Option<JoinHandle<()>>,
}

impl Writers {
    pub fn start(client: Client, args: &RunArgs, settings: &AgentSettings, status: Option<StatusSources>) -> Self {
        let cluster = &args.cluster;
        let namespace = &cluster.leader_election_namespace;
        let identity = cluster.identity.clone().unwrap_or_else(|| settings.node_name.clone());
        let (stop, stopped) = watch::channel(false);
        let stop_signal = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let node_lease_settings = node_lease_settings(namespace, &settings.node_name, &identity);
        let node_lease_duration = node_lease_settings.duration;
        let node_lease =
            tokio::spawn(renew_node_lease(client.clone(), node_lease_settings, stop_signal(stopped.clone())));
        let node_leases = watch_node_leases(client.clone(), namespace);
        let (mut election, mut status_task) = (None, None);
        if let Some(sources) = status {
            let lease = LeaseSettings::new(namespace.clone(), cluster.leader_election_lease.clone(), identity.clone());
            let config = &settings.config;
            let status_settings = StatusSettings {
                ingress: sources.ingress,
                ingress_service: args.ingress.ingress_service.clone(),
                ingress_status: config.ingress_status,
                pools: config.address_pools.clone(),
                ipam: IpamOptions { load_balancer_class: cluster.load_balancer_class.clone() },
                identity,
                node_name: settings.node_name.clone(),
                node_lease_duration,
            };
            let (leader_tx, leader) = watch::channel(false);
            election = Some(tokio::spawn(elect(client.clone(), lease, leader_tx, stop_signal(stopped))));
            let inputs = StatusInputs {
                leader,
                snapshots: sources.snapshots,
                diagnostics: sources.diagnostics,
                alive_agents: alive_agents(node_leases.clone()),
            };
            status_task = Some(tokio::spawn(write_status(client, status_settings, inputs)));
        }
        let writers = Self { stop, node_lease, node_leases, election, status: status_task };
        tokio::spawn(log_liveness(writers.node_leases()));
        writers
    }

    /// Every node's liveness Lease as observed (see
    /// [`crate::metallb::liveness`]).
    pub fn node_leases(&self) -> watch::Receiver<NodeLeases> {
        self.node_leases.clone()
    }

    /// Stops writing and releases the Leases we hold.
    pub async fn stop(self) {
        if let Some(status) = &self.status {
            status.abort();
        }
        self.stop.send_replace(true);
        let released = async {
            if let Some(election) = self.election {
                let _ = election.await;
            }
            let _ = self.node_lease.await;
        };
        if tokio::time::timeout(RELEASE_TIMEOUT, released).await.is_err() {
            tracing::warn!("releasing the Leases timed out");
        }
    }
}

/// The nodes whose agents are alive, sent again whenever that set changes
/// (a Lease appears, goes, expires or is renewed after expiring), for the
/// status task. Ends when the receiver is gone.
fn alive_agents(leases: watch::Receiver<NodeLeases>) -> watch::Receiver<BTreeSet<String>> {
    let alive_now = |leases: &watch::Receiver<NodeLeases>| -> BTreeSet<String> {
        leases.borrow().alive_nodes(Instant::now()).map(str::to_string).collect()
    };
    let (tx, rx) = watch::channel(alive_now(&leases));
    let mut liveness = Liveness::new(Some(leases.clone()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = liveness.changed() => {}
                () = tx.closed() => return,
            }
            let alive = alive_now(&leases);
            tx.send_if_modified(|sent| {
                let changed = *sent != alive;
                *sent = alive;
                changed
            });
        }
    });
    rx
}
