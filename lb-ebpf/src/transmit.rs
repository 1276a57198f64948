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
//!
//! Some kernels' verifiers refuse `bpf_xdp_adjust_meta` to XDP programs.
//! There the agent loads the programs with `HANDOFF_IN_METADATA` zero, and
//! the note goes in the `HANDOFFS` map instead, under the translated
//! frame's addresses and ports, with the reserved IPv4 flag set on the
//! frame to say it has one; `lb_tc_ingress` looks only at marked frames and
//! clears the flag. The notes of one flow direction are all the same, so
//! they stay (one entry per flow, the LRU drops old ones). A frame that
//! arrives already carrying the flag is dropped by `lb_xdp` on such uplinks
//! ([`forged_mark`]): TC could not tell it from a marked one.

use aya_ebpf::{
    bindings::{
        BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT,
        xdp_action::{XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
    },
    helpers::{bpf_redirect, bpf_xdp_adjust_meta},
    programs::{TcContext, XdpContext},
};
use lb_common::{Counter, FlowKey, HANDOFF_MAGIC, Handoff, INTERFACE_TC_TRANSMIT, IP_FLAG_HANDED_OFF_BE};

use crate::csum::replace16;
use crate::maps::{HANDOFFS, INTERFACES};
use crate::nat::L4Fix;
use crate::packet::{
    ETH_P_IPV4_BE, L4_OFF, OFF_ETH_TYPE, OFF_IP_CHECK, OFF_IP_DADDR, OFF_IP_FRAG, OFF_IP_PROTO, OFF_IP_SADDR,
    OFF_L4_DPORT, OFF_L4_SPORT, read, write,
};
use crate::stats::count;
use lb_common::{PROTO_TCP, PROTO_UDP};

const HANDOFF_LEN: usize = core::mem::size_of::<Handoff>();

/// Where notes go (`lb_common::GLOBAL_HANDOFF_IN_METADATA`): set by the
/// agent at load time, a constant to the verifier.
#[unsafe(no_mangle)]
static HANDOFF_IN_METADATA: u8 = 1;

#[inline(always)]
pub fn in_metadata() -> bool {
    // SAFETY: a read of our own global (volatile: its value comes at load).
    unsafe { core::ptr::read_volatile(&HANDOFF_IN_METADATA) != 0 }
}

/// Whether a frame that arrived on this context's port and leaves through
/// `egress` (0: into the stack) is finished by TC: either end is flagged.
/// One map lookup when it leaves where it came in (`XDP_TX`, the common
/// case), two only for a redirect to another uplink.
#[inline(always)]
pub fn through_tc(ctx: &XdpContext, egress: u32) -> bool {
    let ingress = ctx.ingress_ifindex() as u32;
    flagged(ingress) || (egress != 0 && egress != ingress && flagged(egress))
}

/// Whether the frame arrived already carrying the hand-off mark on an
/// uplink where the mark means a note in `HANDOFFS` (notes not in the
/// metadata, frames finished by TC). RFC 791 says the bit must be zero;
/// such a frame cannot be told from one lb marked, and TC would finish it
/// with another flow's note, so it is dropped. One load on the fast path:
/// the uplink is looked up only for frames with the bit set.
#[inline(always)]
pub fn forged_mark(ctx: &XdpContext) -> bool {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if in_metadata() || data + OFF_IP_FRAG + 2 > data_end {
        return false;
    }
    // SAFETY: the ethertype and the flags word are within the bound checked above.
    let (ethertype, flags): (u16, u16) = unsafe { (read(data, OFF_ETH_TYPE), read(data, OFF_IP_FRAG)) };
    ethertype == ETH_P_IPV4_BE && flags & IP_FLAG_HANDED_OFF_BE != 0 && flagged(ctx.ingress_ifindex() as u32)
}

/// Whether frames of this uplink are finished by TC
/// ([`INTERFACE_TC_TRANSMIT`]).
#[inline(always)]
pub fn finished_by_tc(ifindex: u32) -> bool {
    flagged(ifindex)
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
    let note = Handoff {
        magic: HANDOFF_MAGIC,
        ifindex,
        l4_pseudo_diff: fix.pseudo_diff,
        l4_ports_diff: fix.ports_diff,
        l4_check_off: fix.check_off,
        udp: fix.udp as u8,
        _pad: 0,
    };
    let verdict = if in_metadata() { note_in_metadata(ctx, &note) } else { note_in_map(ctx, &note) };
    if verdict == XDP_PASS {
        count(Counter::XdpHandoff);
    } else {
        // The frame is already rewritten: neither the stack nor a
        // receiver would take it as it is.
        count(Counter::DropHandoff);
    }
    verdict
}

#[inline(always)]
fn note_in_metadata(ctx: &XdpContext, note: &Handoff) -> u32 {
    // SAFETY: helper on our own context.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(HANDOFF_LEN as i32)) } != 0 {
        return XDP_DROP;
    }
    let (meta, data) = (ctx.metadata(), ctx.data());
    if meta + HANDOFF_LEN > data {
        return XDP_DROP;
    }
    // SAFETY: the metadata area holds HANDOFF_LEN bytes, checked above.
    unsafe { (meta as *mut Handoff).write_unaligned(*note) };
    XDP_PASS
}

