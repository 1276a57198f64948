//! The XDP entry: client → frontend packets (new and established flows);
//! everything else goes to [`crate::reply`].

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::bpf_ktime_get_ns,
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use lb_common::{
    Config, Counter, FLOW_FORWARD, FLOW_LOCAL, FLOW_REPLY, FLOW_SNAT, FRONTEND_SNAT, Flow, FlowKey, Frontend,
    FrontendKey, SCOPE_XDP, SERVICE_DROP_WHEN_EMPTY, flow_hash::flow_hash,
};

use crate::conntrack::{claim_snat_port, expired, key_of, touch};
use crate::maps::{BACKENDS, CONNTRACK, FRONTENDS, INTERFACES, SERVICES, config};
use crate::nat::{Endpoints, rewrite, set_macs};
use crate::packet::{Headers, OFF_ETH_DST, OFF_ETH_SRC, parse, read};
use crate::route::{Route, lookup};
use crate::select::{Client, pick};
use crate::stats::{count, service_rx};
use crate::transmit::{forged_mark, pass, through_tc, transmit};
use crate::{arp, reject, reply};

#[inline(always)]
pub fn handle(ctx: &XdpContext) -> Result<u32, ()> {
    if forged_mark(ctx) {
        count(Counter::DropForgedMark);
        return Ok(XDP_DROP);
    }
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let h = match parse(data, data_end, data_end - data) {
        Ok(h) => h,
        Err(reason) => {
            if reason == Counter::PassNotIpv4 && arp::is_arp(data, data_end) {
                if let Some(verdict) = arp::respond_xdp(ctx) {
                    return Ok(verdict);
                }
            }
            count(reason);
            return Ok(XDP_PASS);
        }
    };
    let frontend = FrontendKey { addr: h.dst_addr, port: h.dst_port, protocol: h.protocol, scope: SCOPE_XDP };
    // SAFETY: the value is copied out at once.
    match unsafe { FRONTENDS.get(&frontend) } {
        Some(fe) => {
            let fe = *fe;
            to_service(ctx, &h, &fe)
        }
        None => reply::handle(ctx, &h),
    }
}

#[inline(always)]
fn to_service(ctx: &XdpContext, h: &Headers, fe: &Frontend) -> Result<u32, ()> {
    let cfg = config().ok_or(())?;
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = key_of(h);
    service_rx(fe.service_id, h.len);
    if let Some(flow) = CONNTRACK.get_ptr_mut(&key) {
        // SAFETY: map value pointer; copied for reading.
        let current = unsafe { *flow };
        if current.direction == FLOW_FORWARD && !expired(&current, h.protocol, now, cfg) {
            // SAFETY: read-only look at a map value.
            let backend = unsafe { BACKENDS.get(&current.backend_id) };
            if backend.is_some() {
                touch(flow, now, h.is_closing());
                count(Counter::FlowHit);
                return established(ctx, h, &current);
            }
            // The backend was removed: this flow moves, others stay.
            count(Counter::FlowBackendGone);
        }
    }
    new_flow(ctx, h, fe, cfg, now, &key)
}

/// A packet of a tracked flow: translate and send where the flow goes.
#[inline(always)]
fn established(ctx: &XdpContext, h: &Headers, flow: &Flow) -> Result<u32, ()> {
    let to = Endpoints {
        src_addr: flow.new_src_addr,
        dst_addr: flow.new_dst_addr,
        src_port: flow.new_src_port,
        dst_port: flow.new_dst_port,
    };
    let route = if flow.flags & FLOW_LOCAL != 0 {
        Route::Local
    } else {
        lookup(ctx, ctx.ingress_ifindex() as u32, h.protocol, to.src_addr, to.dst_addr)
    };
    deliver(ctx, h, &to, &route)
}

