//! Which nodes' agents are alive, from their Leases: each agent renews
//! `lb-node-<node name>` every 2 s (see `cluster::node_lease`), and a node
//! whose Lease has not changed for its lease duration has lost its
//! addresses to the next node.
//!
//! Time is client-go's observed time: a Lease is alive for
//! `leaseDurationSeconds` after its holder record (holder, `renewTime`)
//! was last seen to *change*, measured on this node's monotonic clock, so
//! the renewing node's wall clock (its `renewTime`) never matters, only
//! that it changes. The price, as in client-go: a Lease first seen (at
//! start, or after a relist that brings it back) counts from that moment,
//! so a node whose agent died before this one started is taken for alive
//! for one lease duration.
//!
//! A released Lease (no holder: its agent stopped; the pinned data path
//! keeps serving) is a change like any other: the node stays alive for the
//! duration the release wrote, time for the agent that takes over on the
//! node to renew it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

/// The names of the node Leases: this, then the node's name.
pub const NODE_LEASE_PREFIX: &str = "lb-node-";

/// The lease duration of a Lease that does not say (client-go's default).
const DEFAULT_DURATION: Duration = Duration::from_secs(15);

/// The name of `node`'s Lease.
pub fn node_lease_name(node: &str) -> String {
    format!("{NODE_LEASE_PREFIX}{node}")
}

/// The node Leases as observed, by node name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeLeases {
    nodes: BTreeMap<String, Observed>,
}

/// One node Lease: its holder record, when it last changed, and for how
/// long that keeps the node alive.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Observed {
    holder: Option<String>,
    renewed: Option<MicroTime>,
    since: Instant,
    duration: Duration,
}

impl Observed {
    fn expiry(&self) -> Instant {
        self.since + self.duration
    }
}

impl NodeLeases {
    /// Takes `lease` (as listed or watched at `now`) into account; other
    /// Leases than node Leases are ignored. Whether anything changed.
    pub fn observe(&mut self, lease: &Lease, now: Instant) -> bool {
        let Some(node) = node_of(lease) else { return false };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.filter(|h| !h.is_empty());
        let seconds = spec.lease_duration_seconds.filter(|s| *s > 0).map(|s| Duration::from_secs(s as u64));
        let duration = seconds.unwrap_or(DEFAULT_DURATION);
        match self.nodes.get_mut(node) {
            Some(seen) if seen.holder == holder && seen.renewed == spec.renew_time => {
                let changed = seen.duration != duration;
                seen.duration = duration;
                changed
            }
            _ => {
                let observed = Observed { holder, renewed: spec.renew_time, since: now, duration };
                self.nodes.insert(node.to_string(), observed);
                true
            }
        }
    }

    /// Forgets the Lease named `lease` (deleted). Whether it was known.
    pub fn forget(&mut self, lease: &str) -> bool {
        lease.strip_prefix(NODE_LEASE_PREFIX).is_some_and(|node| self.nodes.remove(node).is_some())
    }

    /// Keeps only the Leases named in `leases` (a complete list). Whether
    /// any was forgotten.
    pub fn retain(&mut self, leases: &BTreeSet<String>) -> bool {
        let before = self.nodes.len();
        self.nodes.retain(|node, _| leases.contains(&node_lease_name(node)));
        self.nodes.len() != before
    }

    /// Whether `node`'s agent is alive at `now`: its Lease changed less
    /// than a lease duration ago. No Lease: not alive.
    pub fn alive(&self, node: &str, now: Instant) -> bool {
        self.nodes.get(node).is_some_and(|seen| now < seen.expiry())
    }

    /// When the next alive node expires, if one does after `now`: when
    /// [`Self::alive`] next changes unless a Lease changes first.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        self.nodes.values().map(Observed::expiry).filter(|expiry| *expiry > now).min()
    }

    /// The names of the nodes alive at `now`.
    pub fn alive_nodes(&self, now: Instant) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter(move |(_, seen)| now < seen.expiry()).map(|(node, _)| node.as_str())
    }
}

