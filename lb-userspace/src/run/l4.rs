//! The eBPF side of `lb run`: the data path, its maps and their sync with
//! the snapshots.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lb_common::{L2Vip, L2VipKey};
use tracing::{error, info, warn};

use super::settings::{AgentSettings, DataPathSettings};
use crate::cli::RunArgs;
use crate::compile::{
    BackendAddr, CompileOptions, DataplaneTables, IngressHandoff, L4Compiler, NodeContext, Protocol, TablesDelta,
};
use crate::dataplane::{Applier, Attachment, Datapath, PinLock, StatsReader, VETH_DRIVER, XdpAttachMode, XdpTransmit};
use crate::diagnostics::Diagnostic;
use crate::health_check::{HealthCheckCompiler, HealthCheckServer};
use crate::inspect::DataPathView;
use crate::inspect::services::{ServicesSource, services_report};
use crate::metallb::gratuitous;
use crate::metallb::speaker::{L2Uplink, Speaker, Takeover};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::{cgroup, node, sockets};

/// The loaded data path, not yet attached until [`L4::attach`].
pub struct L4 {
    datapath: Datapath,
    applier: Applier,
    uplinks: Vec<Attachment>,
    /// Compiles only what changed from one snapshot to the next.
    compiler: L4Compiler,
    xdp_mode: XdpAttachMode,
    xdp_transmit: XdpTransmit,
    /// Where the socket programs go.
    cgroup_root: PathBuf,
    /// The UDP backends the cgroup's sockets could be connected to, as
    /// last applied: a backend that leaves this set has its connected
    /// sockets destroyed.
    udp_backends: HashSet<SocketAddrV4>,
    /// kube-proxy's `healthCheckNodePort` server.
    health_checks: HealthCheckServer,
    /// The health checks, kept from one snapshot to the next.
    checks: HealthCheckCompiler,
    /// `kubeproxy_sync_proxy_rules_*`.
    metrics: Arc<Metrics>,
    /// Its own handles on the pinned counters and conntrack table, for
    /// `/metrics` and `lb inspect`: opened once the pins are final
    /// ([`L4::attach`]; a replaced map is pinned under its name only then).
    stats: Option<Arc<StatsReader>>,
    maglev_table_size: u32,
    /// The addresses this node answers ARP for (MetalLB's layer 2).
    speaker: Speaker,
    /// `L2_VIPS` as last written; `None` until the first write (which
    /// reads the map back, entries a previous agent left included) and
    /// after a failed one.
    l2_written: Option<BTreeMap<L2VipKey, L2Vip>>,
    /// This agent's right to the pinned data path, for as long as it runs.
    pins: PinLock,
}

impl L4 {
    /// Loads the programs on the pinned maps (adopting them). `http` and
    /// `https` are the proxy's bound listeners, the targets of the ingress
    /// hand-off.
    pub fn load(
        args: &RunArgs,
        agent: &AgentSettings,
        settings: &DataPathSettings,
        pins: PinLock,
        http: SocketAddr,
        https: SocketAddr,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let interfaces = node::resolve_interfaces(&args.interfaces, args.host_ip)?;
        let uplinks = interfaces.iter().map(|name| node::uplink(name)).collect::<Result<Vec<_>>>()?;
        let l2_uplinks = uplinks.iter().map(l2_uplink).collect::<Result<Vec<_>>>()?;
        let addresses = node_addresses(args, &interfaces)?;
        let ingress = handoff(args, &addresses, http, https);
        let node = NodeContext { name: agent.node_name.clone(), addresses, ingress };
        info!(node = %node.name, addresses = ?node.addresses, "node");
        let maps = &settings.maps;
        let (mut datapath, tables, report) = Datapath::load(maps, Some(&pins))?;
        info!(
            pin_dir = %pins.dir().root().display(), adopted = ?report.adopted, created = ?report.created,
            replaced = ?report.replaced, "maps loaded"
        );
        spawn_kernel_log_reader(&mut datapath)?;
        Ok(Self {
            datapath,
            applier: Applier::new(tables, maps.maglev_table_size, maps.max_services),
            uplinks,
            compiler: L4Compiler::new(node, CompileOptions { maglev_table_size: maps.maglev_table_size }),
            xdp_mode: settings.xdp_mode,
            xdp_transmit: settings.xdp_transmit,
            cgroup_root: cgroup::resolve_root(args.cgroup_root.as_deref())?,
            udp_backends: HashSet::new(),
            health_checks: HealthCheckServer::new(Ipv4Addr::UNSPECIFIED.into()),
            checks: HealthCheckCompiler::default(),
            metrics,
            stats: None,
            maglev_table_size: maps.maglev_table_size,
            speaker: Speaker::new(agent.node_name.clone(), l2_uplinks, agent.config.address_pools.clone()),
            l2_written: None,
            pins,
        })
    }

