//! kube-proxy's nftables mode: the `nft -f` transactions it writes.
//!
//! The layout is kube-proxy's (pkg/proxy/nftables): table `ip kube-proxy`;
//! base chains `nat-prerouting`/`nat-output` jump to `services`, which
//! looks the packet up in the verdict map `service-ips`
//! (`daddr . proto . dport → goto service-… / external-…`) and, for local
//! destinations, in `service-nodeports` (`proto . dport`). A service chain
//! marks off-cluster sources for masquerade and picks an endpoint chain with
//! `numgen random mod n vmap { 0 : goto endpoint-…, … }`; the endpoint
//! chain DNATs. `masquerading` in `nat-postrouting` masquerades marked
//! packets; the `filter-*` chains check `no-endpoint-*` maps (reject) and
//! unallocated cluster IPs, as kube-proxy's do. Chain names are
//! kube-proxy's: `service-HASH-ns/name/proto/pPORT`,
//! `endpoint-HASH-ns/name/proto/pPORT__IP/PORT`.
//!
//! [`full_ruleset`] is the first sync; [`incremental`] what a later sync
//! writes after a change: the changed services' chains (flushed and
//! rewritten), new and deleted endpoint chains, and the map elements that
//! differ.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Result;

use super::{chain_hash, run_with_stdin};
use crate::cluster::{Cluster, Endpoint, Node, Service};

const TABLE: &str = "ip kube-proxy";
/// kube-proxy's default service CIDR for the "unallocated cluster IP" drop.
const SERVICE_CIDR: &str = "10.96.0.0/12";

fn port_name(s: &Service) -> String {
    format!("{}/{}/{}/p{}", s.namespace, s.name, s.protocol.lower(), s.port)
}

/// `service-HASH-ns/name/tcp/p80`.
pub fn service_chain(s: &Service) -> String {
    let name = port_name(s);
    format!("service-{}-{name}", &chain_hash(&[&name])[..8])
}

/// `external-HASH-ns/name/tcp/p80`.
pub fn external_chain(s: &Service) -> String {
    let name = port_name(s);
    format!("external-{}-{name}", &chain_hash(&[&name])[..8])
}

/// `endpoint-HASH-ns/name/tcp/p80__10.244.1.10/80`.
pub fn endpoint_chain(s: &Service, e: &Endpoint) -> String {
    let name = format!("{}__{}/{}", port_name(s), e.ip, s.target_port);
    format!("endpoint-{}-{name}", &chain_hash(&[&name])[..8])
}

/// The first sync: the table created from nothing (an old one deleted).
pub fn full_ruleset(cluster: &Cluster, node: &Node) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "add table {TABLE}");
    let _ = writeln!(out, "delete table {TABLE}");
    let _ = writeln!(out, "add table {TABLE} {{ comment \"rules for kube-proxy\" ; }}");
    base_chains(&mut out);
    for s in &cluster.services {
        service_chains(&mut out, s, node);
    }
    for element in elements(cluster) {
        let _ = writeln!(out, "add element {TABLE} {element}");
    }
    out
}

/// A later sync after `before` became `after`: changed services' chains
/// flushed and rewritten, endpoint chains of removed endpoints deleted
/// (after nothing refers to them), map elements added and deleted.
pub fn incremental(before: &Cluster, after: &Cluster, node: &Node) -> String {
    let mut out = String::new();
    let old_elements = elements(before);
    let new_elements = elements(after);
    for e in old_elements.difference(&new_elements) {
        let _ = writeln!(out, "delete element {TABLE} {}", without_verdict(e));
    }
    let by_id = |c: &'_ Cluster| -> HashMap<String, usize> {
        c.services.iter().enumerate().map(|(i, s)| (s.port_id(), i)).collect()
    };
    let (old_ids, new_ids) = (by_id(before), by_id(after));
    let mut stale: Vec<String> = Vec::new();
    for s in &after.services {
        let old = old_ids.get(&s.port_id()).map(|&i| &before.services[i]);
        if old == Some(s) {
            continue;
        }
        service_chains(&mut out, s, node);
        if let Some(old) = old {
            stale.extend(old.endpoints.iter().filter(|e| !s.endpoints.contains(e)).map(|e| endpoint_chain(old, e)));
        }
    }
    for old in &before.services {
        if !old.endpoints.is_empty() && !new_ids.contains_key(&old.port_id()) {
            stale.push(service_chain(old));
            if has_external(old) {
                stale.push(external_chain(old));
            }
            stale.extend(old.endpoints.iter().map(|e| endpoint_chain(old, e)));
        }
    }
    for e in new_elements.difference(&old_elements) {
        let _ = writeln!(out, "add element {TABLE} {e}");
    }
    // Flushed first, deleted after: stale chains may jump to each other.
    for chain in &stale {
        let _ = writeln!(out, "flush chain {TABLE} {chain}");
    }
    for chain in &stale {
        let _ = writeln!(out, "delete chain {TABLE} {chain}");
    }
    out
}

