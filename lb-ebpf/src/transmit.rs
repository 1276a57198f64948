//! Sending a translated frame on: straight from XDP (`XDP_TX` back out of
//! the port it came in on, `bpf_redirect` to another uplink), or — for
//! uplinks whose driver cannot be relied on to send XDP frames by itself —
//! through the TC ingress hook of the port it came in on.
//!
//! A veth hands `XDP_TX` and redirected frames to its peer's XDP receive
//! path, which exists only while the peer runs an XDP program of its own
//! (with GRO alone it holds them until other traffic arrives); the agent
//! does not own the peer (the far side of a kind or VM uplink), so such
//! uplinks carry [`INTERFACE_TC_TRANSMIT`]. For them XDP leaves a
//! [`Handoff`] in the frame's metadata and passes the frame; the kernel
//! builds the skb, and `lb_tc_ingress` redirects it to the egress queue of
//! the interface named in the note — an ordinary skb transmit, which every
//! driver supports — and wipes the note. The frame is already translated (addresses, ports, TTL,
//! MACs): the kernel's IP layer and netfilter never see it.

use aya_ebpf::{
    bindings::{
        TC_ACT_OK,
        xdp_action::{XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
    },
    helpers::{bpf_redirect, bpf_xdp_adjust_meta},
    programs::{TcContext, XdpContext},
};
use lb_common::{Counter, HANDOFF_MAGIC, Handoff, INTERFACE_TC_TRANSMIT};

use crate::maps::INTERFACES;
use crate::stats::count;

const HANDOFF_LEN: usize = core::mem::size_of::<Handoff>();

/// Sends the (translated) frame out of `ifindex`.
#[inline(always)]
pub fn transmit(ctx: &XdpContext, ifindex: u32) -> u32 {
    if needs_handoff(ifindex) {
        return hand_off(ctx, ifindex);
    }
    if ifindex == ctx.ingress_ifindex() as u32 {
        count(Counter::Tx);
        XDP_TX
    } else {
        count(Counter::Redirect);
        // SAFETY: plain helper call.
        let ret = unsafe { bpf_redirect(ifindex, 0) };
        if ret as u32 == XDP_REDIRECT { XDP_REDIRECT } else { XDP_DROP }
    }
}

#[inline(always)]
fn needs_handoff(ifindex: u32) -> bool {
    // SAFETY: read-only look at a map value.
    unsafe { INTERFACES.get(&ifindex) }.is_some_and(|iface| iface.flags & INTERFACE_TC_TRANSMIT != 0)
}

/// Leaves the note for `lb_tc_ingress` and passes the frame.
#[inline(always)]
fn hand_off(ctx: &XdpContext, ifindex: u32) -> u32 {
    // SAFETY: helper on our own context.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(HANDOFF_LEN as i32)) } != 0 {
        // The frame is already rewritten for the next hop: the kernel
        // would not take it as its own.
        count(Counter::DropHandoff);
        return XDP_DROP;
    }
    let (meta, data) = (ctx.metadata(), ctx.data());
    if meta + HANDOFF_LEN > data {
        count(Counter::DropHandoff);
        return XDP_DROP;
    }
    // SAFETY: the metadata area holds HANDOFF_LEN bytes, checked above.
    unsafe { (meta as *mut Handoff).write_unaligned(Handoff { magic: HANDOFF_MAGIC, ifindex }) };
    count(Counter::TxHandoff);
    XDP_PASS
}

/// `lb_tc_ingress`: redirects frames that XDP handed over; everything else
/// goes on into the stack untouched.
#[inline(always)]
pub fn handle_ingress(ctx: &TcContext) -> i32 {
    // SAFETY: reading fields of the program's own context.
    let (meta, data) = unsafe { ((*ctx.skb.skb).data_meta as usize, (*ctx.skb.skb).data as usize) };
    if meta + HANDOFF_LEN > data {
        return TC_ACT_OK;
    }
    // SAFETY: the metadata area holds HANDOFF_LEN bytes, checked above.
    let note = unsafe { (meta as *const Handoff).read_unaligned() };
    if note.magic != HANDOFF_MAGIC {
        return TC_ACT_OK;
    }
    // The note is used up. An skb keeps its metadata length when a veth
    // passes it to the peer, and a driver that reuses the skb (as a veth
    // running XDP does) leaves the old bytes where the next TC ingress
    // hook reads its metadata: a note left standing would send the frame
    // out again at the next node.
    // SAFETY: as above; the verifier lets TC programs write metadata.
    unsafe { (meta as *mut Handoff).write_unaligned(Handoff::default()) };
    count(Counter::TcRedirect);
    // SAFETY: plain helper call; it returns TC_ACT_REDIRECT, or TC_ACT_SHOT
    // for a bad flag.
    unsafe { bpf_redirect(note.ifindex, 0) as i32 }
}
