//! Which node announces a LoadBalancer address on its LAN: MetalLB's
//! layer-2 rule, so that a cluster moving from MetalLB keeps its owners
//! and every agent computes the same answer without talking to the
//! others. The eligible nodes are sorted by `sha256(node + "#" + ip)` and
//! the first one owns the address (`ip` is the Service's first address).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use crate::selector::Selector;

/// The label that keeps a node out of every load balancer (Kubernetes'
/// well-known label; MetalLB honours it too).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// The owner of `ip` among `eligible` node names, if any is.
pub fn owner<'n>(ip: Ipv4Addr, eligible: impl IntoIterator<Item = &'n str>) -> Option<&'n str> {
    eligible.into_iter().min_by_key(|node| (rank(node, ip), *node))
}

/// A node's place in the order for `ip`: the lower, the earlier.
fn rank(node: &str, ip: Ipv4Addr) -> [u8; 32] {
    Sha256::digest(format!("{node}#{ip}").as_bytes()).into()
}

/// What eligibility needs to know of a node.
#[derive(Clone, Debug)]
pub struct NodeFacts<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Its `Ready` condition is `True`.
    pub ready: bool,
    /// Its agent is alive: its Lease is current (always, outside a
    /// cluster).
    pub alive: bool,
}

/// Whether `node` may announce an address of a Service:
/// - Ready, its agent alive, not labelled [`EXCLUDE_LABEL`];
/// - matched by one of the advertisement's `nodeSelectors` (none: every
///   node);
/// - with `externalTrafficPolicy: Local`, holding a ready endpoint of the
///   Service (`local_endpoints` names those nodes; `None`: `Cluster`).
pub fn eligible(node: &NodeFacts<'_>, node_selectors: &[Selector], local_endpoints: Option<&BTreeSet<String>>) -> bool {
    node.ready
        && node.alive
        && !node.labels.contains_key(EXCLUDE_LABEL)
        && (node_selectors.is_empty() || node_selectors.iter().any(|s| s.matches(node.labels)))
        && local_endpoints.is_none_or(|nodes| nodes.contains(node.name))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;

    /// Owners computed independently (Python's hashlib, sorting the
    /// names by `sha256(name + "#" + ip)` as MetalLB's speaker does).
    #[test]
    fn the_owner_is_metallbs() {
        let all = ["node1", "node2", "node3", "worker-a", "worker-b"];
        let table: [(&str, [&str; 3]); 5] = [
            ("192.168.1.150", ["node1", "node1", "worker-a"]),
            ("192.168.1.151", ["node1", "node1", "node1"]),
            ("192.168.1.152", ["node2", "node2", "worker-a"]),
            ("192.168.1.200", ["node2", "node2", "node2"]),
            ("10.0.0.1", ["node2", "node2", "worker-a"]),
        ];
        for (ip, owners) in table {
            let ip: Ipv4Addr = ip.parse().unwrap();
            for (nodes, want) in [&all[..2], &all[..3], &all[..]].into_iter().zip(owners) {
                assert_eq!(owner(ip, nodes.iter().copied()), Some(want), "{ip} among {nodes:?}");
                // The order the nodes come in does not matter.
                assert_eq!(owner(ip, nodes.iter().rev().copied()), Some(want), "{ip} among {nodes:?}");
            }
        }
        assert_eq!(owner("192.168.1.150".parse().unwrap(), []), None);
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn eligibility() {
        let plain = labels(&[("zone", "a")]);
        let excluded = labels(&[("zone", "a"), (EXCLUDE_LABEL, "")]);
        let node = |name, labels, ready, alive| NodeFacts { name, labels, ready, alive };
        assert!(eligible(&node("n1", &plain, true, true), &[], None));
        assert!(!eligible(&node("n1", &plain, false, true), &[], None), "not Ready");
        assert!(!eligible(&node("n1", &plain, true, false), &[], None), "its agent's Lease expired");
        assert!(!eligible(&node("n1", &excluded, true, true), &[], None), "excluded by label");

        let zone = |z: &str| {
            Selector::parse(&LabelSelector { match_labels: Some(labels(&[("zone", z)])), match_expressions: None })
                .unwrap()
        };
        assert!(eligible(&node("n1", &plain, true, true), &[zone("b"), zone("a")], None), "one selector matches");
        assert!(!eligible(&node("n1", &plain, true, true), &[zone("b")], None), "no selector matches");

        let local: BTreeSet<String> = ["n2".to_string()].into();
        assert!(!eligible(&node("n1", &plain, true, true), &[], Some(&local)), "Local: no endpoint here");
        assert!(eligible(&node("n2", &plain, true, true), &[], Some(&local)));
    }
}