/// The node a node Lease is for; `None` for other Leases.
fn node_of(lease: &Lease) -> Option<&str> {
    let name = lease.metadata.name.as_deref()?;
    name.strip_prefix(NODE_LEASE_PREFIX).filter(|node| !node.is_empty())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn lease(name: &str, holder: Option<&str>, renewed_at_second: i64, seconds: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                lease_duration_seconds: seconds,
                renew_time: Some(MicroTime(Timestamp::from_second(renewed_at_second).unwrap())),
                ..Default::default()
            }),
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_lease_is_alive_for_its_duration_after_its_record_last_changed() {
        let t0 = Instant::now();
        let mut leases = NodeLeases::default();
        assert!(!leases.alive("a", t0), "no Lease: not alive");
        assert!(leases.observe(&lease("lb-node-a", Some("agent-a"), 100, Some(15)), t0));
        assert!(leases.alive("a", t0) && leases.alive("a", t0 + secs(14)));
        assert_eq!(leases.next_change(t0), Some(t0 + secs(15)));
        // Read again unchanged 10 s later: the clock keeps running from t0.
        assert!(!leases.observe(&lease("lb-node-a", Some("agent-a"), 100, Some(15)), t0 + secs(10)));
        assert!(!leases.alive("a", t0 + secs(15)));
        assert_eq!(leases.next_change(t0 + secs(15)), None);
        // Renewed (seen at +20 s): alive again until +35 s.
        assert!(leases.observe(&lease("lb-node-a", Some("agent-a"), 102, Some(15)), t0 + secs(20)));
        assert!(leases.alive("a", t0 + secs(34)) && !leases.alive("a", t0 + secs(35)));
        assert_eq!(leases.alive_nodes(t0 + secs(30)).collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn the_renewing_nodes_clock_does_not_matter() {
        let t0 = Instant::now();
        let mut leases = NodeLeases::default();
        // A renewTime an hour in the past or in the future: what counts is
        // that it changes.
        leases.observe(&lease("lb-node-slow", Some("s"), 1, Some(15)), t0);
        leases.observe(&lease("lb-node-fast", Some("f"), 4_000_000_000, Some(15)), t0);
        assert!(leases.alive("slow", t0 + secs(10)) && leases.alive("fast", t0 + secs(10)));
        // A new holder with the same renewTime is a change too.
        assert!(leases.observe(&lease("lb-node-slow", Some("s2"), 1, Some(15)), t0 + secs(10)));
        assert!(leases.alive("slow", t0 + secs(20)) && !leases.alive("fast", t0 + secs(20)));
    }

    #[test]
    fn the_earliest_future_expiry_is_the_next_change() {
        let t0 = Instant::now();
        let mut leases = NodeLeases::default();
        leases.observe(&lease("lb-node-a", Some("a"), 1, Some(15)), t0);
        leases.observe(&lease("lb-node-b", Some("b"), 1, Some(40)), t0 + secs(5));
        // Without leaseDurationSeconds: 15 s.
        leases.observe(&lease("lb-node-c", Some("c"), 1, None), t0 + secs(3));
        assert_eq!(leases.next_change(t0), Some(t0 + secs(15)));
        assert_eq!(leases.next_change(t0 + secs(15)), Some(t0 + secs(18)));
        assert_eq!(leases.next_change(t0 + secs(18)), Some(t0 + secs(45)));
        // A longer duration written on the same record extends it.
        assert!(leases.observe(&lease("lb-node-a", Some("a"), 1, Some(60)), t0 + secs(1)));
        assert!(leases.alive("a", t0 + secs(59)));
    }

    #[test]
    fn a_released_lease_keeps_its_node_alive_for_the_duration_it_wrote() {
        let t0 = Instant::now();
        let mut leases = NodeLeases::default();
        leases.observe(&lease("lb-node-a", Some("old-pod"), 100, Some(15)), t0);
        assert!(leases.observe(&lease("lb-node-a", None, 105, Some(15)), t0 + secs(5)));
        assert!(leases.alive("a", t0 + secs(19)));
        // The new agent on the node takes it over: renewed.
        leases.observe(&lease("lb-node-a", Some("new-pod"), 106, Some(15)), t0 + secs(7));
        assert!(leases.alive("a", t0 + secs(21)) && !leases.alive("a", t0 + secs(22)));
    }

    #[test]
    fn only_node_leases_count_and_deleted_or_unlisted_ones_are_forgotten() {
        let t0 = Instant::now();
        let mut leases = NodeLeases::default();
        assert!(!leases.observe(&lease("lb-leader", Some("a"), 1, Some(15)), t0));
        assert!(!leases.observe(&lease("lb-node-", Some("a"), 1, Some(15)), t0));
        assert!(!leases.alive("lb-leader", t0) && !leases.alive("", t0));
        for node in ["a", "b", "c"] {
            leases.observe(&lease(&node_lease_name(node), Some(node), 1, Some(15)), t0);
        }
        assert!(leases.forget("lb-node-a") && !leases.forget("lb-node-a") && !leases.forget("lb-leader"));
        assert!(!leases.alive("a", t0));
        let listed: BTreeSet<String> = ["lb-node-c".to_string(), "lb-leader".to_string()].into();
        assert!(leases.retain(&listed) && !leases.retain(&listed));
        assert_eq!(leases.alive_nodes(t0).collect::<Vec<_>>(), ["c"]);
    }
}