    /// Attaches the programs to the uplinks and the socket programs to the
    /// cgroup (after the first [`L4::sync`], so no packet or connect sees
    /// empty maps), or swaps them into the links a previous agent pinned.
    pub fn attach(&mut self) -> Result<()> {
        self.heartbeat();
        let (mode, transmit) = (self.xdp_mode, self.xdp_transmit);
        let tc_ingress = self.uplinks.iter().any(|uplink| transmit.hands_off(&uplink.driver));
        for uplink in &self.uplinks {
            node::prepare_uplink(&uplink.name)?;
            if transmit == XdpTransmit::Xdp && uplink.driver == VETH_DRIVER {
                warn!(
                    interface = %uplink.name,
                    "--xdp-transmit xdp on a veth: its peer must run an XDP program (or frames for pods on \
                     other nodes, and their replies, are dropped or held) and the far side must send \
                     complete checksums (or translated TCP and UDP fail their checksum)"
                );
            }
            self.datapath.attach(self.applier.maps_mut(), uplink, mode, transmit, tc_ingress)?;
        }
        self.datapath.attach_cgroup(&self.cgroup_root)?;
        let ifindexes: HashSet<u32> = self.uplinks.iter().map(|uplink| uplink.ifindex).collect();
        let interfaces = &mut self.applier.maps_mut().interfaces;
        let stale: Vec<u32> = interfaces.keys().filter_map(|key| key.ok()).filter(|i| !ifindexes.contains(i)).collect();
        for ifindex in stale {
            interfaces.remove(&ifindex).context("removing an interface no longer attached")?;
        }
        self.datapath.commit_pins()?;
        self.stats = Some(Arc::new(StatsReader::open(self.pins.dir())?));
        // Now that requests are answered, tell the LAN.
        self.speaker.takeovers().iter().for_each(announce_takeover);
        Ok(())
    }

    /// Decides which addresses this node answers ARP for (`alive`: whose
    /// agents are alive) and writes them to the responder's map; sends a
    /// gratuitous ARP for each address taken over (once attached: before,
    /// [`L4::attach`] does).
    pub fn announce(&mut self, snapshot: &Snapshot, alive: impl Fn(&str) -> bool) -> Vec<Diagnostic> {
        let update = self.speaker.update(snapshot, alive);
        for diagnostic in &update.diagnostics {
            warn!("{diagnostic}");
        }
        if self.l2_written.as_ref() != Some(&update.entries) {
            match self.applier.maps_mut().set_l2_vips(&update.entries) {
                Ok(write) => {
                    if write.written + write.deleted > 0 {
                        let (addresses, written, deleted) = (update.entries.len(), write.written, write.deleted);
                        info!(addresses, written, deleted, "ARP responder updated");
                    }
                    self.l2_written = Some(update.entries);
                }
                Err(e) => {
                    self.l2_written = None;
                    error!("writing the ARP responder's addresses failed (retried on the next snapshot): {e:#}");
                }
            }
        }
        for lost in &update.lost {
            info!(ip = %lost.ip, interface = %lost.interface, service = %format!("{}/{}", lost.service.0, lost.service.1), "no longer announcing");
        }
        if self.stats.is_some() {
            update.gained.iter().for_each(announce_takeover);
        }
        update.diagnostics
    }

    /// Tells the ARP responder this agent is alive (see
    /// [`HEARTBEAT_LEASE`]).
    pub fn heartbeat(&mut self) {
        if let Err(e) = self.applier.maps_mut().heartbeat(HEARTBEAT_LEASE) {
            error!("writing the heartbeat failed: {e:#}");
        }
    }

    /// The service views in the maps, for `lb inspect` and `/metrics`
    /// (their counters are read by the caller, from [`DataPathView::stats`]);
    /// `None` before [`L4::attach`].
    pub fn view(&self) -> Option<DataPathView> {
        let stats = self.stats.clone()?;
        let compiler = &self.compiler;
        let slices = |service: &(String, String)| compiler.service_slices(service);
        let source = ServicesSource {
            tables: compiler.tables(),
            ids: self.applier.service_ids().collect(),
            snapshot: compiler.last_snapshot().map(|s| &**s),
            slices: &slices,
            node_name: compiler.node_name(),
        };
        Some(DataPathView { services: services_report(&source), stats, maglev_table_size: self.maglev_table_size })
    }

