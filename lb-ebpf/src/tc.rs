//! TC egress on the uplinks: replies from backends on this node leave
//! towards the client with the pod's address; give them the frontend's.
//! (Flows to local backends are not masqueraded, so the kernel routes the
//! pod's replies straight out of the uplink, past this hook.)

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK},
    helpers::bpf_ktime_get_ns,
    programs::TcContext,
};
use lb_common::{Counter, FLOW_LOCAL, FLOW_REPLY, PROTO_TCP};

use crate::conntrack::{expired, key_of, touch};
use crate::maps::{CONNTRACK, config};
use crate::packet::{
    Headers, L4_OFF, OFF_IP_CHECK, OFF_IP_SADDR, OFF_L4_SPORT, OFF_TCP_CHECK, OFF_UDP_CHECK, TCP_HLEN, parse,
};
use crate::stats::{count, service_tx};

/// The packet's headers. Only when they are not all in the skb's linear
/// area is it pulled: `bpf_skb_pull_data` also makes the skb writable, which
/// copies the head of cloned skbs (every TCP segment the node sends), and
/// that cost must not fall on traffic that is not ours.
#[inline(always)]
fn headers(ctx: &TcContext) -> Option<Headers> {
    let len = ctx.len() as usize;
    match parse(ctx.data(), ctx.data_end(), len) {
        Ok(h) => Some(h),
        Err(Counter::PassTruncated)
            if ctx.data_end() - ctx.data() < L4_OFF + TCP_HLEN && len > ctx.data_end() - ctx.data() =>
        {
            let want = if len < L4_OFF + TCP_HLEN { len } else { L4_OFF + TCP_HLEN };
            ctx.pull_data(want as u32).ok()?;
            parse(ctx.data(), ctx.data_end(), len).ok()
        }
        Err(_) => None,
    }
}

#[inline(always)]
pub fn handle_egress(ctx: &TcContext) -> Result<i32, i32> {
    let Some(h) = headers(ctx) else {
        return Ok(TC_ACT_OK);
    };
    let Some(flow) = CONNTRACK.get_ptr_mut(&key_of(&h)) else {
        return Ok(TC_ACT_OK);
    };
    // SAFETY: map value copied for reading.
    let current = unsafe { *flow };
    let cfg = config().ok_or(TC_ACT_OK)?;
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if current.direction != FLOW_REPLY || current.flags & FLOW_LOCAL == 0 || expired(&current, h.protocol, now, cfg) {
        return Ok(TC_ACT_OK);
    }
    touch(flow, now, h.is_closing());
    let (check_off, mangled_0) =
        if h.protocol == PROTO_TCP { (OFF_TCP_CHECK, 0) } else { (OFF_UDP_CHECK, BPF_F_MARK_MANGLED_0 as u64) };
    let pseudo = BPF_F_PSEUDO_HDR as u64;
    ctx.l4_csum_replace(check_off, h.src_addr as u64, current.new_src_addr as u64, pseudo | mangled_0 | 4)
        .map_err(|_| TC_ACT_OK)?;
    ctx.l4_csum_replace(check_off, h.src_port as u64, current.new_src_port as u64, mangled_0 | 2)
        .map_err(|_| TC_ACT_OK)?;
    ctx.l3_csum_replace(OFF_IP_CHECK, h.src_addr as u64, current.new_src_addr as u64, 4).map_err(|_| TC_ACT_OK)?;
    ctx.store(OFF_IP_SADDR, &current.new_src_addr, 0).map_err(|_| TC_ACT_OK)?;
    ctx.store(OFF_L4_SPORT, &current.new_src_port, 0).map_err(|_| TC_ACT_OK)?;
    service_tx(current.service_id, h.len);
    count(Counter::TcReplyNat);
    Ok(TC_ACT_OK)
}
