//! Finishing a translated frame: straight from XDP (`XDP_TX` back out of
//! the port it came in on, `bpf_redirect` to another uplink, `XDP_PASS`
//! into the stack), or — on uplinks flagged [`INTERFACE_TC_TRANSMIT`] —
//! through the TC ingress hook of the port it came in on.
//!
//! A veth hands `XDP_TX` and redirected frames to its peer's XDP receive
//! path, which exists only while the peer runs an XDP program of its own
//! (with GRO alone it holds them until other traffic arrives), and it
//! passes on the sender's partial checksums, which XDP cannot see. The
//! agent owns neither the peer nor the sender (the far side of a kind or VM
//! uplink), so on such uplinks XDP leaves a [`Handoff`] in the frame's
//! metadata and passes the frame; the kernel builds the skb, and
//! `lb_tc_ingress` wipes the note, applies the L4 checksum change with the
//! helpers that know the skb's checksum state, and redirects the skb to the
//! egress of the interface named in the note — an ordinary skb transmit,
//! which every driver supports — or lets it into the stack. The frame never
//! reaches the IP layer or netfilter on the way out.

use aya_ebpf::{
    bindings::{
        BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT,
        xdp_action::{XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
    },
    helpers::{bpf_redirect, bpf_xdp_adjust_meta},
    programs::{TcContext, XdpContext},
};
use lb_common::{Counter, HANDOFF_MAGIC, Handoff, INTERFACE_TC_TRANSMIT};

use crate::maps::INTERFACES;
use crate::nat::L4Fix;
use crate::stats::count;

const HANDOFF_LEN: usize = core::mem::size_of::<Handoff>();

/// Whether a frame that arrived on this context's port and leaves through
/// `egress` (0: into the stack) is finished by TC: either end is flagged.
/// One map lookup when it leaves where it came in (`XDP_TX`, the common
/// case), two only for a redirect to another uplink.
#[inline(always)]
pub fn through_tc(ctx: &XdpContext, egress: u32) -> bool {
    let ingress = ctx.ingress_ifindex() as u32;
    flagged(ingress) || (egress != 0 && egress != ingress && flagged(egress))
}

#[inline(always)]
fn flagged(ifindex: u32) -> bool {
    // SAFETY: read-only look at a map value.
    unsafe { INTERFACES.get(&ifindex) }.is_some_and(|iface| iface.flags & INTERFACE_TC_TRANSMIT != 0)
}

/// Sends the translated frame out of `egress`; `tc` is what
/// [`crate::nat::rewrite`] left to TC (`Some` exactly when
/// [`through_tc`]).
#[inline(always)]
pub fn transmit(ctx: &XdpContext, egress: u32, tc: Option<L4Fix>) -> u32 {
    if let Some(fix) = tc {
        return hand_off(ctx, egress, &fix);
    }
    if egress == ctx.ingress_ifindex() as u32 {
        count(Counter::Tx);
        XDP_TX
    } else {
        count(Counter::Redirect);
        // SAFETY: plain helper call.
        let ret = unsafe { bpf_redirect(egress, 0) };
        if ret as u32 == XDP_REDIRECT { XDP_REDIRECT } else { XDP_DROP }
    }
}

/// Lets the translated frame into this node's stack.
#[inline(always)]
pub fn pass(ctx: &XdpContext, tc: Option<L4Fix>) -> u32 {
    match tc {
        Some(fix) => hand_off(ctx, 0, &fix),
        None => XDP_PASS,
    }
}

/// Leaves the note for `lb_tc_ingress` and passes the frame.
#[inline(always)]
fn hand_off(ctx: &XdpContext, ifindex: u32, fix: &L4Fix) -> u32 {
    // SAFETY: helper on our own context.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(HANDOFF_LEN as i32)) } != 0 {
        // The frame is already rewritten: neither the stack nor a
        // receiver would take it as it is.
        count(Counter::DropHandoff);
        return XDP_DROP;
    }
    let (meta, data) = (ctx.metadata(), ctx.data());
    if meta + HANDOFF_LEN > data {
        count(Counter::DropHandoff);
        return XDP_DROP;
    }
    let note = Handoff {
        magic: HANDOFF_MAGIC,
        ifindex,
        l4_pseudo_diff: fix.pseudo_diff,
        l4_ports_diff: fix.ports_diff,
        l4_check_off: fix.check_off,
        udp: fix.udp as u8,
        _pad: 0,
    };
    // SAFETY: the metadata area holds HANDOFF_LEN bytes, checked above.
    unsafe { (meta as *mut Handoff).write_unaligned(note) };
    count(Counter::XdpHandoff);
    XDP_PASS
}

/// `lb_tc_ingress`: finishes frames that XDP handed over; everything else
/// goes on into the stack untouched.
#[inline(always)]
pub fn handle_ingress(ctx: &TcContext) -> i32 {
    // SAFETY: reading fields of the program's own context.
    let (meta, data, gso_segs) =
        unsafe { ((*ctx.skb.skb).data_meta as usize, (*ctx.skb.skb).data as usize, (*ctx.skb.skb).gso_segs) };
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
    // out again at the next node. (Written before any helper call, which
    // may move the packet.)
    // SAFETY: as above; the verifier lets TC programs write metadata.
    unsafe { (meta as *mut Handoff).write_unaligned(Handoff::default()) };
    // GRO merged several frames of one flow into this skb and wrote their
    // TCP checksum anew from the translated addresses: nothing to fix.
    if note.l4_check_off != 0 && gso_segs <= 1 && fix_l4_checksum(ctx, &note).is_err() {
        count(Counter::DropHandoff);
        return TC_ACT_SHOT;
    }
    count(Counter::TcHandoff);
    if note.ifindex == 0 {
        return TC_ACT_OK;
    }
    // SAFETY: plain helper call; it returns TC_ACT_REDIRECT.
    unsafe { bpf_redirect(note.ifindex, 0) as i32 }
}

/// Applies the note's L4 checksum change: to a complete checksum the
/// addresses and the ports, to a partial one (a pseudo-header sum) the
/// addresses only — the kernel's helper knows which the skb has.
#[inline(always)]
fn fix_l4_checksum(ctx: &TcContext, note: &Handoff) -> Result<(), i64> {
    let offset = note.l4_check_off as usize;
    let zero_is_none = if note.udp != 0 { BPF_F_MARK_MANGLED_0 as u64 } else { 0 };
    // Size 0: `to` is a difference, not a value.
    ctx.l4_csum_replace(offset, 0, note.l4_pseudo_diff as u64, BPF_F_PSEUDO_HDR as u64 | zero_is_none)?;
    ctx.l4_csum_replace(offset, 0, note.l4_ports_diff as u64, zero_is_none)
}
