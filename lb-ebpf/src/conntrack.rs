//! Conntrack: flow entries in an LRU hash, their lifetimes, and masquerade
//! port allocation.

use aya_ebpf::bindings::BPF_NOEXIST;
use lb_common::{Config, FLOW_CLOSING, Flow, FlowKey, FrontendKey, PROTO_TCP, SCOPE_XDP};

use crate::maps::{CONNTRACK, FRONTENDS};
use crate::packet::Headers;

/// How many masquerade ports are tried for one new flow before giving up.
const SNAT_ATTEMPTS: u32 = 16;
const NS_PER_SEC: u64 = 1_000_000_000;

#[inline(always)]
pub fn key_of(h: &Headers) -> FlowKey {
    FlowKey {
        src_addr: h.src_addr,
        dst_addr: h.dst_addr,
        src_port: h.src_port,
        dst_port: h.dst_port,
        protocol: h.protocol,
        _pad: [0; 3],
    }
}

/// An entry that has seen no packet for its protocol's timeout is dead (the
/// LRU reclaims it eventually; until then it is ignored and replaced).
#[inline(always)]
pub fn expired(flow: &Flow, protocol: u8, now: u64, cfg: &Config) -> bool {
    let timeout_s = if flow.flags & FLOW_CLOSING != 0 {
        cfg.tcp_closing_timeout_s
    } else if protocol == PROTO_TCP {
        cfg.tcp_timeout_s
    } else {
        cfg.udp_timeout_s
    };
    now > flow.last_seen_ns + timeout_s as u64 * NS_PER_SEC
}

/// Records a packet of the flow: refreshes its age, and notes FIN/RST.
#[inline(always)]
pub fn touch(flow: *mut Flow, now: u64, closing: bool) {
    // SAFETY: `flow` points into a map value; racing writers on other CPUs
    // can only store equally valid timestamps and flags.
    unsafe {
        (*flow).last_seen_ns = now;
        if closing {
            (*flow).flags |= FLOW_CLOSING;
        }
    }
}

/// Claims a masquerade port: inserts the reply entry `reply` under the key
/// (backend → snat_addr:port) for the first port of the configured range,
/// starting at a position picked by `hash`, that is free, stale, or already
/// this same flow's. A port that is a frontend on `snat_addr` (a NodePort,
/// or an external IP that is the node's) is skipped: the backend's replies
/// to it would be taken for new client flows. Returns the port (network
/// byte order).
#[inline(always)]
pub fn claim_snat_port(
    backend_addr: u32,
    backend_port: u16,
    snat_addr: u32,
    protocol: u8,
    reply: &Flow,
    hash: u32,
    cfg: &Config,
    now: u64,
) -> Option<u16> {
    if cfg.snat_port_max < cfg.snat_port_min {
        return None;
    }
    let range = (cfg.snat_port_max - cfg.snat_port_min) as u32 + 1;
    let start = hash ^ (hash >> 16);
    let mut attempt = 0;
    while attempt < SNAT_ATTEMPTS {
        let port = ((cfg.snat_port_min as u32 + start.wrapping_add(attempt) % range) as u16).to_be();
        attempt += 1;
        let frontend = FrontendKey { addr: snat_addr, port, protocol, scope: SCOPE_XDP };
        // SAFETY: read-only look at a map value.
        if unsafe { FRONTENDS.get(&frontend) }.is_some() {
            continue;
        }
        let key = FlowKey {
            src_addr: backend_addr,
            dst_addr: snat_addr,
            src_port: backend_port,
            dst_port: port,
            protocol,
            _pad: [0; 3],
        };
        // SAFETY: read-only look at a map value.
        let reusable = match unsafe { CONNTRACK.get(&key) } {
            None => CONNTRACK.insert(&key, reply, BPF_NOEXIST as u64).is_ok(),
            Some(existing) => {
                let same_flow = existing.new_dst_addr == reply.new_dst_addr
                    && existing.new_dst_port == reply.new_dst_port
                    && existing.new_src_addr == reply.new_src_addr
                    && existing.new_src_port == reply.new_src_port;
                (same_flow || expired(existing, protocol, now, cfg)) && CONNTRACK.insert(&key, reply, 0).is_ok()
            }
        };
        if reusable {
            return Some(port);
        }
    }
    None
}
