//! A new flow to a service without backends is answered the way kube-proxy
//! answers it (iptables `REJECT`, for TCP and UDP alike): ICMP destination
//! unreachable, code port unreachable, from the frontend address. Rate
//! limited per CPU like the kernel's own ICMP errors.

use aya_ebpf::{
    bindings::xdp_action::XDP_DROP,
    helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use lb_common::{Counter, PROTO_ICMP};

use crate::csum::fold;
use crate::nat::L4Fix;
use crate::packet::{ETH_HLEN, IP_HLEN, OFF_IP_DADDR, OFF_IP_SADDR, read, write};
use crate::stats::count;
use crate::transmit::{through_tc, transmit};

/// New IPv4 header + ICMP header put in front of the original packet.
const GROW: usize = IP_HLEN + ICMP_HLEN;
const ICMP_HLEN: usize = 8;
/// ICMP payload: the original IPv4 header and the first 8 bytes of L4.
const QUOTED: usize = IP_HLEN + 8;
const FRAME_LEN: usize = ETH_HLEN + IP_HLEN + ICMP_HLEN + QUOTED;
const ICMP_OFF: usize = ETH_HLEN + IP_HLEN;

const REJECTS_PER_SECOND_PER_CPU: u64 = 1000;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RejectBudget {
    second: u64,
    sent: u64,
}

#[map]
static REJECT_BUDGET: PerCpuArray<RejectBudget> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn within_budget() -> bool {
    let Some(budget) = REJECT_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU slot; helper without arguments.
    unsafe {
        let second = bpf_ktime_get_ns() / 1_000_000_000;
        if (*budget).second != second {
            (*budget).second = second;
            (*budget).sent = 0;
        }
        (*budget).sent += 1;
        (*budget).sent <= REJECTS_PER_SECOND_PER_CPU
    }
}

/// Turns the frame in place into the ICMP error and sends it back out of
/// the port it came in on.
/// Callers have parsed an untruncated IPv4 TCP/UDP packet (≥ 8 L4 bytes).
#[inline(always)]
pub fn port_unreachable(ctx: &XdpContext) -> u32 {
    if !within_budget() {
        count(Counter::DropRejectRateLimited);
        return XDP_DROP;
    }
    // SAFETY: helper on our own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(GROW as i32)) } != 0 {
        return XDP_DROP;
    }
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + FRAME_LEN > data_end {
        return XDP_DROP;
    }
    // The original frame now starts at GROW: its IPv4 header and first L4
    // bytes already sit where the ICMP payload goes.
    // SAFETY: offsets below FRAME_LEN, checked above.
    let (orig_dst_mac, orig_src_mac, orig_saddr, orig_daddr): ([u8; 6], [u8; 6], u32, u32) = unsafe {
        (read(data, GROW), read(data, GROW + 6), read(data, GROW + OFF_IP_SADDR), read(data, GROW + OFF_IP_DADDR))
    };
    let excess = (data_end - data) as i32 - FRAME_LEN as i32;
    // SAFETY: helper on our own context.
    if excess > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -excess) } != 0 {
        return XDP_DROP;
    }
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + FRAME_LEN > data_end {
        return XDP_DROP;
    }
    // SAFETY: all writes below FRAME_LEN, checked above.
    unsafe {
        write(data, 0, orig_src_mac);
        write(data, 6, orig_dst_mac);
        write(data, 12, 0x0800u16.to_be());
        write(data, ETH_HLEN, 0x45u8);
        write(data, ETH_HLEN + 1, 0u8);
        write(data, ETH_HLEN + 2, ((IP_HLEN + ICMP_HLEN + QUOTED) as u16).to_be());
        write(data, ETH_HLEN + 4, 0u16); // identification
        write(data, ETH_HLEN + 6, 0x4000u16.to_be()); // don't fragment
        write(data, ETH_HLEN + 8, 64u8);
        write(data, ETH_HLEN + 9, PROTO_ICMP);
        write(data, ETH_HLEN + 10, 0u16);
        write(data, ETH_HLEN + 12, orig_daddr);
        write(data, ETH_HLEN + 16, orig_saddr);
        write(data, ICMP_OFF, 3u8); // destination unreachable
        write(data, ICMP_OFF + 1, 3u8); // port unreachable
        write(data, ICMP_OFF + 2, 0u16);
        write(data, ICMP_OFF + 4, 0u32);
        let ip_check = !fold(sum_words::<{ IP_HLEN / 2 }>(data + ETH_HLEN));
        write(data, ETH_HLEN + 10, ip_check);
        let icmp_check = !fold(sum_words::<{ (ICMP_HLEN + QUOTED) / 2 }>(data + ICMP_OFF));
        write(data, ICMP_OFF + 2, icmp_check);
    }
    count(Counter::RejectNoBackend);
    debug!(ctx, "service without backends: answered ICMP port unreachable");
    let back = ctx.ingress_ifindex() as u32;
    transmit(ctx, back, through_tc(ctx, back).then_some(L4Fix::NONE))
}

/// Sum of `N` 16-bit words starting at `start`.
///
/// # Safety
/// `start .. start + 2N` must be inside the packet.
#[inline(always)]
unsafe fn sum_words<const N: usize>(start: usize) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < N {
        sum += unsafe { read::<u16>(start, 2 * i) } as u64;
        i += 1;
    }
    sum
}