    /// Compiles a snapshot and applies the result, and serves its health
    /// check node ports; problems are logged (and returned), and whatever
    /// compiled keeps being served.
    pub async fn sync(&mut self, snapshot: &Arc<Snapshot>) -> Vec<Diagnostic> {
        let started = Instant::now();
        // Found once, for the compiler and the health checks.
        let changes = self.compiler.last_snapshot().map(|old| (snapshot.changes_since(old), old.clone()));
        let concerned = changes.as_ref().map(|(changes, old)| changes.services_concerned(old, snapshot));
        let (delta, mut diagnostics) = self.compiler.compile_changes(snapshot, changes.as_ref().map(|(c, _)| c));
        let node_name = self.compiler.node_name();
        match (concerned, delta.is_some()) {
            (Some(concerned), true) => {
                let compiler = &self.compiler;
                self.checks.compile_changes(snapshot, &concerned, |service| compiler.service_slices(service), node_name)
            }
            _ => self.checks.compile_all(snapshot, node_name),
        }
        diagnostics.extend(self.checks.diagnostics().iter().cloned());
        let checks = self.checks.checks().clone();
        let tables = self.compiler.tables();
        for diagnostic in &diagnostics {
            warn!("{diagnostic}");
        }
        match self.applier.apply_changes(tables, delta.as_ref()) {
            Ok(report) => {
                self.metrics.synced(started.elapsed());
                if let Some((changes, _)) = &changes {
                    for trigger in changes
                        .endpoint_slices
                        .iter()
                        .filter_map(|(ns, name)| last_change_trigger(snapshot.endpoint_slices.get(ns, name)?))
                    {
                        self.metrics.programmed(trigger);
                    }
                }
                if let Some(adopted) = &report.adopted {
                    info!(
                        services = adopted.services,
                        frontends = adopted.frontends,
                        backends = adopted.backends,
                        orphan_services = adopted.orphan_services,
                        "adopted the maps' contents"
                    );
                }
                for name in &report.services_over_capacity {
                    error!(service = %name, "no free service id (raise --max-services); not served");
                }
                info!(
                    frontends = tables.frontends.len(),
                    socket_frontends = tables.socket_frontends.len(),
                    services = tables.services.len(),
                    frontends_written = report.frontends_written,
                    frontends_deleted = report.frontends_deleted,
                    backends_written = report.backends_written,
                    backends_deleted = report.backends_deleted,
                    maglev_slots_written = report.maglev_slots_written,
                    maglev_rows_built = self.compiler.rows_built(),
                    "applied"
                );
                if delta.as_ref().is_none_or(touches_udp) {
                    let udp_backends = udp_backends(tables);
                    let gone: HashSet<SocketAddrV4> = self.udp_backends.difference(&udp_backends).copied().collect();
                    self.udp_backends = udp_backends;
                    if !gone.is_empty() {
                        destroy_stuck_udp_sockets(self.cgroup_root.clone(), gone);
                    }
                }
            }
            Err(e) => error!("applying to the BPF maps failed (will retry on the next change): {e:#}"),
        }
        diagnostics.extend(self.health_checks.update(checks).await);
        diagnostics
    }
}

/// The EndpointSlice controller's `endpoints.kubernetes.io/last-change-trigger-time`:
/// when the change it carries was triggered (kube-proxy's start of network
/// programming latency).
fn last_change_trigger(slice: &k8s_openapi::api::discovery::v1::EndpointSlice) -> Option<std::time::SystemTime> {
    let value = slice.metadata.annotations.as_ref()?.get("endpoints.kubernetes.io/last-change-trigger-time")?;
    humantime::parse_rfc3339_weak(value).ok()
}

/// Whether a change may have removed a backend from a UDP view.
fn touches_udp(delta: &TablesDelta) -> bool {
    delta.services.iter().any(|view| view.port.protocol == Protocol::Udp)
        || delta.socket_frontends.iter().any(|addr| addr.protocol == Protocol::Udp)
}

/// The backends of UDP service views that the socket programs use.
fn udp_backends(tables: &DataplaneTables) -> HashSet<SocketAddrV4> {
    let views: HashSet<_> = tables.socket_frontends.values().map(|f| &f.service).collect();
    views
        .into_iter()
        .filter(|view| view.port.protocol == Protocol::Udp)
        .filter_map(|view| tables.services.get(view))
        .flat_map(|entry| entry.backends.iter().map(|b| SocketAddrV4::new(b.ip, b.port)))
        .collect()
}

