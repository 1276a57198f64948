//! The subjects: lb's XDP data path (as it runs on a veth uplink by
//! default, and two other ways of sending frames for comparison),
//! kube-proxy's iptables layout and its nftables layout, each serving the
//! same [`Cluster`] on node1 of the bed.
//! One is active at a time; [`Serving::stop`] leaves node1 as it was
//! (no process, no table, so the kernel's conntrack hooks are gone too).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lb_testbed::netns::exec_in;
use lb_testbed::{LbRun, ProcessHandle, TestBed};

use super::bed::{L4Bed, NODE, node};
use super::tcp::exchange_once;
use crate::cluster::Cluster;
use crate::kube_proxy;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// lb as it runs on this bed by default: native XDP, and frames for
    /// other nodes sent through TC (`--xdp-transmit auto`, nothing on the
    /// LAN side of the uplink).
    Lb,
    /// lb sending with `XDP_TX` from XDP, which on a veth needs an XDP
    /// program on the LAN side: attached for this subject only.
    LbXdpTx,
    /// lb in generic (skb) XDP mode.
    LbGeneric,
    Iptables,
    Nftables,
}

/// lb's figures are compared with these.
pub const ALL: [Subject; 5] = [Subject::Lb, Subject::LbXdpTx, Subject::LbGeneric, Subject::Iptables, Subject::Nftables];
/// The subject that is us.
pub const OURS: &str = "lb";

impl Subject {
    pub fn name(self) -> &'static str {
        match self {
            Subject::Lb => OURS,
            Subject::LbXdpTx => "lb XDP_TX (peer XDP)",
            Subject::LbGeneric => "lb generic XDP",
            Subject::Iptables => "iptables",
            Subject::Nftables => "nftables",
        }
    }

    /// `run` with the flags of the lb subjects.
    fn lb_flags(self, run: LbRun) -> LbRun {
        match self {
            Subject::Lb | Subject::Iptables | Subject::Nftables => run,
            Subject::LbXdpTx => run.xdp_mode("driver").xdp_transmit("xdp"),
            Subject::LbGeneric => run.xdp_mode("skb"),
        }
    }
}

/// How lb is run.
#[derive(Clone, Debug)]
pub struct LbOptions {
    pub max_services: usize,
    pub maglev_table_size: u32,
    /// How long lb may take to fill its maps (`/readyz` 200).
    pub ready_timeout: Duration,
}

/// lb's admin listener (`/readyz`), inside node1's namespace.
pub(super) const LB_ADMIN: &str = "127.0.0.1:10254";
/// How long a subject may take, once configured, to answer the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An active subject on node1.
pub enum Serving {
    Lb { process: ProcessHandle, _manifests: tempfile::TempDir, _peer_xdp: Option<lb_testbed::LanPeerXdp> },
    Iptables,
    Nftables,
}

/// Configures `subject` on node1 for `cluster`, waits until the measured
/// TCP NodePort answers; returns it and how long the setup took.
pub fn start(bed: &L4Bed, subject: Subject, cluster: &Cluster, lb: &LbOptions) -> Result<(Serving, Duration)> {
    let ns = bed.node_ns()?.to_string();
    let started = Instant::now();
    let serving = match subject {
        Subject::Lb | Subject::LbXdpTx | Subject::LbGeneric => start_lb(bed, subject, cluster, lb)?,
        Subject::Iptables => {
            kube_proxy::iptables::apply(&ns, &kube_proxy::iptables::full_restore(cluster, &node()), false)
                .context("loading kube-proxy's iptables rules")?;
            Serving::Iptables
        }
        Subject::Nftables => {
            kube_proxy::nftables::apply(&ns, &kube_proxy::nftables::full_ruleset(cluster, &node()))
                .context("loading kube-proxy's nftables rules")?;
            Serving::Nftables
        }
    };
    probe(bed, bed.tcp_frontend()).with_context(|| format!("{} does not serve", subject.name()))?;
    Ok((serving, started.elapsed()))
}

