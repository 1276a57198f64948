//! Loading the kernel programs and attaching them to the uplinks.
//!
//! XDP and TC programs are attached as BPF links (TCX for TC on Linux ≥
//! 6.6), the socket programs as links on a cgroup (`--cgroup-root`). With a
//! pin directory ([`PinDir`]) every map and link is pinned, so the data path
//! outlives the agent; a later agent adopts the maps and swaps its programs
//! into the pinned links (`bpf_link_update`: there is no moment without a
//! program). Without one (tests, benchmarks) the links are owned by this
//! process and the kernel detaches them when it exits.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::SchedClassifierLink;
use aya::programs::xdp::XdpLink;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use lb_common::{
    GLOBAL_HANDOFF_IN_METADATA, HANDOFF_ENTRIES_UNUSED, INTERFACE_TC_TRANSMIT, Interface, MAP_BACKENDS, MAP_CONNTRACK,
    MAP_FRONTENDS, MAP_HANDOFFS, MAP_MAGLEV, MAP_SERVICE_STATS, MAP_SERVICES, PINNED_MAPS, PROG_SOCK_CONNECT4,
    PROG_SOCK_CONNECT6, PROG_SOCK_GETPEERNAME4, PROG_SOCK_GETPEERNAME6, PROG_SOCK_RECVMSG4, PROG_SOCK_RECVMSG6,
    PROG_SOCK_SENDMSG4, PROG_SOCK_SENDMSG6, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP, addr_to_map,
};
use tracing::{info, warn};

use super::layout::{self, MapLayout, PinAction};
use super::pins::{PinDir, PinLock};
use super::{DataplaneMaps, DataplaneSettings, HandoffTransport, object, probe};

/// How to attach XDP: `auto` prefers native (driver) mode and falls back to
/// generic (skb) mode when the driver has no XDP support.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpAttachMode {
    #[default]
    Auto,
    Driver,
    Skb,
}

/// How translated frames leave an uplink (`--xdp-transmit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpTransmit {
    /// `tc` on veth uplinks, `xdp` everywhere else.
    #[default]
    Auto,
    /// From the XDP program itself: `XDP_TX`, `bpf_redirect`, `XDP_PASS`.
    Xdp,
    /// Handed to the TC ingress program, which fixes the L4 checksum and
    /// redirects the skb or lets it into the stack.
    Tc,
}

impl XdpTransmit {
    /// Whether frames arriving on or leaving through an uplink with
    /// `driver` are finished by TC. A veth delivers frames sent with
    /// `XDP_TX` or a redirect only to a peer that runs an XDP program
    /// itself, and passes on the sender's partial checksums, which XDP
    /// cannot see; the agent owns neither the peer nor the sender. Physical
    /// drivers send XDP frames themselves and deliver complete checksums.
    pub fn hands_off(self, driver: &str) -> bool {
        match self {
            XdpTransmit::Xdp => false,
            XdpTransmit::Tc => true,
            XdpTransmit::Auto => driver == VETH_DRIVER,
        }
    }
}

/// The veth driver's name (`ethtool -i`).
pub const VETH_DRIVER: &str = "veth";

/// An uplink to attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub ifindex: u32,
    /// The address flows leaving through this uplink are masqueraded to.
    pub snat_addr: Ipv4Addr,
    /// Its driver (`ethtool -i`): `veth`, `mlx5_core`, …
    pub driver: String,
}

/// The loaded programs (their maps are handed out separately, to the
/// applier).
pub struct Datapath {
    ebpf: Ebpf,
    /// Where maps and links are pinned, if they are.
    pins: Option<PinDir>,
    /// Maps created beside a pinned map of another layout, pinned as
    /// `NAME_new` until [`Datapath::commit_pins`].
    staged: Vec<&'static str>,
    /// The links pinned (or re-pinned) by this agent.
    pinned_links: BTreeSet<PathBuf>,
    handoff_in_metadata: bool,
}

