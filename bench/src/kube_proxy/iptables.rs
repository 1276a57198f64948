//! kube-proxy's iptables mode: the `iptables-restore` input it writes.
//!
//! The layout is kube-proxy's (pkg/proxy/iptables): in `nat`,
//! `PREROUTING`/`OUTPUT` → `KUBE-SERVICES`, one rule per cluster IP and
//! external IP jumping to the service chain `KUBE-SVC-*` (or `KUBE-EXT-*`
//! for external destinations, which marks the packet for masquerade first),
//! and as its last rule the jump to `KUBE-NODEPORTS` for local
//! destinations. A service chain picks an endpoint chain `KUBE-SEP-*` with
//! `statistic --mode random --probability 1/n, 1/(n-1), …`; the endpoint
//! chain DNATs. `KUBE-MARK-MASQ` sets mark 0x4000 and `KUBE-POSTROUTING`
//! masquerades marked packets. `filter` holds `KUBE-FORWARD` (accepting
//! marked and established traffic) and REJECT rules for services without
//! endpoints. Chain names hash the service port name as kube-proxy does
//! (16 base32 characters of a hash of `ns/name:port` + protocol).
//!
//! [`full_restore`] is a full sync, [`partial_restore`] what kube-proxy's
//! partial sync (`MinimizeIPTablesRestore`, the default since 1.27) writes
//! after some services changed: the top-level chains in full, plus only the
//! changed services' chains, for `iptables-restore --noflush`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Result;

use super::{chain_hash, run_with_stdin};
use crate::cluster::{Cluster, Endpoint, Node, Service};

/// kube-proxy's masquerade mark.
const MASQ_MARK: &str = "0x4000/0x4000";

