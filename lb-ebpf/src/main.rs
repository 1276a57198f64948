//! lb's kernel programs.
//!
//! * `lb_xdp` (XDP, node uplinks): service NAT for traffic arriving from
//!   outside — frontend lookup, conntrack, Maglev, DNAT (+SNAT to the node
//!   address for backends on other nodes), forwarding with `bpf_fib_lookup`
//!   and `XDP_TX`/redirect, reverse NAT of replies coming back from other
//!   nodes, ICMP port unreachable for services without backends.
//! * `lb_tc_egress` (TC egress, node uplinks): reverse NAT of replies from
//!   backends on this node, which the kernel routes out of the uplink.
//! * `lb_tc_ingress` (TC ingress, node uplinks): sends the frames that
//!   `lb_xdp` translated but handed over instead of sending them itself
//!   (uplinks whose driver needs it, see `transmit.rs`).
//!
//! The packet path and the map layout are described in ARCHITECTURE.md.
#![no_std]
#![no_main]

mod conntrack;
mod csum;
mod forward;
mod maps;
mod nat;
mod packet;
mod reject;
mod reply;
mod route;
mod stats;
mod tc;
mod transmit;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    forward::handle(&ctx).unwrap_or(xdp_action::XDP_PASS)
}

#[classifier]
pub fn lb_tc_egress(ctx: TcContext) -> i32 {
    tc::handle_egress(&ctx).unwrap_or(TC_ACT_OK)
}

#[classifier]
pub fn lb_tc_ingress(ctx: TcContext) -> i32 {
    transmit::handle_ingress(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
