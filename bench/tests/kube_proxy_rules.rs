//! The generated kube-proxy rule sets load into the real `iptables-restore`
//! and `nft`, in a network namespace of the test's own, and the partial and
//! incremental syncs apply on top of them with the effect kube-proxy's have.

use anyhow::{Context, Result};
use lb_bench::cluster::{Cluster, Endpoint, Node, Protocol, Service};
use lb_bench::kube_proxy::{Namespace, iptables, nftables};
use std::net::Ipv4Addr;

/// `program args` inside `ns`: its stdout.
fn output(ns: &Namespace, program: &str, args: &[&str]) -> Result<String> {
    let out = lb_testbed::netns::exec_in(ns.name(), program, args)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A namespace of the test's own (root needed: fail loudly, never skip).
fn namespace(tag: &str) -> Result<Namespace> {
    lb_testbed::require_root()?;
    Namespace::create(tag)
}

fn node() -> Node {
    Node { name: "node1".into(), ips: vec![Ipv4Addr::new(192, 168, 1, 11)], cluster_cidr: "10.244.0.0/16".into() }
}

fn cluster() -> Cluster {
    let ep = |ip: [u8; 4], node: &str| Endpoint { ip: Ipv4Addr::from(ip), node: node.into() };
    Cluster::background(200).with(Service {
        namespace: "default".into(),
        name: "my-service-nodeport".into(),
        port_name: "http".into(),
        protocol: Protocol::Tcp,
        cluster_ip: Ipv4Addr::new(10, 96, 100, 7),
        port: 80,
        target_port: 80,
        node_port: Some(30007),
        external_ips: vec![],
        endpoints: vec![ep([10, 244, 1, 10], "node1"), ep([10, 244, 1, 11], "node1"), ep([10, 244, 2, 10], "node2")],
    })
}

/// The cluster with the NodePort service's last endpoint removed.
fn changed(before: &Cluster) -> (Cluster, usize) {
    let mut after = before.clone();
    let i = after.position("default/my-service-nodeport:http").expect("measured service");
    after.services[i].endpoints.pop();
    (after, i)
}

#[test]
fn iptables_full_and_partial_syncs_load() -> Result<()> {
    let ns = namespace("ipt")?;
    let before = cluster();
    let full = iptables::full_restore(&before, &node());
    iptables::apply(ns.name(), &full, false).context("full restore")?;
    let saved = output(&ns, "iptables-save", &["-t", "nat"])?;
    let s = &before.services[200];
    assert!(saved.contains(&iptables::service_chain(s)), "{saved}");
    assert_eq!(saved.matches("-j DNAT").count(), 200 * 2 + 3);
    assert!(saved.contains("--probability 0.33333333"), "statistic match kept");

    let (after, i) = changed(&before);
    let partial = iptables::partial_restore(&before, &after, &node(), &[i]);
    iptables::apply(ns.name(), &partial, true).context("partial restore")?;
    let saved = output(&ns, "iptables-save", &["-t", "nat"])?;
    assert_eq!(saved.matches("-j DNAT").count(), 200 * 2 + 2, "one endpoint chain gone, the rest kept");
    assert!(!saved.contains("10.244.2.10:80"));
    assert!(saved.contains(&iptables::service_chain(&before.services[0])), "untouched services keep their chains");
    iptables::flush(ns.name())?;
    assert!(!output(&ns, "iptables-save", &["-t", "nat"])?.contains("KUBE-SVC-"));
    Ok(())
}

#[test]
fn nftables_full_and_incremental_syncs_load() -> Result<()> {
    let ns = namespace("nft")?;
    let before = cluster();
    nftables::apply(ns.name(), &nftables::full_ruleset(&before, &node())).context("full ruleset")?;
    let listed = output(&ns, "nft", &["list", "table", "ip", "kube-proxy"])?;
    assert_eq!(listed.matches("dnat to").count(), 200 * 2 + 3, "{listed}");
    assert!(listed.contains("numgen random mod 3 vmap"), "{listed}");
    assert!(listed.contains("tcp . 30007 : goto external-"), "{listed}");

    let (after, _) = changed(&before);
    nftables::apply(ns.name(), &nftables::incremental(&before, &after, &node())).context("incremental")?;
    let listed = output(&ns, "nft", &["list", "table", "ip", "kube-proxy"])?;
    assert_eq!(listed.matches("dnat to").count(), 200 * 2 + 2);
    assert!(listed.contains("numgen random mod 2 vmap"));
    assert!(!listed.contains("10.244.2.10:80"));

    let mut fewer = after.clone();
    fewer.services.remove(0);
    nftables::apply(ns.name(), &nftables::incremental(&after, &fewer, &node())).context("service removed")?;
    let listed = output(&ns, "nft", &["list", "table", "ip", "kube-proxy"])?;
    assert_eq!(listed.matches("dnat to").count(), 199 * 2 + 2);
    nftables::flush(ns.name())?;
    assert!(output(&ns, "nft", &["list", "tables"])?.is_empty());
    Ok(())
}
