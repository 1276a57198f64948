//! The bed of the ClusterIP scenario: the l4 bed's four echo pods (two on
//! node1, two on node2) as the Service's endpoints, and one more pod on
//! node1, `client`, which is no endpoint of anything: the generator's
//! sockets live in its namespace, and lb-bench joins node1's cgroup (the
//! agent's `--cgroup-root`, where a DaemonSet's node would have its pods)
//! while it measures, so lb's socket programs see its connects.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use lb_testbed::netns::sysctl;
use lb_testbed::{PodSpec, TestBed};

use crate::cluster::{Cluster, Endpoint, Protocol, Service};
use crate::l4::bed::{NODE, TCP_POD_PORT, uplink_queues};
use crate::l4::tcp::EchoServers;

/// The generator's pod, on node1 (the node under test).
pub const CLIENT_POD: &str = "client";
const CLIENT_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 20);
/// The measured Service's cluster IP (inside kube-proxy's service CIDR
/// 10.96.0.0/12, apart from the background Services' 10.96.0.1…).
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 10);
/// Its port; the pods serve on [`TCP_POD_PORT`] (a targetPort that differs,
/// as `port: 80 → targetPort: 8080` does in most clusters).
pub const SERVICE_PORT: u16 = 80;

/// The Service's endpoints: the l4 bed's echo pods.
pub fn backends() -> Vec<PodSpec> {
    crate::l4::bed::pods()
}

/// The measured ClusterIP Service over every backend.
pub fn measured_service() -> Service {
    Service {
        namespace: "l4".into(),
        name: "cip-echo".into(),
        port_name: "http".into(),
        protocol: Protocol::Tcp,
        cluster_ip: SERVICE_IP,
        port: SERVICE_PORT,
        target_port: TCP_POD_PORT,
        node_port: None,
        external_ips: Vec::new(),
        endpoints: backends().into_iter().map(|p| Endpoint { ip: p.ip, node: p.node }).collect(),
    }
}

/// `background` idle Services plus the measured one (last, so kube-proxy's
/// iptables layout walks every background rule of `KUBE-SERVICES` first).
pub fn cluster(background: usize) -> Cluster {
    Cluster::background(background).with(measured_service())
}

/// The running bed with the backends' echo servers.
pub struct CipBed {
    // Field order is drop order: the servers stop before the bed goes.
    pub servers: EchoServers,
    pub bed: TestBed,
}

impl CipBed {
    /// Builds the bed and starts the backends' echo servers, `acceptors`
    /// threads per pod (at least the generator's concurrency).
    pub fn start(acceptors: usize) -> Result<Self> {
        let mut pods = backends();
        pods.push(PodSpec::new(CLIENT_POD, NODE, CLIENT_POD_IP));
        let bed = TestBed::builder().pods(pods).build().context("building the ClusterIP bed")?;
        // As on the NodePort bed: one queue per CPU on the uplinks (lb's XDP
        // program runs on node1's for the replies of node2's pods).
        for node in bed.nodes() {
            uplink_queues(&bed, node).with_context(|| format!("{}'s uplink queues", node.name))?;
        }
        let client = bed.pod(CLIENT_POD)?.ns.clone();
        // Short connections at thousands per second: reuse TIME_WAIT ports.
        sysctl(&client, "net.ipv4.tcp_tw_reuse", "1")?;
        sysctl(&client, "net.ipv4.ip_local_port_range", "1024 65000")?;
        let backend_ns: Vec<String> =
            backends().iter().map(|p| Ok(bed.pod(&p.name)?.ns.clone())).collect::<Result<_>>()?;
        let servers = EchoServers::start(&backend_ns, TCP_POD_PORT, acceptors)?;
        Ok(Self { servers, bed })
    }

    /// The generator's pod namespace.
    pub fn client_ns(&self) -> Result<&str> {
        Ok(&self.bed.pod(CLIENT_POD)?.ns)
    }

    /// node1's namespace, where kube-proxy's rules go.
    pub fn node_ns(&self) -> Result<&str> {
        self.bed.node_ns(NODE)
    }

    /// node1's pods' cgroup: lb's `--cgroup-root` there.
    pub fn node_cgroup(&self) -> Result<&Path> {
        Ok(&self.bed.node(NODE)?.cgroup)
    }

    /// The Service's cluster IP and port.
    pub fn service(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(SERVICE_IP, SERVICE_PORT))
    }

    /// The backends' own addresses (the baseline without a Service).
    pub fn pod_addrs(&self) -> Vec<SocketAddr> {
        backends().iter().map(|p| SocketAddr::V4(SocketAddrV4::new(p.ip, TCP_POD_PORT))).collect()
    }
}

/// lb-bench's own process in a cgroup (every thread: generators, echo
/// servers) until dropped, then back where it was. A socket belongs to the
/// cgroup of the process that created it, so only sockets made meanwhile
/// are seen by the cgroup's socket programs. Drop it before the bed, whose
/// cleanup removes the node's cgroup (which must then be empty).
pub struct InCgroup {
    back: PathBuf,
}

impl InCgroup {
    pub fn join(cgroup: &Path) -> Result<Self> {
        let back = own_cgroup()?;
        move_self(cgroup)?;
        Ok(Self { back })
    }
}

impl Drop for InCgroup {
    fn drop(&mut self) {
        if let Err(e) = move_self(&self.back) {
            eprintln!("[l4] warning: could not leave the node's cgroup: {e:#}");
        }
    }
}

fn move_self(cgroup: &Path) -> Result<()> {
    let procs = cgroup.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string()).with_context(|| format!("writing {}", procs.display()))
}

/// This process's cgroup v2 directory (`0::/path` of /proc/self/cgroup
/// under the machine's cgroup2 mount).
fn own_cgroup() -> Result<PathBuf> {
    let mount = lb_userspace::cgroup::machine_mount()?.context("no cgroup2 mount")?;
    let own = std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        bail!("no cgroup v2 line in /proc/self/cgroup: {own:?}");
    };
    Ok(mount.join(path.trim_start_matches('/')))
}
