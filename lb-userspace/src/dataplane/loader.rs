//! Loading the kernel programs and attaching them to the uplinks.
//!
//! XDP and TC programs are attached as BPF links (TCX for TC on Linux ≥
//! 6.6), owned by this process: when the agent exits, for whatever reason,
//! the kernel detaches them and the node is back to plain kernel networking.
//! The socket programs are attached to a cgroup (`--cgroup-root`) the same
//! way.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use lb_common::{
    INTERFACE_TC_TRANSMIT, Interface, MAP_CONNTRACK, MAP_MAGLEV, MAP_SERVICE_STATS, MAP_SERVICES, PROG_SOCK_CONNECT4,
    PROG_SOCK_CONNECT6, PROG_SOCK_GETPEERNAME4, PROG_SOCK_GETPEERNAME6, PROG_SOCK_RECVMSG4, PROG_SOCK_RECVMSG6,
    PROG_SOCK_SENDMSG4, PROG_SOCK_SENDMSG6, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP, addr_to_map,
};
use tracing::{info, warn};

use super::{DataplaneMaps, DataplaneSettings, object};

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
}

impl Datapath {
    /// Loads (verifies) both programs and sizes the maps; attaches nothing.
    /// The kernel programs' debug log lines are only produced when this
    /// process logs at debug level (see [`Datapath::take_logger`]).
    pub fn load(settings: &DataplaneSettings) -> Result<(Self, DataplaneMaps)> {
        settings.validate()?;
        let kernel_log_level: u8 = if tracing::level_filters::LevelFilter::current() >= tracing::Level::DEBUG {
            aya_log_common_level::DEBUG
        } else {
            aya_log_common_level::WARN
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("AYA_LOG_LEVEL", &kernel_log_level, true)
            .map_max_entries(MAP_MAGLEV, settings.maglev_slots())
            .map_max_entries(MAP_SERVICES, settings.max_services)
            .map_max_entries(MAP_SERVICE_STATS, settings.max_services)
            .map_max_entries(MAP_CONNTRACK, settings.conntrack_entries)
            .load(object::bytes())
            .context("loading the eBPF object (are we root, with BPF allowed?)")?;
        xdp_program(&mut ebpf)?.load().context("verifying the XDP program")?;
        tc_program(&mut ebpf, PROG_TC_EGRESS)?.load().context("verifying the TC egress program")?;
        tc_program(&mut ebpf, PROG_TC_INGRESS)?.load().context("verifying the TC ingress program")?;
        for name in SOCKET_PROGRAMS {
            sock_program(&mut ebpf, name)?.load().with_context(|| format!("verifying the socket program {name}"))?;
        }
        let mut maps = DataplaneMaps::take_from(&mut ebpf)?;
        maps.config.set(0, settings.kernel_config(), 0).context("writing CONFIG")?;
        Ok((Self { ebpf }, maps))
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
            tc_program(&mut self.ebpf, PROG_TC_INGRESS)?
                .attach(&uplink.name, TcAttachType::Ingress)
                .with_context(|| format!("attaching TC ingress to {}", uplink.name))?;
        }
        tc_program(&mut self.ebpf, PROG_TC_EGRESS)?
            .attach(&uplink.name, TcAttachType::Egress)
            .with_context(|| format!("attaching TC egress to {}", uplink.name))?;
        let xdp = xdp_program(&mut self.ebpf)?;
        let attached = match mode {
            XdpAttachMode::Driver => xdp.attach(&uplink.name, XdpMode::Driver).map(|_| "driver"),
            XdpAttachMode::Skb => xdp.attach(&uplink.name, XdpMode::Skb).map(|_| "skb"),
            XdpAttachMode::Auto => match xdp.attach(&uplink.name, XdpMode::Driver) {
                Ok(_) => Ok("driver"),
                Err(e) => {
                    warn!(interface = %uplink.name, error = %e, "native XDP unavailable; using generic (skb) mode");
                    xdp.attach(&uplink.name, XdpMode::Skb).map(|_| "skb")
                }
            },
        }
        .with_context(|| format!("attaching XDP to {}", uplink.name))?;
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
            sock_program(&mut self.ebpf, name)?
                .attach(&dir, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to the cgroup {}", cgroup.display()))?;
        }
        info!(cgroup = %cgroup.display(), "socket load balancing attached (connect, sendmsg, recvmsg, getpeername; 4 and 6)");
        Ok(())
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
