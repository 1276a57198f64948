//! The ARP responder (MetalLB's layer-2 mode): an ARP request for a
//! LoadBalancer address this node announces on the uplink it arrived on
//! (`L2_VIPS`, written by the agent from the owner rule) is turned into
//! its reply in place and sent back out of that uplink. The addresses are
//! not assigned to any interface, so the kernel itself never answers.
//!
//! The responder answers only while the agent's heartbeat in
//! `AGENT_STATE` is younger than its lease: a hung or stopped agent stops
//! claiming addresses at the time its node Lease expires and another node
//! takes them over.
//!
//! Anything else passes untouched: requests for other addresses, replies,
//! gratuitous ARP (sender address = target address), and frames that are
//! not Ethernet/IPv4 ARP of the usual sizes or are cut short.
//!
//! On uplinks whose frames TC finishes (`INTERFACE_TC_TRANSMIT`, see
//! `transmit.rs`) `XDP_TX` would not reach the far side, so XDP passes the
//! request and `lb_tc_ingress` answers it, with the same code, by
//! redirecting the rewritten skb to the uplink's egress.

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action::XDP_TX},
    helpers::{bpf_ktime_get_ns, bpf_redirect},
    programs::{TcContext, XdpContext},
};
use lb_common::{AgentState, Counter, L2VipKey};

use crate::maps::{AGENT_STATE, L2_VIPS};
use crate::packet::{ETH_HLEN, OFF_ETH_DST, OFF_ETH_SRC, OFF_ETH_TYPE, read, write};
use crate::stats::count;
use crate::transmit::finished_by_tc;

pub const ETH_P_ARP_BE: u16 = 0x0806u16.to_be();

/// An Ethernet frame holding an IPv4-over-Ethernet ARP packet.
pub const ARP_FRAME_LEN: usize = ETH_HLEN + 28;

const OFF_ARP_HEADER: usize = ETH_HLEN;
const OFF_ARP_OPER: usize = ETH_HLEN + 6;
const OFF_ARP_SHA: usize = ETH_HLEN + 8;
const OFF_ARP_SPA: usize = ETH_HLEN + 14;
const OFF_ARP_THA: usize = ETH_HLEN + 18;
const OFF_ARP_TPA: usize = ETH_HLEN + 24;

/// htype 1 (Ethernet), ptype 0x0800 (IPv4), hlen 6, plen 4, as they lie
/// in the packet.
const ARP_IPV4_ETHERNET: [u8; 6] = [0, 1, 8, 0, 6, 4];
const ARP_REQUEST_BE: u16 = 1u16.to_be();
const ARP_REPLY_BE: u16 = 2u16.to_be();

/// Whether the frame's ethertype is ARP.
#[inline(always)]
pub fn is_arp(data: usize, data_end: usize) -> bool {
    // SAFETY: the ethertype is read only after the bound check.
    data + ETH_HLEN <= data_end && unsafe { read::<u16>(data, OFF_ETH_TYPE) } == ETH_P_ARP_BE
}

/// `lb_xdp`: answers an ARP request with `XDP_TX`; `None` leaves the frame
/// to the stack (or, on uplinks TC finishes, to [`respond_tc`]).
#[inline(always)]
pub fn respond_xdp(ctx: &XdpContext) -> Option<u32> {
    let ifindex = ctx.ingress_ifindex() as u32;
    if finished_by_tc(ifindex) {
        return None;
    }
    reply_in_place(ctx.data(), ctx.data_end(), ifindex).then_some(XDP_TX)
}

/// `lb_tc_ingress`: answers an ARP request by redirecting the rewritten
/// frame to the egress of the uplink it came in on.
#[inline(always)]
pub fn respond_tc(ctx: &TcContext) -> i32 {
    if !is_arp(ctx.data(), ctx.data_end()) {
        return TC_ACT_OK;
    }
    if ctx.data() + ARP_FRAME_LEN > ctx.data_end() {
        if (ctx.len() as usize) < ARP_FRAME_LEN || ctx.pull_data(ARP_FRAME_LEN as u32).is_err() {
            return TC_ACT_OK;
        }
    }
    // SAFETY: reading a field of the program's own context.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if !reply_in_place(ctx.data(), ctx.data_end(), ifindex) {
        return TC_ACT_OK;
    }
    // SAFETY: plain helper call; it returns TC_ACT_REDIRECT.
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}

/// Rewrites an ARP request for an address announced on `ifindex` into the
/// reply (RFC 826): sent to the asker, from the uplink's address, saying
/// the address is at the uplink's address. `false`: not ours, untouched.
#[inline(always)]
fn reply_in_place(data: usize, data_end: usize, ifindex: u32) -> bool {
    if data + ARP_FRAME_LEN > data_end {
        return false;
    }
    // SAFETY (all reads and writes below): offsets < ARP_FRAME_LEN, checked above.
    let header: [u8; 6] = unsafe { read(data, OFF_ARP_HEADER) };
    let oper: u16 = unsafe { read(data, OFF_ARP_OPER) };
    if header != ARP_IPV4_ETHERNET || oper != ARP_REQUEST_BE {
        return false;
    }
    let (sender_ip, target_ip): (u32, u32) = unsafe { (read(data, OFF_ARP_SPA), read(data, OFF_ARP_TPA)) };
    if sender_ip == target_ip {
        // Gratuitous ARP: another host announcing the address, no question.
        return false;
    }
    // SAFETY: the value is copied out at once.
    let Some(vip) = (unsafe { L2_VIPS.get(&L2VipKey { ifindex, addr: target_ip }) }).copied() else {
        return false;
    };
    if !agent_alive() {
        count(Counter::ArpAgentStale);
        return false;
    }
    let asker: [u8; 6] = unsafe { read(data, OFF_ARP_SHA) };
    unsafe {
        write(data, OFF_ETH_DST, asker);
        write(data, OFF_ETH_SRC, vip.mac);
        write(data, OFF_ARP_OPER, ARP_REPLY_BE);
        write(data, OFF_ARP_SHA, vip.mac);
        write(data, OFF_ARP_SPA, target_ip);
        write(data, OFF_ARP_THA, asker);
        write(data, OFF_ARP_TPA, sender_ip);
    }
    count(Counter::ArpReply);
    true
}

/// Whether the agent's heartbeat is younger than its lease.
#[inline(always)]
fn agent_alive() -> bool {
    let (Some(beat), Some(lease)) =
        (AGENT_STATE.get(AgentState::HeartbeatNs as u32), AGENT_STATE.get(AgentState::HeartbeatLeaseNs as u32))
    else {
        return false;
    };
    let (beat, lease) = (*beat, *lease);
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    beat != 0 && now.saturating_sub(beat) <= lease
}
