//! lb's kernel programs.
//!
//! * `lb_xdp` (XDP, node uplinks): service NAT for traffic arriving from
//!   outside — frontend lookup, conntrack, Maglev, DNAT (+SNAT to the node
//!   address for backends on other nodes), forwarding with `bpf_fib_lookup`
//!   and `XDP_TX`/redirect, reverse NAT of replies coming back from other
//!   nodes, ICMP port unreachable for services without backends; and
//!   answers ARP requests for the LoadBalancer addresses this node
//!   announces (`arp.rs`).
//! * `lb_tc_egress` (TC egress, node uplinks): reverse NAT of replies from
//!   backends on this node, which the kernel routes out of the uplink.
//! * `lb_tc_ingress` (TC ingress, node uplinks): sends the frames that
//!   `lb_xdp` translated but handed over instead of sending them itself
//!   (uplinks whose driver needs it, see `transmit.rs`), and answers the
//!   ARP requests `lb_xdp` left to it there.
//! * `lb_sock_*` (cgroup `sock_addr` hooks, `--cgroup-root`): load
//!   balancing at the socket for pods and host processes: cluster IPs (and
//!   every other frontend) are replaced by a backend at `connect()` and
//!   `sendmsg()`, and shown again at `recvmsg()` and `getpeername()`; IPv4
//!   sockets, and IPv6 sockets talking to IPv4-mapped addresses.
//!
//! The packet path and the map layout are described in ARCHITECTURE.md.
#![no_std]
#![no_main]

mod arp;
mod conntrack;
mod csum;
mod forward;
mod maps;
mod nat;
mod packet;
mod reject;
mod reply;
mod route;
mod select;
mod sock;
mod stats;
mod tc;
mod transmit;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{cgroup_sock_addr, classifier, xdp},
    programs::{SockAddrContext, TcContext, XdpContext},
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

#[cgroup_sock_addr(connect4)]
pub fn lb_sock_connect4(ctx: SockAddrContext) -> i32 {
    sock::connect(&ctx, sock::Family::V4)
}

#[cgroup_sock_addr(connect6)]
pub fn lb_sock_connect6(ctx: SockAddrContext) -> i32 {
    sock::connect(&ctx, sock::Family::V6Mapped)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn lb_sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock::sendmsg(&ctx, sock::Family::V4)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn lb_sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    sock::sendmsg(&ctx, sock::Family::V6Mapped)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn lb_sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    sock::reverse(&ctx, sock::Family::V4)
}

#[cgroup_sock_addr(recvmsg6)]
pub fn lb_sock_recvmsg6(ctx: SockAddrContext) -> i32 {
    sock::reverse(&ctx, sock::Family::V6Mapped)
}

#[cgroup_sock_addr(getpeername4)]
pub fn lb_sock_getpeername4(ctx: SockAddrContext) -> i32 {
    sock::reverse(&ctx, sock::Family::V4)
}

#[cgroup_sock_addr(getpeername6)]
pub fn lb_sock_getpeername6(ctx: SockAddrContext) -> i32 {
    sock::reverse(&ctx, sock::Family::V6Mapped)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
