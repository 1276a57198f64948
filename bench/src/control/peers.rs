//! kube-proxy's two data-path writers, each in a network namespace of its
//! own that this bench creates and always deletes: `iptables-restore`
//! (full sync, then `--noflush` partial syncs) and `nft -f` (full ruleset,
//! then incremental transactions). Payloads are generated before the clock
//! starts; the time is the tool's, process start to exit.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use lb_testbed::netns;

use super::scale::{Subject, bench_node};
use super::{IPTABLES, NFT};
use crate::cluster::{Cluster, Node};
use crate::kube_proxy::{Namespace, iptables, nftables};

/// Medians of the payload sizes, for the measurement's extras.
#[derive(Default)]
struct Payloads {
    lines: Vec<f64>,
    rules: Vec<f64>,
}

impl Payloads {
    fn record(&mut self, payload: &str, rules: usize) {
        self.lines.push(payload.lines().count() as f64);
        self.rules.push(rules as f64);
    }

    fn extras(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("payload_lines".to_string(), crate::stats::median(&self.lines)),
            ("payload_rules".to_string(), crate::stats::median(&self.rules)),
        ])
    }
}

/// kube-proxy's iptables mode (`iptables-restore`, the nft backend here).
pub struct IptablesPartialSync {
    ns: Namespace,
    node: Node,
    loaded: Payloads,
    changes: Payloads,
}

impl IptablesPartialSync {
    pub fn new() -> Result<Self> {
        lb_testbed::netns::require_tool("iptables-restore", "iptables")?;
        let ns = Namespace::create("ipt")?;
        Ok(Self { ns, node: bench_node(), loaded: Payloads::default(), changes: Payloads::default() })
    }
}

impl Subject for IptablesPartialSync {
    fn name(&self) -> &'static str {
        IPTABLES
    }

    fn load(&mut self, cluster: &Cluster) -> Result<Duration> {
        let payload = iptables::full_restore(cluster, &self.node);
        self.loaded.record(&payload, iptables::rule_count(&payload));
        iptables::apply(self.ns.name(), &payload, false)
    }

    fn apply(&mut self, old: &Cluster, new: &Cluster, changed: usize) -> Result<Duration> {
        let payload = iptables::partial_restore(old, new, &self.node, &[changed]);
        self.changes.record(&payload, iptables::rule_count(&payload));
        iptables::apply(self.ns.name(), &payload, true)
    }

    fn verify(&self, cluster: &Cluster, changed: usize) -> Result<()> {
        let s = &cluster.services[changed];
        for e in &s.endpoints {
            let chain = iptables::endpoint_chain(s, e);
            let out = netns::exec_in(self.ns.name(), "iptables", &["-w", "-t", "nat", "-S", &chain])?;
            let rules = String::from_utf8_lossy(&out.stdout);
            let dnat = format!("--to-destination {}:{}", e.ip, s.target_port);
            ensure!(rules.contains(&dnat), "{chain} in {} has no `{dnat}`: {rules}", self.ns.name());
        }
        Ok(())
    }

    fn load_extras(&self) -> BTreeMap<String, f64> {
        self.loaded.extras()
    }

    fn change_extras(&self) -> BTreeMap<String, f64> {
        self.changes.extras()
    }
}

/// [`nftables::incremental`] for a change of service `changed` only,
/// generated from the old and new versions of that one service: the same
/// text as from the whole clusters (unchanged services add nothing to a
/// diff), without formatting every element of both clusters per change.
fn nft_change(old: &Cluster, new: &Cluster, changed: usize, node: &Node) -> String {
    let one = |cluster: &Cluster| Cluster { services: vec![cluster.services[changed].clone()] };
    nftables::incremental(&one(old), &one(new), node)
}

/// The largest cluster the nft peer is measured with. Binding a rule's
/// anonymous set (each service's `numgen … vmap { … }`) makes the kernel walk
/// the pending transaction (`__nft_set_trans_bind`, seen with perf on 6.18),
/// so kube-proxy's single first-sync transaction takes time quadratic in its
/// size (about 0.5 s at 1k services, 90 s at 10k here); 50k would take most
/// of an hour, and loading in smaller transactions does not help: each one
/// slows down as the table grows (minutes each at 25k services).
pub const NFT_MAX_SERVICES: usize = 10_000;

/// kube-proxy's nftables mode (`nft -f`).
pub struct NftIncremental {
    ns: Namespace,
    node: Node,
    loaded: Payloads,
    changes: Payloads,
}

impl NftIncremental {
    pub fn new() -> Result<Self> {
        lb_testbed::netns::require_tool("nft", "nftables")?;
        let ns = Namespace::create("nft")?;
        Ok(Self { ns, node: bench_node(), loaded: Payloads::default(), changes: Payloads::default() })
    }
}

impl Subject for NftIncremental {
    fn name(&self) -> &'static str {
        NFT
    }

    /// One transaction, as kube-proxy's first sync.
    fn load(&mut self, cluster: &Cluster) -> Result<Duration> {
        let payload = nftables::full_ruleset(cluster, &self.node);
        self.loaded.record(&payload, nftables::rule_count(&payload));
        nftables::apply(self.ns.name(), &payload)
    }

    fn apply(&mut self, old: &Cluster, new: &Cluster, changed: usize) -> Result<Duration> {
        let payload = nft_change(old, new, changed, &self.node);
        self.changes.record(&payload, nftables::rule_count(&payload));
        nftables::apply(self.ns.name(), &payload)
    }

    fn verify(&self, cluster: &Cluster, changed: usize) -> Result<()> {
        let s = &cluster.services[changed];
        for e in &s.endpoints {
            let chain = nftables::endpoint_chain(s, e);
            let out = netns::exec_in(self.ns.name(), "nft", &["list", "chain", "ip", "kube-proxy", &chain])?;
            let rules = String::from_utf8_lossy(&out.stdout);
            let dnat = format!("dnat to {}:{}", e.ip, s.target_port);
            ensure!(rules.contains(&dnat), "{chain} in {} has no `{dnat}`: {rules}", self.ns.name());
        }
        Ok(())
    }

    fn load_extras(&self) -> BTreeMap<String, f64> {
        self.loaded.extras()
    }

    fn change_extras(&self) -> BTreeMap<String, f64> {
        self.changes.extras()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::changes::Change;

    #[test]
    fn an_nft_change_from_one_service_is_the_whole_clusters_diff() {
        let old = Cluster::background(50);
        for change in Change::plan(50, 4) {
            let mut new = old.clone();
            change.apply_to(&mut new);
            let whole = nftables::incremental(&old, &new, &bench_node());
            assert_eq!(nft_change(&old, &new, change.service, &bench_node()), whole);
            assert!(whole.contains(&change.ip.to_string()), "{whole}");
        }
    }
}
