//! The bed every subject is measured on: the client, node1 (the node under
//! test, where lb or kube-proxy's rules run), node2 (plain routing), four
//! pods (two per node) running the bench's own UDP sinks and TCP echo
//! servers, and the two measured NodePort Services whose endpoints are
//! those pods.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};

use anyhow::{Context, Result};
use lb_testbed::netns::{exec_in, ip_in, sysctl};
use lb_testbed::{CLIENT_IP, NODE1_IP, PodSpec, TestBed};

use super::tcp::EchoServers;
use super::udp::UdpSinks;
use crate::cluster::{self, Cluster, Endpoint, Protocol, Service};

/// The node whose forwarding is measured.
pub const NODE: &str = "node1";
/// The pods' TCP echo port (the TCP Service's targetPort).
pub const TCP_POD_PORT: u16 = 8080;
/// The pods' UDP sink port (the UDP Service's targetPort).
pub const UDP_POD_PORT: u16 = 5353;
/// NodePort of the measured TCP Service.
pub const TCP_NODE_PORT: u16 = 31080;
/// NodePort of the measured UDP Service.
pub const UDP_NODE_PORT: u16 = 31053;
/// Namespace of the measured Services.
const MEASURED_NAMESPACE: &str = "l4";
/// The pod network (kube-proxy's `--cluster-cidr`).
const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// The pods: two on node1 (reached through node1's own stack), two on
/// node2 (reached through node1 and back over the LAN).
pub fn pods() -> Vec<PodSpec> {
    vec![
        PodSpec::new("echo-a", "node1", Ipv4Addr::new(10, 244, 1, 10)),
        PodSpec::new("echo-b", "node1", Ipv4Addr::new(10, 244, 1, 11)),
        PodSpec::new("echo-c", "node2", Ipv4Addr::new(10, 244, 2, 10)),
        PodSpec::new("echo-d", "node2", Ipv4Addr::new(10, 244, 2, 11)),
    ]
}

/// A measured NodePort Service over every pod.
fn measured_service(name: &str, protocol: Protocol, cluster_ip: Ipv4Addr, target: u16, node_port: u16) -> Service {
    Service {
        namespace: MEASURED_NAMESPACE.into(),
        name: name.into(),
        port_name: protocol.lower().into(),
        protocol,
        cluster_ip,
        port: target,
        target_port: target,
        node_port: Some(node_port),
        external_ips: Vec::new(),
        endpoints: pods().into_iter().map(|p| Endpoint { ip: p.ip, node: p.node }).collect(),
    }
}

/// `background` idle Services plus the two measured ones.
pub fn cluster(background: usize) -> Cluster {
    Cluster::background(background)
        .with(measured_service("tcp-echo", Protocol::Tcp, Ipv4Addr::new(10, 111, 0, 10), TCP_POD_PORT, TCP_NODE_PORT))
        .with(measured_service("udp-sink", Protocol::Udp, Ipv4Addr::new(10, 111, 0, 11), UDP_POD_PORT, UDP_NODE_PORT))
}

/// node1 as kube-proxy sees it.
pub fn node() -> cluster::Node {
    cluster::Node { name: NODE.into(), ips: vec![NODE1_IP], cluster_cidr: CLUSTER_CIDR.into() }
}

/// Gives each node's uplink veth (and its LAN-side peer) one queue per
/// CPU, like a NIC with RSS. A veth runs an XDP program in the NAPI context
/// of the receive queue a frame was sent to (a 256-frame ring per queue);
/// with one queue, all of a node's XDP work runs on one CPU at a time,
/// while the kernel's own path spreads over every sending CPU. Frames pick
/// a queue by flow hash. Both ends get the same count, so the LAN side may
/// later run an XDP program (a veth with one refuses a peer more transmit
/// queues than it has receive queues); the LAN port is taken down and up so
/// its new queues are used.
pub(super) fn uplink_queues(bed: &TestBed, node: &lb_testbed::Node) -> Result<()> {
    let queues = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string();
    let lan = bed.lan_ns();
    exec_in(lan, "ethtool", &["-L", &node.lan_port, "rx", &queues, "tx", &queues])?;
    exec_in(&node.ns, "ethtool", &["-L", "eth0", "rx", &queues, "tx", &queues])?;
    ip_in(lan, &["link", "set", &node.lan_port, "down"])?;
    ip_in(lan, &["link", "set", &node.lan_port, "up"])?;
    Ok(())
}

