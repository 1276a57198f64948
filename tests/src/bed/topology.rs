//! Creating the bed's namespaces, links, addresses and routes with `ip`.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};

use super::{Node, Pod, PodSpec, TestBed, ns_name};
use crate::netns::{exec_in, ip_in, sysctl};
use crate::{CLIENT_IP, EXTERNAL_NET, EXTERNAL_NET_PREFIX, INGRESS_IP, LOADBALANCER_IP, NODE1_IP, NODE2_IP};

const LAN_PREFIX: u8 = 24;
const POD_PREFIX: u8 = 24;
const CLIENT_LAN_PORT: &str = "c";

/// The bed's nodes; each node's pods go in `cgroup_dir/nodeN`.
pub(super) fn nodes(prefix: &str, cgroup_dir: &std::path::Path, pin_root: &std::path::Path) -> Vec<Node> {
    [(1u8, NODE1_IP), (2u8, NODE2_IP)]
        .into_iter()
        .map(|(i, ip)| Node {
            name: format!("node{i}"),
            ns: ns_name(prefix, &format!("node{i}")),
            ip,
            cni_ip: Ipv4Addr::new(10, 244, i, 1),
            pod_cidr: Ipv4Addr::new(10, 244, i, 0),
            lan_port: format!("n{i}"),
            cgroup: cgroup_dir.join(format!("node{i}")),
            pin_dir: pin_root.join(format!("node{i}")),
        })
        .collect()
}

pub(super) fn pods(prefix: &str, nodes: &[Node], specs: &[PodSpec]) -> Result<Vec<Pod>> {
    let mut names = HashSet::new();
    let mut ips = HashSet::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let node = nodes
                .iter()
                .find(|n| n.name == spec.node)
                .with_context(|| format!("pod {}: unknown node {:?}", spec.name, spec.node))?;
            let [a, b, c, host] = spec.ip.octets();
            let [na, nb, nc, _] = node.pod_cidr.octets();
            if (a, b, c) != (na, nb, nc) || host <= 1 || host == 255 {
                bail!(
                    "pod {}: IP {} is not a pod address of {} ({}/{POD_PREFIX}, .2-.254)",
                    spec.name,
                    spec.ip,
                    node.name,
                    node.pod_cidr
                );
            }
            if !names.insert(spec.name.clone()) || !ips.insert(spec.ip) {
                bail!("pod {}: duplicate name or IP {}", spec.name, spec.ip);
            }
            Ok(Pod {
                name: spec.name.clone(),
                ns: ns_name(prefix, &format!("pod-{}", spec.name)),
                ip: spec.ip,
                node: node.name.clone(),
                host_veth: format!("vethp{i}"),
            })
        })
        .collect()
}

/// Builds everything; `bed` records each namespace as soon as it exists so
/// that a failure half-way still cleans up.
pub(super) fn create(bed: &TestBed, rp_filter: u8, wire_checksums: bool, load_balancer_routes: bool) -> Result<()> {
    for ns in bed.namespaces() {
        bed.resources.add_namespace(&ns)?;
        ip_in(&ns, &["link", "set", "lo", "up"])?;
    }
    for node in &bed.nodes {
        node_sysctls(&node.ns, rp_filter)?;
    }

    // The LAN: one L2 segment, a Linux bridge (STP off: ports forward at once).
    let lan = bed.lan.as_str();
    ip_in(lan, &["link", "add", "br0", "type", "bridge"])?;
    ip_in(lan, &["link", "set", "br0", "up"])?;
    attach_to_lan(lan, CLIENT_LAN_PORT, &bed.client, CLIENT_IP, wire_checksums)?;
    // The LAN ports facing the nodes are left as a switch, or Docker's
    // bridge in a kind cluster, leaves them: no XDP program and no GRO
    // (`attach_lan_xdp` adds the program for tests of `--xdp-transmit xdp`).
    for node in &bed.nodes {
        attach_to_lan(lan, &node.lan_port, &node.ns, node.ip, wire_checksums)?;
    }

    // Each node: a CNI-like bridge, pods on it, host-gw routes to the other node's pods.
    for node in &bed.nodes {
        let cni = format!("{}/{POD_PREFIX}", node.cni_ip);
        ip_in(&node.ns, &["link", "add", "cni0", "type", "bridge"])?;
        ip_in(&node.ns, &["addr", "add", &cni, "dev", "cni0"])?;
        ip_in(&node.ns, &["link", "set", "cni0", "up"])?;
        for other in bed.nodes.iter().filter(|o| o.name != node.name) {
            let cidr = format!("{}/{POD_PREFIX}", other.pod_cidr);
            let via = other.ip.to_string();
            ip_in(&node.ns, &["route", "add", &cidr, "via", &via, "dev", "eth0"])?;
        }
    }
    for pod in &bed.pods {
        let node = bed.node(&pod.node)?;
        create_pod(node, pod).with_context(|| format!("creating pod {}", pod.name))?;
    }

    // The client reaches the external IPs through node1, as if a BGP
    // speaker had announced them; the LoadBalancer addresses too, unless
    // the nodes are to answer ARP for them.
    let node1 = NODE1_IP.to_string();
    let mut routed = vec![format!("{EXTERNAL_NET}/{EXTERNAL_NET_PREFIX}")];
    if load_balancer_routes {
        routed.extend([format!("{LOADBALANCER_IP}/32"), format!("{INGRESS_IP}/32")]);
    }
    for dst in &routed {
        ip_in(&bed.client, &["route", "add", dst, "via", &node1, "dev", "eth0"])?;
    }
    Ok(())
}

