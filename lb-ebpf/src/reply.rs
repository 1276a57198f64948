//! Replies from backends on other nodes to masqueraded flows arrive at the
//! uplink addressed to (node address, masquerade port): reverse NAT them to
//! (frontend → client) and send them back where the client's packets came
//! from.

use aya_ebpf::{bindings::xdp_action::XDP_PASS, helpers::bpf_ktime_get_ns, programs::XdpContext};
use lb_common::{Counter, FLOW_REPLY, FLOW_SNAT};

use crate::conntrack::{expired, key_of, touch};
use crate::maps::{CONNTRACK, config};
use crate::nat::{Endpoints, rewrite, set_macs};
use crate::packet::Headers;
use crate::stats::{count, service_tx};
use crate::transmit::{through_tc, transmit};

#[inline(always)]
pub fn handle(ctx: &XdpContext, h: &Headers) -> Result<u32, ()> {
    let cfg = config().ok_or(())?;
    let port = u16::from_be(h.dst_port);
    if port < cfg.snat_port_min || port > cfg.snat_port_max {
        count(Counter::PassNotService);
        return Ok(XDP_PASS);
    }
    let Some(flow) = CONNTRACK.get_ptr_mut(&key_of(h)) else {
        count(Counter::PassNotService);
        return Ok(XDP_PASS);
    };
    // SAFETY: map value copied for reading.
    let current = unsafe { *flow };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if current.direction != FLOW_REPLY
        || current.flags & FLOW_SNAT == 0
        || expired(&current, h.protocol, now, cfg)
        || h.ttl <= 1
    {
        count(Counter::PassNotService);
        return Ok(XDP_PASS);
    }
    touch(flow, now, h.is_closing());
    count(Counter::FlowHit);
    service_tx(current.service_id, h.len);
    let to = Endpoints {
        src_addr: current.new_src_addr,
        dst_addr: current.new_dst_addr,
        src_port: current.new_src_port,
        dst_port: current.new_dst_port,
    };
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let tc = rewrite(data, data_end, h, &to, true, through_tc(ctx, current.ifindex))?;
    set_macs(data, data_end, current.reply_src_mac, current.reply_dst_mac)?;
    Ok(transmit(ctx, current.ifindex, tc))
}