/// Destroys, in the background, the connected UDP sockets of the cgroup's
/// processes whose peer is one of `gone` (backends already out of the
/// maps, so the reconnect gets a live one). See [`crate::sockets`].
fn destroy_stuck_udp_sockets(cgroup_root: PathBuf, gone: HashSet<SocketAddrV4>) {
    tokio::task::spawn_blocking(move || {
        let (destroyed, failures) = destroy_in_cgroup(&cgroup_root, &gone);
        let gone: Vec<String> = gone.iter().map(ToString::to_string).collect();
        if destroyed > 0 || failures > 0 {
            info!(backends = ?gone, destroyed, failures, "destroyed connected UDP sockets of removed backends");
        }
    });
}

fn destroy_in_cgroup(cgroup_root: &Path, gone: &HashSet<SocketAddrV4>) -> (usize, usize) {
    let namespaces = match sockets::namespaces_in_cgroup(cgroup_root) {
        Ok(namespaces) => namespaces,
        Err(e) => {
            warn!("finding the network namespaces of {}: {e:#}", cgroup_root.display());
            return (0, 1);
        }
    };
    let (mut destroyed, mut failures) = (0, 0);
    for netns in &namespaces {
        match sockets::destroy_udp_connected_to(netns, gone) {
            Ok(n) => destroyed += n,
            Err(e) => {
                warn!(?netns, "destroying connected UDP sockets: {e:#}");
                failures += 1;
            }
        }
    }
    (destroyed, failures)
}

/// The ingress hand-off targets: the proxy listeners, at the node's first
/// address when they listen on every address.
fn handoff(args: &RunArgs, addresses: &[Ipv4Addr], http: SocketAddr, https: SocketAddr) -> Option<IngressHandoff> {
    let target = |listener: SocketAddr| match listener.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addresses.first().map(|&ip| BackendAddr { ip, port: listener.port() }),
        IpAddr::V4(ip) => Some(BackendAddr { ip, port: listener.port() }),
        IpAddr::V6(_) => None,
    };
    let service = &args.ingress.ingress_service;
    match (target(http), target(https)) {
        (Some(http), Some(https)) => {
            Some(IngressHandoff { namespace: service.namespace.clone(), name: service.name.clone(), http, https })
        }
        _ => {
            warn!(%service, "the proxy listeners have no IPv4 node address: the ingress Service is not handed to the proxy");
            None
        }
    }
}

/// Forwards the kernel programs' aya-log records to our log.
fn spawn_kernel_log_reader(datapath: &mut Datapath) -> Result<()> {
    let logger = datapath.take_logger()?;
    // SAFETY: the fd is the logger's ring buffer map, owned by the logger
    // that the AsyncFd owns from here on: it stays open and the same.
    let mut logger = unsafe { tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("watching the eBPF log ring buffer")?;
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}

/// `--node-ip`, else every IPv4 address of the uplinks.
fn node_addresses(args: &RunArgs, interfaces: &[String]) -> Result<Vec<Ipv4Addr>> {
    if !args.node_ips.is_empty() {
        return Ok(args.node_ips.clone());
    }
    let mut out = Vec::new();
    for name in interfaces {
        out.extend(node::ipv4_addresses(name)?);
    }
    Ok(out)
}

/// How long the ARP responder keeps answering after the agent's last
/// heartbeat: the node Lease's duration, so that a hung agent's node stops
/// answering when the other nodes see its Lease expire and take over.
pub const HEARTBEAT_LEASE: Duration = Duration::from_secs(15);

/// How often the agent beats.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);

/// An uplink's Ethernet address and LANs, for the ARP responder.
fn l2_uplink(uplink: &Attachment) -> Result<L2Uplink> {
    Ok(L2Uplink {
        name: uplink.name.clone(),
        ifindex: uplink.ifindex,
        mac: node::hardware_address(&uplink.name)?,
        networks: node::ipv4_networks(&uplink.name)?,
    })
}

/// Sends the gratuitous ARP of an address taken over; a failure is logged
/// (clients then learn the new owner when their entries go stale).
fn announce_takeover(takeover: &Takeover) {
    match gratuitous::announce(takeover.ifindex, takeover.mac, takeover.ip) {
        Ok(()) => info!(ip = %takeover.ip, interface = %takeover.interface, "announcing (gratuitous ARP sent)"),
        Err(e) => warn!(ip = %takeover.ip, interface = %takeover.interface, "sending a gratuitous ARP failed: {e:#}"),
    }
}