fn base_chains(out: &mut String) {
    let maps = [
        (
            "service-ips",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "ClusterIP, ExternalIP and LoadBalancer IP traffic",
        ),
        ("service-nodeports", "inet_proto . inet_service : verdict", "NodePort traffic"),
        (
            "no-endpoint-services",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "vmap to drop or reject packets to services with no endpoints",
        ),
        (
            "no-endpoint-nodeports",
            "inet_proto . inet_service : verdict",
            "vmap to drop or reject packets to service nodeports with no endpoints",
        ),
        (
            "firewall-ips",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "destinations that are subject to LoadBalancerSourceRanges",
        ),
    ];
    for (name, ty, comment) in maps {
        let _ = writeln!(out, "add map {TABLE} {name} {{ type {ty} ; comment \"{comment}\" ; }}");
    }
    let _ = writeln!(out, "add set {TABLE} cluster-ips {{ type ipv4_addr ; comment \"Active ClusterIPs\" ; }}");
    let hooks = [
        ("filter-prerouting", "filter", "prerouting", -110, "ct state new jump firewall-check"),
        ("filter-input", "filter", "input", -110, "ct state new jump nodeport-endpoints-check"),
        ("filter-forward", "filter", "forward", -110, "ct state new jump service-endpoints-check"),
        ("filter-output", "filter", "output", -110, "ct state new jump service-endpoints-check"),
        ("filter-output-post-dnat", "filter", "output", -90, "ct state new jump cluster-ips-check"),
        ("nat-prerouting", "nat", "prerouting", -100, "jump services"),
        ("nat-output", "nat", "output", -100, "jump services"),
        ("nat-postrouting", "nat", "postrouting", 100, "jump masquerading"),
    ];
    for (name, ty, hook, priority, _) in hooks {
        let _ = writeln!(out, "add chain {TABLE} {name} {{ type {ty} hook {hook} priority {priority} ; }}");
    }
    let regular = [
        "mark-for-masquerade",
        "masquerading",
        "services",
        "service-endpoints-check",
        "nodeport-endpoints-check",
        "cluster-ips-check",
        "firewall-check",
        "reject-chain",
    ];
    for name in regular {
        let _ = writeln!(out, "add chain {TABLE} {name}");
    }
    for (name, _, _, _, rule) in hooks {
        let _ = writeln!(out, "add rule {TABLE} {name} {rule}");
    }
    let _ = writeln!(out, "add rule {TABLE} filter-input ct state new jump service-endpoints-check");
    let _ = writeln!(out, "add rule {TABLE} filter-forward ct state new jump cluster-ips-check");
    let rules = [
        ("mark-for-masquerade", "mark set mark or 0x4000".to_string()),
        ("masquerading", "mark and 0x4000 == 0 return".to_string()),
        ("masquerading", "mark set mark xor 0x4000".to_string()),
        ("masquerading", "masquerade fully-random".to_string()),
        ("services", "ip daddr . meta l4proto . th dport vmap @service-ips".to_string()),
        (
            "services",
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports".to_string(),
        ),
        ("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services".to_string()),
        (
            "nodeport-endpoints-check",
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports"
                .to_string(),
        ),
        (
            "cluster-ips-check",
            "ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"".to_string(),
        ),
        (
            "cluster-ips-check",
            format!("ip daddr {{ {SERVICE_CIDR} }} drop comment \"Drop traffic to unallocated ClusterIPs\""),
        ),
        ("firewall-check", "ip daddr . meta l4proto . th dport vmap @firewall-ips".to_string()),
        ("reject-chain", "reject".to_string()),
    ];
    for (chain, rule) in rules {
        let _ = writeln!(out, "add rule {TABLE} {chain} {rule}");
    }
}

/// A service's chains, each added and flushed before its rules are
/// written (so the same text creates or rewrites them).
fn service_chains(out: &mut String, s: &Service, node: &Node) {
    if s.endpoints.is_empty() {
        return;
    }
    let p = s.protocol.lower();
    let svc = service_chain(s);
    let mut chain = |name: &str| {
        let _ = writeln!(out, "add chain {TABLE} {name}");
        let _ = writeln!(out, "flush chain {TABLE} {name}");
    };
    chain(&svc);
    if has_external(s) {
        chain(&external_chain(s));
    }
    for e in &s.endpoints {
        chain(&endpoint_chain(s, e));
    }
    let _ = writeln!(
        out,
        "add rule {TABLE} {svc} ip daddr {} {p} dport {} ip saddr != {} jump mark-for-masquerade",
        s.cluster_ip, s.port, node.cluster_cidr
    );
    let vmap: Vec<String> =
        s.endpoints.iter().enumerate().map(|(i, e)| format!("{i} : goto {}", endpoint_chain(s, e))).collect();
    let _ =
        writeln!(out, "add rule {TABLE} {svc} numgen random mod {} vmap {{ {} }}", s.endpoints.len(), vmap.join(" , "));
    if has_external(s) {
        let ext = external_chain(s);
        let _ = writeln!(out, "add rule {TABLE} {ext} jump mark-for-masquerade");
        let _ = writeln!(out, "add rule {TABLE} {ext} goto {svc}");
    }
    for e in &s.endpoints {
        let sep = endpoint_chain(s, e);
        let _ = writeln!(out, "add rule {TABLE} {sep} ip saddr {} jump mark-for-masquerade", e.ip);
        let _ = writeln!(out, "add rule {TABLE} {sep} meta l4proto {p} dnat to {}:{}", e.ip, s.target_port);
    }
}