fn start_lb(bed: &L4Bed, subject: Subject, cluster: &Cluster, lb: &LbOptions) -> Result<Serving> {
    let peer_xdp = (subject == Subject::LbXdpTx).then(|| bed.bed.lan_peer_xdp()).transpose()?;
    let dir = write_manifests(cluster)?;
    let run = LbRun::on_bed_node(dir.path())
        .max_services(lb.max_services)
        .maglev_table_size(lb.maglev_table_size)
        .admin_addr(LB_ADMIN)
        .log_level("warn");
    let process = bed.bed.start_lb_run(NODE, subject.lb_flags(run))?;
    let ns = bed.node_ns()?;
    wait_ready(ns, &process, lb.ready_timeout)?;
    Ok(Serving::Lb { process, _manifests: dir, _peer_xdp: peer_xdp })
}

/// `cluster` as one manifest file per Service in a new temporary directory.
pub(super) fn write_manifests(cluster: &Cluster) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir().context("manifests directory")?;
    for (file, body) in cluster.manifest_files() {
        std::fs::write(dir.path().join(&file), body).with_context(|| format!("writing {file}"))?;
    }
    Ok(dir)
}

/// Polls lb's `/readyz` until 200 (the first snapshot is in the maps).
pub(super) fn wait_ready(ns: &str, process: &ProcessHandle, timeout: Duration) -> Result<()> {
    let admin: SocketAddr = LB_ADMIN.parse()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = process.exit_status() {
            bail!("lb exited ({status}) before it was ready\n{}", process.logs(8 * 1024));
        }
        let ready = lb_testbed::http_request(ns, admin, "/readyz", &[], Duration::from_secs(1));
        if ready.is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("lb was not ready within {timeout:?}\n{}", process.logs(8 * 1024));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One echo through the TCP NodePort must succeed within [`PROBE_TIMEOUT`].
fn probe(bed: &L4Bed, to: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let ns = bed.client_ns().to_string();
    loop {
        let tried = lb_testbed::in_netns(&ns, || exchange_once(to, b"probe", &mut [0u8; 5]))?;
        match tried {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => bail!("no echo through {to} within {PROBE_TIMEOUT:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Stops an lb subject, warning when it did not exit cleanly, and
/// uninstalls its pinned data path (`lb cleanup`: its links to the uplink
/// and the cgroup go, which outlive the agent by design), so the next
/// subject meets a node without lb.
pub(super) fn stop_lb(bed: &TestBed, process: &ProcessHandle) -> Result<()> {
    let status = process.stop();
    if !status.is_some_and(|s| s.success()) {
        eprintln!("[l4] warning: lb did not exit cleanly ({status:?})\n{}", process.logs(4 * 1024));
    }
    bed.uninstall_lb(NODE)
}

impl Serving {
    /// The subject's own process (lb), whose CPU time is the node's too.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Serving::Lb { process, .. } => Some(process.pid()),
            _ => None,
        }
    }

    /// Removes the subject from node1: lb stopped and its pinned programs
    /// uninstalled (and the LAN side's program of `LbXdpTx` dropped), or the rules
    /// deleted; then every nftables table of node1 is
    /// removed (iptables-nft leaves empty `filter`/`nat` tables whose
    /// hooks would keep conntrack running for the next subject).
    pub fn stop(self, bed: &L4Bed) -> Result<()> {
        let ns = bed.node_ns()?;
        match self {
            Serving::Lb { process, .. } => stop_lb(&bed.bed, &process)?,
            Serving::Iptables => kube_proxy::iptables::flush(ns)?,
            Serving::Nftables => kube_proxy::nftables::flush(ns)?,
        }
        clear_rules(ns)
    }
}

/// Removes every nftables table of node namespace `ns` (iptables-nft
/// leaves empty `filter`/`nat` tables whose hooks would keep conntrack
/// running for the next subject) and checks that nothing is left.
pub(super) fn clear_rules(ns: &str) -> Result<()> {
    exec_in(ns, "nft", &["flush", "ruleset"]).context("clearing node1's nftables")?;
    let left = exec_in(ns, "nft", &["list", "ruleset"])?;
    if !left.stdout.is_empty() {
        bail!("node1 still has rules: {}", String::from_utf8_lossy(&left.stdout));
    }
    Ok(())
}

/// Whether the tools the peers need are installed.
pub fn require_tools() -> Result<()> {
    lb_testbed::netns::require_tool("iptables-restore", "iptables")?;
    lb_testbed::netns::require_tool("nft", "nftables")
}
