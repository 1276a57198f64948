//! The subjects of the ClusterIP scenario, each serving the same
//! [`Cluster`] for the client pod on node1: lb (its socket programs on
//! node1's pods' cgroup; its XDP program on the uplink as always, natively
//! as by default or in generic mode),
//! kube-proxy's iptables layout and its nftables layout in node1's
//! namespace (`KUBE-SERVICES` / `services` hooked to PREROUTING and OUTPUT:
//! the pod's packets are routed through node1 and DNAT'ed there), and a
//! baseline with no Service at all, the generator connecting to the pods'
//! own addresses. One at a time; [`Serving::stop`] leaves node1 empty.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lb_testbed::{LbRun, ProcessHandle};

use super::bed::CipBed;
use crate::cluster::Cluster;
use crate::kube_proxy;
use crate::l4::bed::{NODE, node};
use crate::l4::subject::{LB_ADMIN, LbOptions, clear_rules, wait_ready, write_manifests};
use crate::l4::tcp::exchange_once;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// lb as deployed: socket-level balancing for the node's pods (and, as
    /// always, native XDP on the uplink, which every frame arriving there
    /// passes: here the replies of node2's pods).
    Lb,
    /// The same in generic (skb) XDP mode: on a veth, native XDP changes
    /// how every received frame is handled, generic XDP does not.
    LbGeneric,
    Iptables,
    Nftables,
    /// No Service: the generator spreads its connections over the pods'
    /// own addresses, node1 only routes.
    Direct,
}

/// Every subject, in the order of the first round.
pub const ALL: [Subject; 5] = [Subject::Lb, Subject::LbGeneric, Subject::Iptables, Subject::Nftables, Subject::Direct];
/// The subject that is us, named as in the NodePort part.
pub use crate::l4::subject::OURS;

impl Subject {
    pub fn name(self) -> &'static str {
        match self {
            Subject::Lb => OURS,
            Subject::LbGeneric => "lb generic XDP",
            Subject::Iptables => "iptables",
            Subject::Nftables => "nftables",
            Subject::Direct => "direct to pods (no Service)",
        }
    }

    /// Where the generator connects: the cluster IP, or the pods.
    pub fn targets(self, bed: &CipBed) -> Vec<SocketAddr> {
        match self {
            Subject::Direct => bed.pod_addrs(),
            _ => vec![bed.service()],
        }
    }
}

/// How long a subject may take, once configured, to answer the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An active subject.
pub enum Serving {
    Lb { process: ProcessHandle, _manifests: tempfile::TempDir },
    Iptables,
    Nftables,
    Direct,
}

/// Configures `subject` for `cluster`; returns it and how long that took
/// (until lb's `/readyz`, or the rule set's tool exited).
pub fn start(bed: &CipBed, subject: Subject, cluster: &Cluster, lb: &LbOptions) -> Result<(Serving, Duration)> {
    let ns = bed.node_ns()?.to_string();
    let started = Instant::now();
    let serving = match subject {
        Subject::Lb | Subject::LbGeneric => {
            let dir = write_manifests(cluster)?;
            let run = match subject {
                Subject::LbGeneric => LbRun::on_bed_node(dir.path()).xdp_mode("skb"),
                _ => LbRun::on_bed_node(dir.path()),
            };
            let run = run
                .max_services(lb.max_services)
                .maglev_table_size(lb.maglev_table_size)
                .admin_addr(LB_ADMIN)
                .log_level("warn");
            // `--cgroup-root` is node1's pods' cgroup, `--node-name node1`.
            let process = bed.bed.start_lb_run(NODE, run)?;
            wait_ready(&ns, &process, lb.ready_timeout)?;
            Serving::Lb { process, _manifests: dir }
        }
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
        Subject::Direct => Serving::Direct,
    };
    Ok((serving, started.elapsed()))
}

/// One echo from the client pod to each of `targets` must succeed within
/// [`PROBE_TIMEOUT`]. Call it in node1's cgroup (lb balances only there).
pub fn probe(bed: &CipBed, targets: &[SocketAddr]) -> Result<()> {
    let ns = bed.client_ns()?.to_string();
    for &to in targets {
        let deadline = Instant::now() + PROBE_TIMEOUT;
        loop {
            let tried = lb_testbed::in_netns(&ns, || exchange_once(to, b"probe", &mut [0u8; 5]))?;
            match tried {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    bail!("no echo through {to} from the client pod within {PROBE_TIMEOUT:?}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    Ok(())
}

impl Serving {
    /// The subject's own process (lb), whose CPU time is the node's too.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Serving::Lb { process, .. } => Some(process.pid()),
            _ => None,
        }
    }

    /// Removes the subject from node1: lb stopped and its pinned links to
    /// the cgroup and the uplink uninstalled, or the rules deleted; then node1's
    /// nftables are emptied and checked empty.
    pub fn stop(self, bed: &CipBed) -> Result<()> {
        let ns = bed.node_ns()?;
        match self {
            Serving::Lb { process, .. } => super::super::subject::stop_lb(&bed.bed, &process)?,
            Serving::Iptables => kube_proxy::iptables::flush(ns)?,
            Serving::Nftables => kube_proxy::nftables::flush(ns)?,
            Serving::Direct => {}
        }
        clear_rules(ns)
    }
}
