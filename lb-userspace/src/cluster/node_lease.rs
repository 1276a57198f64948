//! Per-node liveness: every agent holds its node's Lease
//! (`lb-node-<node name>` in its own namespace) by the leader election's
//! algorithm ([`super::lease`]: 15 s, renewed every 2 s), and follows all
//! the node Leases to know which nodes' agents are alive
//! ([`NodeLeases`]: what layer-2 announcement needs, so that a node whose
//! agent died loses its addresses to the next node).
//!
//! A stopping agent releases its node's Lease keeping the full duration:
//! its pinned data path keeps answering, and an agent standing by on the
//! same node (an upgrade) takes the Lease over within a retry period,
//! before the node could be taken for dead.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Instant;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use super::lease::{LeaseHolder, LeaseSettings};
use crate::metallb::liveness::{NodeLeases, node_lease_name};

/// The settings of `node`'s Lease in `namespace`, held as `identity`.
pub fn node_lease_settings(namespace: &str, node: &str, identity: &str) -> LeaseSettings {
    LeaseSettings::new(namespace.to_string(), node_lease_name(node), identity.to_string())
}

/// Creates and renews this node's Lease until `stop` completes, then
/// releases it (keeping its duration, see the module documentation).
pub async fn renew_node_lease(client: Client, settings: LeaseSettings, stop: impl Future<Output = ()>) {
    let mut lease = LeaseHolder::new(client, settings);
    let mut stop = std::pin::pin!(stop);
    let mut holding = false;
    loop {
        let held = lease.round().await;
        if held != holding {
            let name = &lease.settings.name;
            if held {
                info!(lease = %name, "renewing this node's Lease: its agent is alive to the others");
            } else {
                warn!(lease = %name, "this node's Lease is not ours (another agent on the node?) or cannot be renewed");
            }
            holding = held;
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(lease.settings.retry_period) => {}
        }
    }
    let duration = lease.settings.duration;
    lease.release(duration).await;
}

/// Follows the node Leases of `namespace` (those named `lb-node-…`):
/// the receiver's [`NodeLeases`] changes whenever one of them changes, is
/// added or is removed. While the API server is unreachable it keeps what
/// was last seen (the Leases then stop changing, so every node expires one
/// lease duration after the last change seen, as in client-go). The task
/// ends when every receiver is gone.
pub fn watch_node_leases(client: Client, namespace: &str) -> watch::Receiver<NodeLeases> {
    let (tx, rx) = watch::channel(NodeLeases::default());
    let api: Api<Lease> = Api::namespaced(client, namespace);
    tokio::spawn(follow_node_leases(api, tx));
    rx
}

/// Logs which nodes' agents come alive and expire, as `leases` shows
/// them (the first complete picture as a count). Ends with the sender.
pub async fn log_liveness(mut leases: watch::Receiver<NodeLeases>) {
    let mut alive: Option<BTreeSet<String>> = None;
    loop {
        let now = Instant::now();
        let (current, next) = {
            let leases = leases.borrow_and_update();
            let current: BTreeSet<String> = leases.alive_nodes(now).map(str::to_string).collect();
            (current, leases.next_change(now))
        };
        match &alive {
            None if current.is_empty() => {}
            None => info!(nodes = current.len(), "node agents alive (their Leases are renewed)"),
            Some(before) => {
                for node in current.difference(before) {
                    info!(%node, "the node's agent is alive: its Lease is renewed");
                }
                for node in before.difference(&current) {
                    warn!(%node, "the node's agent is not alive: its Lease expired or was deleted");
                }
            }
        }
        if alive.is_some() || !current.is_empty() {
            alive = Some(current);
        }
        let expiry = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = leases.changed() => if changed.is_err() { return },
            () = expiry => {}
        }
    }
}

async fn follow_node_leases(api: Api<Lease>, tx: watch::Sender<NodeLeases>) {
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    // The Leases of a (re)list so far: the others are gone when it ends.
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let mut failing = false;
    loop {
        let event = tokio::select! {
            _ = tx.closed() => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                if !failing {
                    warn!(
                        "watching the node Leases failed (retrying; nodes expire as their Leases stop changing): {e}"
                    );
                }
                failing = true;
                continue;
            }
        };
        if failing {
            info!("watching the node Leases again");
            failing = false;
        }
        let now = Instant::now();
        tx.send_if_modified(|leases| match &event {
            watcher::Event::Apply(lease) => leases.observe(lease, now),
            watcher::Event::Delete(lease) => leases.forget(&lease.name_any()),
            watcher::Event::Init => {
                listed.clear();
                false
            }
            watcher::Event::InitApply(lease) => {
                listed.insert(lease.name_any());
                leases.observe(lease, now)
            }
            watcher::Event::InitDone => leases.retain(&std::mem::take(&mut listed)),
        });
    }
}