/// The note in `HANDOFFS` (written only when the flow's differs), the
/// frame marked.
#[inline(always)]
fn note_in_map(ctx: &XdpContext, note: &Handoff) -> u32 {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + L4_OFF + 4 > data_end {
        return XDP_DROP;
    }
    // SAFETY: the IPv4 header and the first 4 L4 bytes, checked above.
    let key = unsafe { handoff_key(data) };
    unsafe {
        let flags: u16 = read(data, OFF_IP_FRAG);
        let marked = flags | IP_FLAG_HANDED_OFF_BE;
        write(data, OFF_IP_CHECK, replace16(read(data, OFF_IP_CHECK), flags, marked));
        write(data, OFF_IP_FRAG, marked);
    }
    // SAFETY: a copy of the value is compared, nothing kept.
    if unsafe { HANDOFFS.get(&key) } == Some(note) {
        return XDP_PASS;
    }
    match HANDOFFS.insert(&key, note, 0) {
        Ok(()) => XDP_PASS,
        Err(_) => XDP_DROP,
    }
}

/// The key of a translated frame's note.
///
/// # Safety
/// `data .. data + L4_OFF + 4` must be inside the packet.
#[inline(always)]
unsafe fn handoff_key(data: usize) -> FlowKey {
    unsafe {
        let protocol: u8 = read(data, OFF_IP_PROTO);
        let ports = protocol == PROTO_TCP || protocol == PROTO_UDP;
        FlowKey {
            src_addr: read(data, OFF_IP_SADDR),
            dst_addr: read(data, OFF_IP_DADDR),
            src_port: if ports { read(data, OFF_L4_SPORT) } else { 0 },
            dst_port: if ports { read(data, OFF_L4_DPORT) } else { 0 },
            protocol,
            _pad: [0; 3],
        }
    }
}

/// `lb_tc_ingress`: finishes frames that XDP handed over, and answers the
/// ARP requests XDP left to it (`arp.rs`); everything else goes on into
/// the stack untouched.
#[inline(always)]
pub fn handle_ingress(ctx: &TcContext) -> i32 {
    let note = if in_metadata() { take_metadata_note(ctx) } else { take_map_note(ctx) };
    let Some(note) = note else {
        return crate::arp::respond_tc(ctx);
    };
    // SAFETY: reading a field of the program's own context.
    let gso_segs = unsafe { (*ctx.skb.skb).gso_segs };
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

/// The note XDP left in the skb's metadata, wiped.
#[inline(always)]
fn take_metadata_note(ctx: &TcContext) -> Option<Handoff> {
    // SAFETY: reading fields of the program's own context.
    let (meta, data) = unsafe { ((*ctx.skb.skb).data_meta as usize, (*ctx.skb.skb).data as usize) };
    if meta + HANDOFF_LEN > data {
        return None;
    }
    // SAFETY: the metadata area holds HANDOFF_LEN bytes, checked above.
    let note = unsafe { (meta as *const Handoff).read_unaligned() };
    if note.magic != HANDOFF_MAGIC {
        return None;
    }
    // The note is used up. An skb keeps its metadata length when a veth
    // passes it to the peer, and a driver that reuses the skb (as a veth
    // running XDP does) leaves the old bytes where the next TC ingress
    // hook reads its metadata: a note left standing would send the frame
    // out again at the next node. (Written before any helper call, which
    // may move the packet.)
    // SAFETY: as above; the verifier lets TC programs write metadata.
    unsafe { (meta as *mut Handoff).write_unaligned(Handoff::default()) };
    Some(note)
}

/// The note in `HANDOFFS` of a frame XDP marked, the mark cleared. (The
/// frames XDP passes are linear: their headers are in the skb's head.)
#[inline(always)]
fn take_map_note(ctx: &TcContext) -> Option<Handoff> {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + L4_OFF + 4 > data_end {
        return None;
    }
    // SAFETY (reads): the IPv4 header and the first 4 L4 bytes, checked above.
    let flags: u16 = unsafe { read(data, OFF_IP_FRAG) };
    if unsafe { read::<u16>(data, OFF_ETH_TYPE) } != ETH_P_IPV4_BE || flags & IP_FLAG_HANDED_OFF_BE == 0 {
        return None;
    }
    let key = unsafe { handoff_key(data) };
    // SAFETY: the value is copied out.
    let note = *unsafe { HANDOFFS.get(&key) }?;
    let cleared = flags & !IP_FLAG_HANDED_OFF_BE;
    ctx.l3_csum_replace(OFF_IP_CHECK, flags as u64, cleared as u64, 2).ok()?;
    ctx.store(OFF_IP_FRAG, &cleared, 0).ok()?;
    Some(note)
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
