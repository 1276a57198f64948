//! The EndpointSlice changes every subject applies, in the same order: one
//! service at a time gets one of its endpoints replaced by a new pod IP
//! (a pod rescheduled), spread over the cluster.

use std::net::Ipv4Addr;

use crate::cluster::Cluster;

pub const DESCRIPTION: &str =
    "one service's EndpointSlice changes: one of its 2 endpoints is replaced by a new pod IP (10.250.0.0/16)";

/// Spreads the changed services over the cluster (a prime, so consecutive
/// changes hit far-apart services).
const STRIDE: usize = 7_919;

/// One EndpointSlice change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Index of the changed service in the cluster.
    pub service: usize,
    /// Which of its endpoints is replaced (modulo the endpoint count).
    pub endpoint: usize,
    /// The new pod's address.
    pub ip: Ipv4Addr,
}

impl Change {
    /// `count` changes of a cluster of `services` services.
    pub fn plan(services: usize, count: usize) -> Vec<Change> {
        assert!(services > 0, "a cluster with services");
        let base = u32::from(Ipv4Addr::new(10, 250, 0, 0));
        (0..count)
            .map(|k| Change {
                service: (k * STRIDE + 1) % services,
                endpoint: k % 2,
                ip: Ipv4Addr::from(base + 1 + u32::try_from(k).expect("fewer than 2^32 changes")),
            })
            .collect()
    }

    /// Applies the change to `cluster`.
    pub fn apply_to(&self, cluster: &mut Cluster) {
        let endpoints = &mut cluster.services[self.service].endpoints;
        let slot = self.endpoint % endpoints.len();
        endpoints[slot].ip = self.ip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_replace_one_endpoint_with_a_new_address() {
        let before = Cluster::background(100);
        let changes = Change::plan(100, 10);
        let mut after = before.clone();
        for c in &changes {
            c.apply_to(&mut after);
        }
        let changed: Vec<usize> = (0..100).filter(|&i| before.services[i] != after.services[i]).collect();
        assert_eq!(changed.len(), 10, "ten distinct services changed: {changed:?}");
        let all: Vec<Ipv4Addr> = after.services.iter().flat_map(|s| s.endpoints.iter().map(|e| e.ip)).collect();
        let mut distinct = all.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), all.len());
    }
}