fn has_external(s: &Service) -> bool {
    !s.external_ips.is_empty() || s.node_port.is_some()
}

/// Every map and set element of the cluster, as `MAP { KEY : VERDICT }`.
fn elements(cluster: &Cluster) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in &cluster.services {
        let p = s.protocol.lower();
        out.insert(format!("cluster-ips {{ {} }}", s.cluster_ip));
        if s.endpoints.is_empty() {
            out.insert(format!("no-endpoint-services {{ {} . {p} . {} : goto reject-chain }}", s.cluster_ip, s.port));
            continue;
        }
        out.insert(format!("service-ips {{ {} . {p} . {} : goto {} }}", s.cluster_ip, s.port, service_chain(s)));
        for ip in &s.external_ips {
            out.insert(format!("service-ips {{ {ip} . {p} . {} : goto {} }}", s.port, external_chain(s)));
        }
        if let Some(np) = s.node_port {
            out.insert(format!("service-nodeports {{ {p} . {np} : goto {} }}", external_chain(s)));
        }
    }
    out
}

/// `MAP { KEY : VERDICT }` → `MAP { KEY }`, as `delete element` wants it.
fn without_verdict(element: &str) -> String {
    match element.split_once(" : ") {
        Some((head, _)) => format!("{head} }}"),
        None => element.to_string(),
    }
}

/// Runs `nft -f -` inside namespace `ns` with `script`; returns how long
/// it took (process start to exit).
pub fn apply(ns: &str, script: &str) -> Result<Duration> {
    run_with_stdin(ns, "nft", &["-f", "-"], script)
}

/// Deletes kube-proxy's table in `ns` (if there is one).
pub fn flush(ns: &str) -> Result<()> {
    run_with_stdin(ns, "nft", &["-f", "-"], &format!("add table {TABLE}\ndelete table {TABLE}\n")).map(|_| ())
}

/// Number of rules in an `nft -f` script.
pub fn rule_count(script: &str) -> usize {
    script.lines().filter(|l| l.starts_with("add rule ")).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_proxy::tests::{node, three_pod_cluster};

    #[test]
    fn a_nodeport_service_gets_kube_proxys_chains_and_maps() {
        let cluster = three_pod_cluster();
        let text = full_ruleset(&cluster, &node());
        let s = &cluster.services[1];
        let svc = service_chain(s);
        assert!(svc.starts_with("service-") && svc.ends_with("-default/my-service-nodeport/tcp/p80"), "{svc}");
        assert!(
            text.contains(&format!(
                "add element ip kube-proxy service-nodeports {{ tcp . 30007 : goto {} }}",
                external_chain(s)
            )),
            "{text}"
        );
        assert!(text.contains(&format!("add rule ip kube-proxy {svc} numgen random mod 3 vmap {{ 0 : goto endpoint-")));
        assert!(text.contains("meta l4proto tcp dnat to 10.244.2.10:80"));
        assert!(text.contains("add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }"));
    }

    #[test]
    fn an_incremental_sync_touches_only_the_changed_service() {
        let before = three_pod_cluster();
        let mut after = before.clone();
        let gone = after.services[1].endpoints.pop().unwrap();
        let text = incremental(&before, &after, &node());
        assert!(!text.contains(&service_chain(&before.services[0])), "{text}");
        assert!(text.contains(&format!("flush chain ip kube-proxy {}", service_chain(&after.services[1]))));
        assert!(text.contains("numgen random mod 2 vmap"));
        assert!(text.contains(&format!("delete chain ip kube-proxy {}", endpoint_chain(&before.services[1], &gone))));
        assert!(!text.contains("add element"), "no map element changed: {text}");
    }

    #[test]
    fn removing_a_service_deletes_its_elements_without_verdicts() {
        let before = three_pod_cluster();
        let mut after = before.clone();
        after.services.remove(0);
        let text = incremental(&before, &after, &node());
        assert!(text.contains("delete element ip kube-proxy service-ips { 10.96.0.1 . tcp . 80 }"), "{text}");
        assert!(text.contains("delete element ip kube-proxy cluster-ips { 10.96.0.1 }"), "{text}");
    }
}