#[inline(always)]
fn new_flow(ctx: &XdpContext, h: &Headers, fe: &Frontend, cfg: &Config, now: u64, key: &FlowKey) -> Result<u32, ()> {
    let service = SERVICES.get(fe.service_id).copied().unwrap_or_default();
    if service.backend_count == 0 {
        if service.flags & SERVICE_DROP_WHEN_EMPTY != 0 {
            count(Counter::DropNoLocalBackend);
            return Ok(XDP_DROP);
        }
        return Ok(reject::port_unreachable(ctx));
    }
    let hash = flow_hash(h.src_addr, h.dst_addr, h.src_port, h.dst_port, h.protocol);
    let client = Client { key: h.src_addr as u64, scope: SCOPE_XDP as u32 };
    let (backend_id, backend) = match pick(fe.service_id, &service, hash, client, cfg) {
        Some(found) => found,
        None => {
            count(Counter::DropNoBackend);
            return Ok(XDP_DROP);
        }
    };
    let ingress = ctx.ingress_ifindex() as u32;
    let route = lookup(ctx, ingress, h.protocol, h.src_addr, backend.addr);
    let local = match route {
        Route::Unreachable => {
            count(Counter::DropNoRoute);
            return Ok(XDP_DROP);
        }
        Route::Local => true,
        // The kernel answers "time exceeded" for the original packet.
        _ if h.ttl <= 1 => return Ok(XDP_PASS),
        _ => false,
    };
    let snat = !local && fe.flags & FRONTEND_SNAT != 0;

    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + 12 > data_end {
        return Err(());
    }
    // SAFETY: the Ethernet addresses are checked above.
    let (our_mac, peer_mac): ([u8; 6], [u8; 6]) = unsafe { (read(data, OFF_ETH_DST), read(data, OFF_ETH_SRC)) };
    let mut reply = Flow {
        new_src_addr: h.dst_addr,
        new_src_port: h.dst_port,
        new_dst_addr: h.src_addr,
        new_dst_port: h.src_port,
        backend_id,
        service_id: fe.service_id,
        ifindex: ingress,
        last_seen_ns: now,
        reply_src_mac: our_mac,
        reply_dst_mac: peer_mac,
        direction: FLOW_REPLY,
        flags: if local { FLOW_LOCAL } else { 0 },
        _pad: [0; 2],
    };
    let (src_addr, src_port) = if snat {
        reply.flags |= FLOW_SNAT;
        let egress = route.egress_ifindex(ingress);
        let snat_addr = masquerade_address(egress, ingress).ok_or(())?;
        match claim_snat_port(backend.addr, backend.port, snat_addr, h.protocol, &reply, hash, cfg, now) {
            Some(port) => (snat_addr, port),
            None => {
                count(Counter::DropSnatExhausted);
                return Ok(XDP_DROP);
            }
        }
    } else {
        let reply_key = FlowKey {
            src_addr: backend.addr,
            dst_addr: h.src_addr,
            src_port: backend.port,
            dst_port: h.src_port,
            protocol: h.protocol,
            _pad: [0; 3],
        };
        CONNTRACK.insert(&reply_key, &reply, 0).map_err(|_| ())?;
        (h.src_addr, h.src_port)
    };
    let forward = Flow {
        new_src_addr: src_addr,
        new_src_port: src_port,
        new_dst_addr: backend.addr,
        new_dst_port: backend.port,
        direction: FLOW_FORWARD,
        flags: reply.flags,
        reply_src_mac: [0; 6],
        reply_dst_mac: [0; 6],
        ..reply
    };
    CONNTRACK.insert(key, &forward, 0).map_err(|_| ())?;
    count(Counter::FlowNew);
    debug!(ctx, "new flow: service {} backend {} local {} snat {}", fe.service_id, backend_id, local as u8, snat as u8);
    let to = Endpoints { src_addr, dst_addr: backend.addr, src_port, dst_port: backend.port };
    deliver(ctx, h, &to, &route)
}

/// The node address flows leaving through `egress` are masqueraded to.
#[inline(always)]
fn masquerade_address(egress: u32, ingress: u32) -> Option<u32> {
    // SAFETY: copied out at once.
    unsafe { INTERFACES.get(&egress).or_else(|| INTERFACES.get(&ingress)).map(|iface| iface.snat_addr) }
}

/// Rewrites the packet to `to` and sends it along `route`.
#[inline(always)]
pub fn deliver(ctx: &XdpContext, h: &Headers, to: &Endpoints, route: &Route) -> Result<u32, ()> {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    match route {
        Route::Local => {
            let tc = rewrite(data, data_end, h, to, false, through_tc(ctx, 0))?;
            count(Counter::PassLocal);
            Ok(pass(ctx, tc))
        }
        Route::RemoteUnresolved { .. } => {
            let tc = rewrite(data, data_end, h, to, false, through_tc(ctx, 0))?;
            count(Counter::PassNeighbourUnresolved);
            Ok(pass(ctx, tc))
        }
        Route::Remote { ifindex, src_mac, dst_mac } => {
            if h.ttl <= 1 {
                return Ok(XDP_PASS);
            }
            let tc = rewrite(data, data_end, h, to, true, through_tc(ctx, *ifindex))?;
            set_macs(data, data_end, *src_mac, *dst_mac)?;
            Ok(transmit(ctx, *ifindex, tc))
        }
        Route::Unreachable => {
            count(Counter::DropNoRoute);
            Ok(XDP_DROP)
        }
    }
}