fn node_sysctls(ns: &str, rp_filter: u8) -> Result<()> {
    let rp = rp_filter.to_string();
    sysctl(ns, "net.ipv4.ip_forward", "1")?;
    // Set before the node's interfaces exist, so they inherit `default`.
    for scope in ["all", "default"] {
        sysctl(ns, &format!("net.ipv4.conf.{scope}.rp_filter"), &rp)?;
        // A node forwarding a packet back out the interface it came in on
        // (NodePort to a pod on the other node) would otherwise send the
        // client ICMP redirects.
        sysctl(ns, &format!("net.ipv4.conf.{scope}.send_redirects"), "0")?;
    }
    Ok(())
}

/// A veth from the LAN bridge to `eth0` in `peer_ns`, addressed `ip/24`.
fn attach_to_lan(lan: &str, port: &str, peer_ns: &str, ip: Ipv4Addr, wire_checksums: bool) -> Result<()> {
    let addr = format!("{ip}/{LAN_PREFIX}");
    ip_in(lan, &["link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", peer_ns])?;
    ip_in(lan, &["link", "set", port, "master", "br0"])?;
    if wire_checksums {
        checksum_offload_off(lan, port)?;
        checksum_offload_off(peer_ns, "eth0")?;
    }
    ip_in(peer_ns, &["addr", "add", &addr, "dev", "eth0"])?;
    ip_in(lan, &["link", "set", port, "up"])?;
    ip_in(peer_ns, &["link", "set", "eth0", "up"])?;
    Ok(())
}

fn create_pod(node: &Node, pod: &Pod) -> Result<()> {
    let addr = format!("{}/{POD_PREFIX}", pod.ip);
    let gw = node.cni_ip.to_string();
    ip_in(&node.ns, &["link", "add", &pod.host_veth, "type", "veth", "peer", "name", "eth0", "netns", &pod.ns])?;
    ip_in(&node.ns, &["link", "set", &pod.host_veth, "master", "cni0"])?;
    checksum_offload_off(&node.ns, &pod.host_veth)?;
    checksum_offload_off(&pod.ns, "eth0")?;
    ip_in(&pod.ns, &["addr", "add", &addr, "dev", "eth0"])?;
    ip_in(&node.ns, &["link", "set", &pod.host_veth, "up"])?;
    ip_in(&pod.ns, &["link", "set", "eth0", "up"])?;
    ip_in(&pod.ns, &["route", "add", "default", "via", &gw, "dev", "eth0"])?;
    Ok(())
}

/// veth offloads TX checksums by default: locally generated packets cross it
/// as CHECKSUM_PARTIAL, with only a pseudo-header sum in the L4 checksum
/// field, and whoever finally sends them on a wire computes the rest. The
/// pods' veths (the CNI's) have it off: every packet a pod receives carries
/// a complete checksum that its stack verifies, so a wrong checksum update
/// anywhere on the way is caught as a failed connection. On the LAN it is
/// off only with `wire_checksums`.
fn checksum_offload_off(ns: &str, dev: &str) -> Result<()> {
    ethtool(ns, dev, &["tx", "off"])
}

fn ethtool(ns: &str, dev: &str, features: &[&str]) -> Result<()> {
    let mut args = vec!["-K", dev];
    args.extend_from_slice(features);
    exec_in(ns, "ethtool", &args)?;
    Ok(())
}

/// Where `cargo xtask build-ebpf` (or lb-userspace's build script) leaves the
/// test bed's pass-everything XDP program.
fn testbed_xdp_object() -> std::path::PathBuf {
    crate::repo_root().join("lb-ebpf/target/bpfel-unknown-none/release/testbed-xdp-pass")
}

/// Attaches an `XDP_PASS` program to the LAN ports that face the nodes. A
/// veth takes frames its peer sent with `XDP_TX` or a redirect only if it
/// runs NAPI (an XDP program, or GRO turned on), and flushes them promptly
/// only if it runs an XDP program; with GRO alone they wait in its queue
/// until other traffic arrives (seconds). Returns the loaded object:
/// dropping it detaches.
pub(super) fn attach_lan_xdp(bed: &TestBed) -> Result<aya::Ebpf> {
    use aya::programs::{Xdp, XdpMode};
    let object = testbed_xdp_object();
    let ports: Vec<String> = bed.nodes.iter().map(|n| n.lan_port.clone()).collect();
    crate::netns::in_netns(&bed.lan, move || -> Result<aya::Ebpf> {
        let mut ebpf = aya::Ebpf::load_file(&object)
            .with_context(|| format!("loading {} (run `cargo xtask build-ebpf`)", object.display()))?;
        let program: &mut Xdp = ebpf.program_mut("testbed_pass").context("no program testbed_pass")?.try_into()?;
        program.load()?;
        for port in &ports {
            program.attach(port, XdpMode::Driver).with_context(|| format!("attaching XDP_PASS to {port}"))?;
        }
        Ok(ebpf)
    })?
}