/// Where the notes go for `transport`: `Auto` probes the kernel.
fn handoff_in_metadata(transport: HandoffTransport) -> bool {
    match transport {
        HandoffTransport::Metadata => true,
        HandoffTransport::Map => false,
        HandoffTransport::Auto => match probe::xdp_metadata_allowed() {
            Ok(true) => true,
            Ok(false) => {
                info!("this kernel refuses XDP metadata to XDP programs: hand-off notes go in the HANDOFFS map");
                false
            }
            Err(error) => {
                warn!(%error, "cannot probe for XDP metadata support; assuming it is there");
                true
            }
        },
    }
}

/// What loading did with the pinned maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinReport {
    pub adopted: Vec<&'static str>,
    pub created: Vec<&'static str>,
    /// Replaced (another layout), with the entries copied over.
    pub replaced: Vec<(&'static str, usize)>,
}

impl Datapath {
    /// Loads (verifies) the programs and sizes the maps; attaches nothing.
    /// With `pins` (the pin directory, locked), the maps are the pinned ones
    /// where their layout matches (see [`layout`]) and are pinned otherwise.
    /// The kernel programs' debug log lines are only produced when this
    /// process logs at debug level (see [`Datapath::take_logger`]).
    pub fn load(settings: &DataplaneSettings, pins: Option<&PinLock>) -> Result<(Self, DataplaneMaps, PinReport)> {
        settings.validate()?;
        let kernel_log_level: u8 = if tracing::level_filters::LevelFilter::current() >= tracing::Level::DEBUG {
            aya_log_common_level::DEBUG
        } else {
            aya_log_common_level::WARN
        };
        let handoff_in_metadata = handoff_in_metadata(settings.handoff);
        let handoff_entries = if handoff_in_metadata { HANDOFF_ENTRIES_UNUSED } else { settings.conntrack_entries };
        let sizes: BTreeMap<&str, u32> = BTreeMap::from([
            (MAP_HANDOFFS, handoff_entries),
            (MAP_MAGLEV, settings.maglev_slots()),
            (MAP_SERVICES, settings.max_services),
            (MAP_SERVICE_STATS, settings.max_services),
            (MAP_FRONTENDS, settings.max_frontends),
            (MAP_BACKENDS, settings.max_backends),
            (MAP_CONNTRACK, settings.conntrack_entries),
        ]);
        let mut loader = EbpfLoader::new();
        loader.override_global("AYA_LOG_LEVEL", &kernel_log_level, true);
        let metadata_global = u8::from(handoff_in_metadata);
        loader.override_global(GLOBAL_HANDOFF_IN_METADATA, &metadata_global, true);
        for (name, entries) in &sizes {
            loader.map_max_entries(name, *entries);
        }
        let mut report = PinReport::default();
        let mut staged = Vec::new();
        let mut copies = Vec::new();
        if let Some(lock) = pins {
            let dir = lock.dir();
            for (name, action) in pin_actions(dir, &sizes)? {
                match action {
                    PinAction::Adopt => report.adopted.push(name),
                    PinAction::Create => report.created.push(name),
                    PinAction::Replace { old, copy } => {
                        warn!(
                            map = name, pinned = %old, "the pinned map has another layout: replacing it{}",
                            if copy { ", entries copied" } else { "" }
                        );
                        staged.push(name);
                        if copy {
                            copies.push(name);
                        }
                        loader.map_pin_path(name, dir.staged_map(name));
                        continue;
                    }
                }
                loader.map_pin_path(name, dir.map(name));
            }
        }
        let mut ebpf =
            loader.load(object::bytes()).context("loading the eBPF object (are we root, with BPF allowed?)")?;
        if let Some(lock) = pins {
            for &name in &staged {
                let copied = match copies.contains(&name) {
                    true => {
                        let map = ebpf.map_mut(name).with_context(|| format!("no map {name}"))?;
                        layout::copy_entries(name, &lock.dir().map(name), map)
                            .with_context(|| format!("copying {name} into its replacement"))?
                    }
                    false => 0,
                };
                report.replaced.push((name, copied));
            }
        }
        xdp_program(&mut ebpf)?.load().context("verifying the XDP program")?;
        tc_program(&mut ebpf, PROG_TC_EGRESS)?.load().context("verifying the TC egress program")?;
        tc_program(&mut ebpf, PROG_TC_INGRESS)?.load().context("verifying the TC ingress program")?;
        for name in SOCKET_PROGRAMS {
            sock_program(&mut ebpf, name)?.load().with_context(|| format!("verifying the socket program {name}"))?;
        }
        let mut maps = DataplaneMaps::take_from(&mut ebpf)?;
        maps.config.set(0, settings.kernel_config(), 0).context("writing CONFIG")?;
        let pins = pins.map(|lock| lock.dir().clone());
        Ok((Self { ebpf, pins, staged, pinned_links: BTreeSet::new(), handoff_in_metadata }, maps, report))
    }

