//! The cluster side of `lb run` that writes: the leader election, and the
//! status task that writes while this agent leads.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::settings::AgentSettings;
use crate::cli::RunArgs;
use crate::cluster::{LeaseSettings, elect};
use crate::compile::l7::L7Options;
use crate::diagnostics::Diagnostic;
use crate::snapshot::Snapshot;
use crate::status::ipam::IpamOptions;
use crate::status::{StatusInputs, StatusSettings, write_status};

/// The time a stopping agent gives itself to release the Lease.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Writers {
    stop_election: oneshot::Sender<()>,
    election: JoinHandle<()>,
    status: JoinHandle<()>,
}

impl Writers {
    pub fn start(
        client: Client,
        args: &RunArgs,
        settings: &AgentSettings,
        ingress: &L7Options,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        diagnostics: watch::Receiver<Arc<Vec<Diagnostic>>>,
    ) -> Self {
        let cluster = &args.cluster;
        let config = &settings.config;
        let identity = cluster.identity.clone().unwrap_or_else(|| settings.node_name.clone());
        let lease = LeaseSettings::new(
            cluster.leader_election_namespace.clone(),
            cluster.leader_election_lease.clone(),
            identity.clone(),
        );
        let settings = StatusSettings {
            ingress: ingress.clone(),
            ingress_service: args.ingress.ingress_service.clone(),
            ingress_status: config.ingress_status,
            pools: config.address_pools.clone(),
            ipam: IpamOptions { load_balancer_class: cluster.load_balancer_class.clone() },
            identity,
        };
        let (leader_tx, leader) = watch::channel(false);
        let (stop_election, stopped) = oneshot::channel::<()>();
        let election = tokio::spawn(elect(client.clone(), lease, leader_tx, async {
            let _ = stopped.await;
        }));
        let status = tokio::spawn(write_status(client, settings, StatusInputs { leader, snapshots, diagnostics }));
        Self { stop_election, election, status }
    }

    /// Stops writing and releases the Lease if we hold it.
    pub async fn stop(self) {
        self.status.abort();
        let _ = self.stop_election.send(());
        if tokio::time::timeout(RELEASE_TIMEOUT, self.election).await.is_err() {
            tracing::warn!("releasing the leader Lease timed out");
        }
    }
}
