//! `testbed_pass`: an XDP program that passes every frame. Not part of the
//! product: the network-namespace test bed attaches it to the veth peers that
//! face the nodes' uplinks. A veth only flushes frames sent to it with
//! `XDP_TX` from its peer promptly when it runs an XDP program itself (GRO
//! alone queues them until other traffic wakes it up); physical NICs have no
//! such need.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn testbed_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