    /// Whether XDP leaves its notes for TC in the frames' metadata (else in
    /// the `HANDOFFS` map).
    pub fn handoff_in_metadata(&self) -> bool {
        self.handoff_in_metadata
    }

    /// After every program is attached: the maps staged as `NAME_new` take
    /// their names (the old maps go when the last program using them does),
    /// and pinned links this agent did not attach (an uplink no longer
    /// configured, TC ingress no longer needed) are removed, which detaches
    /// them.
    pub fn commit_pins(&mut self) -> Result<()> {
        let Some(dir) = &self.pins else { return Ok(()) };
        for name in std::mem::take(&mut self.staged) {
            std::fs::rename(dir.staged_map(name), dir.map(name))
                .with_context(|| format!("pinning the new {name} in place of the old"))?;
            info!(map = name, "replaced the pinned map");
        }
        for entry in std::fs::read_dir(dir.links()).with_context(|| format!("listing {}", dir.links().display()))? {
            let path = entry?.path();
            if !self.pinned_links.contains(&path) {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                info!(link = %path.display(), "detached a pinned link this agent does not use");
            }
        }
        Ok(())
    }

    /// Attaches XDP (ingress) and TC (egress) to an uplink, and TC ingress
    /// when frames leaving through it are handed to TC (`transmit`; then
    /// every uplink needs it, as a frame may arrive on one and leave
    /// through another: `tc_ingress`). TC comes first, so no handed-off
    /// frame ever finds it missing.
    pub fn attach(
        &mut self,
        maps: &mut DataplaneMaps,
        uplink: &Attachment,
        mode: XdpAttachMode,
        transmit: XdpTransmit,
        tc_ingress: bool,
    ) -> Result<()> {
        let hands_off = transmit.hands_off(&uplink.driver);
        let flags = if hands_off { INTERFACE_TC_TRANSMIT } else { 0 };
        let iface = Interface { snat_addr: addr_to_map(uplink.snat_addr), flags };
        maps.interfaces
            .insert(uplink.ifindex, iface, 0)
            .with_context(|| format!("registering interface {}", uplink.name))?;
        if tc_ingress || hands_off {
            self.attach_tc(&uplink.name, TcAttachType::Ingress)?;
        }
        self.attach_tc(&uplink.name, TcAttachType::Egress)?;
        let attached = self.attach_xdp(&uplink.name, mode)?;
        let transmit = if hands_off { "tc" } else { "xdp" };
        info!(
            interface = %uplink.name, ifindex = uplink.ifindex, driver = %uplink.driver, xdp_mode = attached, transmit,
            snat = %uplink.snat_addr, "attached"
        );
        Ok(())
    }

