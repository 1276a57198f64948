//! Which nodes' agents are alive, for layer-2 announcement: by their node
//! Leases in a cluster; without one (`--manifests`) every node's.

use std::collections::BTreeSet;
use std::time::Instant;

use tokio::sync::watch;

use crate::metallb::liveness::NodeLeases;

pub struct Liveness {
    leases: Option<watch::Receiver<NodeLeases>>,
    /// The nodes alive when last looked at.
    alive: BTreeSet<String>,
}

impl Liveness {
    /// `None`: no Leases, every node is alive.
    pub fn new(leases: Option<watch::Receiver<NodeLeases>>) -> Self {
        let mut liveness = Self { leases, alive: BTreeSet::new() };
        liveness.alive = liveness.alive_now();
        liveness
    }

    /// Whether `node`'s agent is alive, as last looked at.
    pub fn is_alive(&self, node: &str) -> bool {
        self.leases.is_none() || self.alive.contains(node)
    }

    fn alive_now(&self) -> BTreeSet<String> {
        match &self.leases {
            Some(leases) => leases.borrow().alive_nodes(Instant::now()).map(str::to_string).collect(),
            None => BTreeSet::new(),
        }
    }

    /// Resolves when the set of alive nodes changed: a Lease appeared,
    /// went away, expired, or was renewed after expiring (not at every
    /// renewal). Never without Leases.
    pub async fn changed(&mut self) {
        loop {
            let Some(leases) = self.leases.as_mut() else { return std::future::pending().await };
            let next = leases.borrow().next_change(Instant::now());
            let expiry = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = leases.changed() => {
                    if changed.is_err() {
                        // The watch ended with the agent: what was seen stays.
                        return std::future::pending().await;
                    }
                }
                () = expiry => {}
            }
            let now = self.alive_now();
            if now != self.alive {
                self.alive = now;
                return;
            }
        }
    }
}