/// Built-in chains of `nat` and the jumps kube-proxy adds to them.
const NAT_HOOKS: &[(&str, &str)] = &[
    ("PREROUTING", "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    ("OUTPUT", "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    ("POSTROUTING", "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"),
];

/// Built-in chains of `filter` and the jumps kube-proxy adds to them.
const FILTER_HOOKS: &[(&str, &str)] = &[
    (
        "INPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    ),
    ("INPUT", "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS"),
    (
        "INPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    ),
    ("FORWARD", "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD"),
    ("FORWARD", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    (
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (
        "OUTPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    ),
    ("OUTPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
];

/// `KUBE-SVC-…` of a service port.
pub fn service_chain(s: &Service) -> String {
    format!("KUBE-SVC-{}", chain_hash(&[&s.port_id(), s.protocol.lower()]))
}

/// `KUBE-EXT-…` of a service port.
pub fn external_chain(s: &Service) -> String {
    format!("KUBE-EXT-{}", chain_hash(&[&s.port_id(), s.protocol.lower()]))
}

/// `KUBE-SEP-…` of one endpoint of a service port.
pub fn endpoint_chain(s: &Service, e: &Endpoint) -> String {
    let endpoint = format!("{}:{}", e.ip, s.target_port);
    format!("KUBE-SEP-{}", chain_hash(&[&s.port_id(), s.protocol.lower(), &endpoint]))
}

/// A full sync: both tables replaced (plain `iptables-restore`, which
/// flushes the tables it names), built-in chains' jumps included.
pub fn full_restore(cluster: &Cluster, node: &Node) -> String {
    let mut out = String::new();
    out.push_str("*filter\n");
    for builtin in ["INPUT", "FORWARD", "OUTPUT"] {
        let _ = writeln!(out, ":{builtin} ACCEPT [0:0]");
    }
    filter_chains(&mut out, cluster);
    for (chain, rule) in FILTER_HOOKS {
        let _ = writeln!(out, "-A {chain} {rule}");
    }
    out.push_str("COMMIT\n*nat\n");
    for builtin in ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"] {
        let _ = writeln!(out, ":{builtin} ACCEPT [0:0]");
    }
    declare_nat_top_level(&mut out);
    for s in &cluster.services {
        declare_service_chains(&mut out, s);
    }
    nat_top_level(&mut out, cluster);
    for s in &cluster.services {
        service_rules(&mut out, s, node);
    }
    for (chain, rule) in NAT_HOOKS {
        let _ = writeln!(out, "-A {chain} {rule}");
    }
    out.push_str("COMMIT\n");
    out
}

/// What a partial sync writes after the services at `changed` (indices
/// into `cluster.services`) changed: the top-level chains in full, the
/// changed services' chains, and `-X` for endpoint chains that `before`
/// had and `cluster` no longer has. For `iptables-restore --noflush`.
pub fn partial_restore(before: &Cluster, cluster: &Cluster, node: &Node, changed: &[usize]) -> String {
    let mut out = String::new();
    out.push_str("*filter\n");
    filter_chains(&mut out, cluster);
    out.push_str("COMMIT\n*nat\n");
    declare_nat_top_level(&mut out);
    let changed: Vec<&Service> = changed.iter().filter_map(|&i| cluster.services.get(i)).collect();
    let mut stale: Vec<String> = Vec::new();
    for s in &changed {
        declare_service_chains(&mut out, s);
        if let Some(old) = before.services.iter().find(|o| o.port_id() == s.port_id()) {
            stale.extend(old.endpoints.iter().filter(|e| !s.endpoints.contains(e)).map(|e| endpoint_chain(old, e)));
        }
    }
    // Stale chains are declared (flushed) too, then deleted at the end.
    for chain in &stale {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    nat_top_level(&mut out, cluster);
    for s in changed {
        service_rules(&mut out, s, node);
    }
    for chain in &stale {
        let _ = writeln!(out, "-X {chain}");
    }
    out.push_str("COMMIT\n");
    out
}

fn filter_chains(out: &mut String, cluster: &Cluster) {
    for chain in ["KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL"] {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let _ = writeln!(out, "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP");
    let _ = writeln!(
        out,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK} -j ACCEPT"
    );
    let _ = writeln!(
        out,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
    // Services without endpoints are rejected.
    for s in cluster.services.iter().filter(|s| s.endpoints.is_empty()) {
        let (id, p) = (s.port_id(), s.protocol.lower());
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -m comment --comment \"{id} has no endpoints\" -m {p} -p {p} -d {}/32 --dport {} -j REJECT",
            s.cluster_ip, s.port
        );
        for ip in &s.external_ips {
            let _ = writeln!(
                out,
                "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"{id} has no endpoints\" -m {p} -p {p} -d {ip}/32 --dport {} -j REJECT",
                s.port
            );
        }
        if let Some(np) = s.node_port {
            let _ = writeln!(
                out,
                "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"{id} has no endpoints\" -m addrtype --dst-type LOCAL -m {p} -p {p} --dport {np} -j REJECT"
            );
        }
    }
}

/// Declares (which flushes them under `--noflush`) `nat`'s top-level
/// chains. iptables-restore wants every chain declared before a rule
/// jumps to it, so kube-proxy writes all declarations first.
fn declare_nat_top_level(out: &mut String) {
    for chain in ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"] {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
}

/// The rules of `KUBE-SERVICES`, `KUBE-NODEPORTS`, `KUBE-POSTROUTING`,
/// `KUBE-MARK-MASQ`, written in full, as every sync does.
fn nat_top_level(out: &mut String, cluster: &Cluster) {
    let _ = writeln!(out, "-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK} -j RETURN");
    let _ = writeln!(out, "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000");
    let _ = writeln!(
        out,
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
    );
    let _ = writeln!(out, "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000");
    for s in cluster.services.iter().filter(|s| !s.endpoints.is_empty()) {
        let (id, p) = (s.port_id(), s.protocol.lower());
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -m comment --comment \"{id} cluster IP\" -m {p} -p {p} -d {}/32 --dport {} -j {}",
            s.cluster_ip,
            s.port,
            service_chain(s)
        );
        for ip in &s.external_ips {
            let _ = writeln!(
                out,
                "-A KUBE-SERVICES -m comment --comment \"{id} external IP\" -m {p} -p {p} -d {ip}/32 --dport {} -j {}",
                s.port,
                external_chain(s)
            );
        }
        if let Some(np) = s.node_port {
            let _ = writeln!(
                out,
                "-A KUBE-NODEPORTS -m comment --comment {id} -m {p} -p {p} --dport {np} -j {}",
                external_chain(s)
            );
        }
    }
    let _ = writeln!(
        out,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    );
}

/// Declares a service port's chains: `KUBE-SVC`, `KUBE-EXT` when it has
/// external destinations, one `KUBE-SEP` per endpoint.
fn declare_service_chains(out: &mut String, s: &Service) {
    if s.endpoints.is_empty() {
        return;
    }
    let _ = writeln!(out, ":{} - [0:0]", service_chain(s));
    if has_external(s) {
        let _ = writeln!(out, ":{} - [0:0]", external_chain(s));
    }
    for e in &s.endpoints {
        let _ = writeln!(out, ":{} - [0:0]", endpoint_chain(s, e));
    }
}

fn has_external(s: &Service) -> bool {
    !s.external_ips.is_empty() || s.node_port.is_some()
}

/// A service port's rules: `KUBE-SVC` masquerades off-cluster sources,
/// then picks an endpoint; `KUBE-EXT` marks and goes to `KUBE-SVC`; each
/// `KUBE-SEP` DNATs.
fn service_rules(out: &mut String, s: &Service, node: &Node) {
    if s.endpoints.is_empty() {
        return;
    }
    let (id, p) = (s.port_id(), s.protocol.lower());
    let svc = service_chain(s);
    let has_external = has_external(s);
    let _ = writeln!(
        out,
        "-A {svc} -m comment --comment \"{id} cluster IP\" -m {p} -p {p} -d {}/32 --dport {} ! -s {} -j KUBE-MARK-MASQ",
        s.cluster_ip, s.port, node.cluster_cidr
    );
    let n = s.endpoints.len();
    for (i, e) in s.endpoints.iter().enumerate() {
        let sep = endpoint_chain(s, e);
        let comment = format!("-m comment --comment \"{id} -> {}:{}\"", e.ip, s.target_port);
        if i + 1 < n {
            let probability = 1.0 / (n - i) as f64;
            let _ =
                writeln!(out, "-A {svc} {comment} -m statistic --mode random --probability {probability:.10} -j {sep}");
        } else {
            let _ = writeln!(out, "-A {svc} {comment} -j {sep}");
        }
    }
    if has_external {
        let ext = external_chain(s);
        let _ = writeln!(
            out,
            "-A {ext} -m comment --comment \"masquerade traffic for {id} external destinations\" -j KUBE-MARK-MASQ"
        );
        let _ = writeln!(out, "-A {ext} -j {svc}");
    }
    for e in &s.endpoints {
        let sep = endpoint_chain(s, e);
        let _ = writeln!(out, "-A {sep} -m comment --comment {id} -s {}/32 -j KUBE-MARK-MASQ", e.ip);
        let _ = writeln!(
            out,
            "-A {sep} -m comment --comment {id} -m {p} -p {p} -j DNAT --to-destination {}:{}",
            e.ip, s.target_port
        );
    }
}

/// Runs `iptables-restore -w [--noflush]` inside namespace `ns` with
/// `restore` as input; returns how long it took (process start to exit, as
/// kube-proxy pays it).
pub fn apply(ns: &str, restore: &str, noflush: bool) -> Result<Duration> {
    let mut args = vec!["-w"];
    if noflush {
        args.push("--noflush");
    }
    run_with_stdin(ns, "iptables-restore", &args, restore)
}

/// Empties `filter` and `nat` in `ns` (rules and kube-proxy's chains).
pub fn flush(ns: &str) -> Result<()> {
    let empty = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n\
                 *nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";
    run_with_stdin(ns, "iptables-restore", &["-w"], empty).map(|_| ())
}

/// Number of rules (`-A` lines) in an `iptables-restore` input.
pub fn rule_count(restore: &str) -> usize {
    restore.lines().filter(|l| l.starts_with("-A ")).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_proxy::tests::{node, three_pod_cluster};

    #[test]
    fn a_nodeport_service_gets_kube_proxys_chains() {
        let cluster = three_pod_cluster();
        let text = full_restore(&cluster, &node());
        let s = &cluster.services[1];
        let (svc, ext) = (service_chain(s), external_chain(s));
        assert!(svc.starts_with("KUBE-SVC-") && svc.len() == 25, "{svc}");
        // NodePort → KUBE-EXT → mark + KUBE-SVC → statistic → KUBE-SEP → DNAT.
        assert!(text.contains(&format!("-A KUBE-NODEPORTS -m comment --comment default/my-service-nodeport:http -m tcp -p tcp --dport 30007 -j {ext}")), "{text}");
        assert!(text.contains(&format!("-A {ext} -j {svc}")));
        assert!(text.contains("--probability 0.3333333333 -j KUBE-SEP-"));
        assert!(text.contains("--probability 0.5000000000 -j KUBE-SEP-"));
        assert!(text.contains("-j DNAT --to-destination 10.244.2.10:80"));
        // The nodeport jump is the last rule of KUBE-SERVICES.
        let last = text.lines().rfind(|l| l.starts_with("-A KUBE-SERVICES ")).unwrap();
        assert!(last.ends_with("-j KUBE-NODEPORTS"), "{last}");
        assert_eq!(text.matches("COMMIT").count(), 2);
    }

    #[test]
    fn a_partial_sync_writes_the_top_level_and_only_the_changed_service() {
        let before = three_pod_cluster();
        let mut after = before.clone();
        let gone = after.services[1].endpoints.pop().unwrap();
        let text = partial_restore(&before, &after, &node(), &[1]);
        let untouched = service_chain(&before.services[0]);
        assert!(text.contains(&format!("-j {untouched}")), "KUBE-SERVICES still jumps to it");
        assert!(!text.contains(&format!(":{untouched} ")), "but its chain is not rewritten");
        assert!(text.contains(&format!(":{} - [0:0]", service_chain(&after.services[1]))));
        assert!(text.contains(&format!("-X {}", endpoint_chain(&before.services[1], &gone))));
        assert!(!text.contains(":PREROUTING"), "built-in chains are left alone under --noflush");
    }

    #[test]
    fn services_without_endpoints_are_rejected() {
        let mut cluster = three_pod_cluster();
        cluster.services[0].endpoints.clear();
        let text = full_restore(&cluster, &node());
        assert!(text.contains("has no endpoints\" -m tcp -p tcp -d 10.96.0.1/32 --dport 80 -j REJECT"), "{text}");
        assert!(!text.contains(&service_chain(&cluster.services[0])));
    }
}