    /// Attaches the socket programs to the cgroup v2 directory `cgroup`:
    /// they then apply to every process in it and in the cgroups below,
    /// whatever network namespace their sockets are in. Attached as BPF
    /// links, which always sit beside whatever else the node runs there
    /// (the kernel refuses attach flags on cgroup links: mode `Single` means
    /// none).
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<()> {
        let dir = File::open(cgroup).with_context(|| format!("opening the cgroup {}", cgroup.display()))?;
        for name in SOCKET_PROGRAMS {
            let program = sock_program(&mut self.ebpf, name)?;
            let id = program
                .attach(&dir, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to the cgroup {}", cgroup.display()))?;
            let Some(pins) = &self.pins else { continue };
            // Cgroup links cannot be updated with another program, but they
            // stack: the new link is attached first, then takes the old
            // one's pin, which detaches it. In between both run, and the
            // second finds the address already translated (a backend is no
            // frontend), so nothing is translated twice.
            let link: FdLink = program.take_link(id)?.try_into().context("the cgroup link is not a bpf link")?;
            let path = pins.link(name);
            let staged = pins.link(&super::pins::staged(name));
            let _ = std::fs::remove_file(&staged);
            link.pin(&staged).with_context(|| format!("pinning {}", staged.display()))?;
            std::fs::rename(&staged, &path).with_context(|| format!("pinning {}", path.display()))?;
            self.pinned_links.insert(path);
        }
        info!(cgroup = %cgroup.display(), "socket load balancing attached (connect, sendmsg, recvmsg, getpeername; 4 and 6)");
        Ok(())
    }

    /// Attaches TC to an interface, or swaps this agent's program into the
    /// pinned link.
    fn attach_tc(&mut self, interface: &str, kind: TcAttachType) -> Result<()> {
        let (program_name, link_kind) = match kind {
            TcAttachType::Ingress => (PROG_TC_INGRESS, "tc_ingress"),
            _ => (PROG_TC_EGRESS, "tc_egress"),
        };
        let program = tc_program(&mut self.ebpf, program_name)?;
        let Some(pins) = &self.pins else {
            program.attach(interface, kind).with_context(|| format!("attaching {program_name} to {interface}"))?;
            return Ok(());
        };
        let path = pins.interface_link(link_kind, interface);
        if path.exists() {
            let updated = pinned_fd_link(&path)
                .and_then(|link| SchedClassifierLink::try_from(link).context("not a TCX link"))
                .and_then(|link| program.attach_to_link(link).context("bpf_link_update"));
            match updated {
                Ok(_) => {
                    info!(interface, link = link_kind, "program swapped into the pinned link");
                    self.pinned_links.insert(path);
                    return Ok(());
                }
                Err(e) => {
                    warn!(interface, link = link_kind, "the pinned link cannot be updated ({e:#}): attaching anew");
                    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
        let id = program.attach(interface, kind).with_context(|| format!("attaching {program_name} to {interface}"))?;
        let link: FdLink = program.take_link(id)?.try_into().context("the TC link is not a bpf link (TCX)")?;
        link.pin(&path).with_context(|| format!("pinning {}", path.display()))?;
        self.pinned_links.insert(path);
        Ok(())
    }

    /// Attaches XDP to an interface in `mode`, or swaps this agent's program
    /// into the pinned link (which keeps the mode it was attached in).
    /// Returns the mode.
    fn attach_xdp(&mut self, interface: &str, mode: XdpAttachMode) -> Result<&'static str> {
        let program = xdp_program(&mut self.ebpf)?;
        let path = self.pins.as_ref().map(|pins| pins.interface_link("xdp", interface));
        if let Some(path) = path.as_ref().filter(|path| path.exists()) {
            let updated = pinned_fd_link(path)
                .and_then(|link| XdpLink::try_from(link).context("not an XDP link"))
                .and_then(|link| program.attach_to_link(link).context("bpf_link_update"));
            match updated {
                Ok(_) => {
                    self.pinned_links.insert(path.clone());
                    return Ok("kept (pinned link updated)");
                }
                Err(e) => {
                    warn!(interface, "the pinned XDP link cannot be updated ({e:#}): attaching anew");
                    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
        let (id, attached) = match mode {
            XdpAttachMode::Driver => (program.attach(interface, XdpMode::Driver), "driver"),
            XdpAttachMode::Skb => (program.attach(interface, XdpMode::Skb), "skb"),
            XdpAttachMode::Auto => match program.attach(interface, XdpMode::Driver) {
                Ok(id) => (Ok(id), "driver"),
                Err(e) => {
                    warn!(interface, error = %e, "native XDP unavailable; using generic (skb) mode");
                    (program.attach(interface, XdpMode::Skb), "skb")
                }
            },
        };
        let id = id.with_context(|| format!("attaching XDP to {interface}"))?;
        if let Some(path) = path {
            let link: FdLink = program.take_link(id)?.try_into().context("the XDP link is not a bpf link")?;
            link.pin(&path).with_context(|| format!("pinning {}", path.display()))?;
            self.pinned_links.insert(path);
        }
        Ok(attached)
    }

    /// Reader of the kernel programs' aya-log records, which it forwards to
    /// `tracing` (through the `log` crate). Call once.
    pub fn take_logger(&mut self) -> Result<aya_log::EbpfLogger<&'static dyn log::Log>> {
        aya_log::EbpfLogger::init(&mut self.ebpf).context("starting the eBPF log reader")
    }

    /// The XDP program, for `BPF_PROG_TEST_RUN`.
    pub fn xdp(&mut self) -> Result<&mut Xdp> {
        xdp_program(&mut self.ebpf)
    }

    /// The TC egress program, for `BPF_PROG_TEST_RUN`.
    pub fn tc_egress(&mut self) -> Result<&mut SchedClassifier> {
        tc_program(&mut self.ebpf, PROG_TC_EGRESS)
    }

    /// The TC ingress program, for `BPF_PROG_TEST_RUN`.
    pub fn tc_ingress(&mut self) -> Result<&mut SchedClassifier> {
        tc_program(&mut self.ebpf, PROG_TC_INGRESS)
    }
}

/// `aya_log_common::Level` values (the kernel side compares raw bytes).
mod aya_log_common_level {
    pub const WARN: u8 = 2;
    pub const DEBUG: u8 = 4;
}

/// What to do with each pinned map (logged decisions in [`layout`]).
fn pin_actions(dir: &PinDir, sizes: &BTreeMap<&str, u32>) -> Result<Vec<(&'static str, PinAction)>> {
    let expected = layout::expected(object::bytes(), sizes)?;
    let mut pinned = BTreeMap::new();
    for name in PINNED_MAPS {
        let staged = dir.staged_map(name);
        if staged.exists() {
            // A replacement whose agent stopped before its program was live.
            std::fs::remove_file(&staged).with_context(|| format!("removing {}", staged.display()))?;
        }
        let path = dir.map(name);
        if path.exists() {
            pinned.insert(name.to_string(), MapLayout::of_pin(&path)?);
        }
    }
    let expected: BTreeMap<String, MapLayout> =
        expected.into_iter().filter(|(name, _)| PINNED_MAPS.contains(&name.as_str())).collect();
    let mut actions = layout::decide(&expected, &pinned);
    PINNED_MAPS
        .iter()
        .map(|&name| {
            actions
                .remove(name)
                .map(|action| (name, action))
                .with_context(|| format!("the eBPF object has no map {name}"))
        })
        .collect()
}

/// The link pinned at `path`.
fn pinned_fd_link(path: &Path) -> Result<FdLink> {
    Ok(PinnedLink::from_pin(path).with_context(|| format!("opening {}", path.display()))?.into())
}

fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let program = ebpf.program_mut(PROG_XDP).with_context(|| format!("no program {PROG_XDP}"))?;
    Ok(program.try_into()?)
}

/// The socket programs (cgroup `sock_addr` hooks).
const SOCKET_PROGRAMS: [&str; 8] = [
    PROG_SOCK_CONNECT4,
    PROG_SOCK_SENDMSG4,
    PROG_SOCK_RECVMSG4,
    PROG_SOCK_GETPEERNAME4,
    PROG_SOCK_CONNECT6,
    PROG_SOCK_SENDMSG6,
    PROG_SOCK_RECVMSG6,
    PROG_SOCK_GETPEERNAME6,
];

fn sock_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut CgroupSockAddr> {
    let program = ebpf.program_mut(name).with_context(|| format!("no program {name}"))?;
    Ok(program.try_into()?)
}

fn tc_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    let program = ebpf.program_mut(name).with_context(|| format!("no program {name}"))?;
    Ok(program.try_into()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_veth_hands_off_by_default() {
        assert!(XdpTransmit::Auto.hands_off("veth"));
        assert!(!XdpTransmit::Auto.hands_off("mlx5_core"));
        assert!(XdpTransmit::Tc.hands_off("ixgbe"));
        assert!(!XdpTransmit::Xdp.hands_off("veth"));
    }
}