/// The running bed with its pods' servers.
pub struct L4Bed {
    // Field order is drop order: the servers stop before the bed goes.
    pub sinks: UdpSinks,
    _servers: EchoServers,
    pub bed: TestBed,
    /// Next free block of client UDP source ports.
    next_port: AtomicU16,
}

/// Client UDP source ports used by the generators (each run takes a fresh
/// block, so no conntrack entry of an earlier run matches its flows).
const FIRST_SOURCE_PORT: u16 = 20_000;
const LAST_SOURCE_PORT: u16 = 60_000;

impl L4Bed {
    /// Builds the bed and starts the pods' servers; `acceptors` echo
    /// threads per pod (at least the client's concurrency).
    pub fn start(acceptors: usize) -> Result<Self> {
        let bed = TestBed::builder().pods(pods()).wire_checksums(true).build().context("building the l4 bed")?;
        let client = bed.client_ns().to_string();
        // The routed reference sends straight to the pods, through node1.
        ip_in(&client, &["route", "add", CLUSTER_CIDR, "via", &NODE1_IP.to_string(), "dev", "eth0"])?;
        for node in bed.nodes() {
            uplink_queues(&bed, node).with_context(|| format!("{}'s uplink queues", node.name))?;
        }
        // Short connections at thousands per second: reuse TIME_WAIT ports.
        sysctl(&client, "net.ipv4.tcp_tw_reuse", "1")?;
        sysctl(&client, "net.ipv4.ip_local_port_range", "1024 65000")?;
        let pod_ns: Vec<String> = bed.pods().iter().map(|p| p.ns.clone()).collect();
        let servers = EchoServers::start(&pod_ns, TCP_POD_PORT, acceptors)?;
        let sinks = UdpSinks::start(&pod_ns, UDP_POD_PORT)?;
        Ok(Self { sinks, _servers: servers, bed, next_port: AtomicU16::new(FIRST_SOURCE_PORT) })
    }

    pub fn client_ns(&self) -> &str {
        self.bed.client_ns()
    }

    pub fn node_ns(&self) -> Result<&str> {
        self.bed.node_ns(NODE)
    }

    /// `count` consecutive fresh client source ports: the first.
    pub fn source_ports(&self, count: usize) -> u16 {
        let count = count as u16;
        let mut first = self.next_port.fetch_add(count, Ordering::Relaxed);
        if first.saturating_add(count) > LAST_SOURCE_PORT {
            self.next_port.store(FIRST_SOURCE_PORT + count, Ordering::Relaxed);
            first = FIRST_SOURCE_PORT;
        }
        first
    }

    /// The measured UDP Service's NodePort on node1.
    pub fn udp_frontend(&self) -> SocketAddrV4 {
        SocketAddrV4::new(NODE1_IP, UDP_NODE_PORT)
    }

    /// The measured TCP Service's NodePort on node1.
    pub fn tcp_frontend(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(NODE1_IP, TCP_NODE_PORT))
    }

    /// The pods' UDP sinks, addressed directly (the routed reference).
    pub fn udp_pods(&self) -> Vec<SocketAddrV4> {
        self.bed.pods().iter().map(|p| SocketAddrV4::new(p.ip, UDP_POD_PORT)).collect()
    }

    /// The client's address.
    pub fn client_ip(&self) -> Ipv4Addr {
        CLIENT_IP
    }
}
