//! Address and port rewriting with incremental checksum updates, on XDP
//! frames (direct packet access).

use lb_common::PROTO_TCP;

use crate::csum::{diff16, diff32, replace16, replace32, udp_nonzero};
use crate::packet::{
    Headers, L4_OFF, OFF_ETH_DST, OFF_ETH_SRC, OFF_IP_CHECK, OFF_IP_DADDR, OFF_IP_SADDR, OFF_IP_TTL, OFF_L4_DPORT,
    OFF_L4_SPORT, OFF_TCP_CHECK, OFF_UDP_CHECK, TCP_HLEN, UDP_HLEN, read, write,
};

/// Where a packet should appear to come from and go to after translation
/// (network byte order).
#[derive(Clone, Copy)]
pub struct Endpoints {
    pub src_addr: u32,
    pub dst_addr: u32,
    pub src_port: u16,
    pub dst_port: u16,
}

/// The L4 checksum change a rewrite leaves to TC (see [`rewrite`]).
#[derive(Clone, Copy)]
pub struct L4Fix {
    pub pseudo_diff: u32,
    pub ports_diff: u32,
    /// Offset of the checksum field in the frame; 0: nothing to fix.
    pub check_off: u16,
    pub udp: bool,
}

impl L4Fix {
    /// For a frame whose checksums XDP wrote whole.
    pub const NONE: L4Fix = L4Fix { pseudo_diff: 0, ports_diff: 0, check_off: 0, udp: false };
}

/// Rewrites the IPv4 addresses and L4 ports of the frame to `to`, keeping
/// the IPv4 checksum right. With `decrement_ttl` the TTL is lowered by one,
/// as a router does (callers check TTL > 1 first).
///
/// The L4 checksum is updated in place, unless `defer_l4`: then it is left
/// as it is and the change is returned for `lb_tc_ingress`, which applies
/// it knowing whether the skb's checksum is partial (a pseudo-header sum
/// that a veth passes on from the sender's stack: it must change with the
/// addresses only) or complete. XDP cannot tell the two apart.
#[inline(always)]
pub fn rewrite(
    data: usize,
    data_end: usize,
    h: &Headers,
    to: &Endpoints,
    decrement_ttl: bool,
    defer_l4: bool,
) -> Result<Option<L4Fix>, ()> {
    if data + L4_OFF + UDP_HLEN > data_end {
        return Err(());
    }
    // SAFETY (IP header and the first 8 L4 bytes): bounds checked above.
    unsafe {
        let mut ip_check: u16 = read(data, OFF_IP_CHECK);
        ip_check = replace32(ip_check, h.src_addr, to.src_addr);
        ip_check = replace32(ip_check, h.dst_addr, to.dst_addr);
        if decrement_ttl {
            let old_word: u16 = read(data, OFF_IP_TTL);
            write::<u8>(data, OFF_IP_TTL, h.ttl.wrapping_sub(1));
            let new_word: u16 = read(data, OFF_IP_TTL);
            ip_check = replace16(ip_check, old_word, new_word);
        }
        write(data, OFF_IP_CHECK, ip_check);
        write(data, OFF_IP_SADDR, to.src_addr);
        write(data, OFF_IP_DADDR, to.dst_addr);
        write(data, OFF_L4_SPORT, to.src_port);
        write(data, OFF_L4_DPORT, to.dst_port);
    }
    if defer_l4 {
        let tcp = h.protocol == PROTO_TCP;
        return Ok(Some(L4Fix {
            pseudo_diff: diff32(h.src_addr, to.src_addr) + diff32(h.dst_addr, to.dst_addr),
            ports_diff: diff16(h.src_port, to.src_port) + diff16(h.dst_port, to.dst_port),
            check_off: if tcp { OFF_TCP_CHECK } else { OFF_UDP_CHECK } as u16,
            udp: !tcp,
        }));
    }
    if h.protocol == PROTO_TCP {
        if data + L4_OFF + TCP_HLEN > data_end {
            return Err(());
        }
        // SAFETY: TCP header checked above.
        unsafe {
            let check = l4_check(read(data, OFF_TCP_CHECK), h, to);
            write(data, OFF_TCP_CHECK, check);
        }
    } else {
        // SAFETY: UDP header checked at the top.
        unsafe {
            let check: u16 = read(data, OFF_UDP_CHECK);
            if check != 0 {
                write(data, OFF_UDP_CHECK, udp_nonzero(l4_check(check, h, to)));
            }
        }
    }
    Ok(None)
}

/// L4 checksum update: the pseudo-header addresses and the ports.
#[inline(always)]
fn l4_check(mut check: u16, h: &Headers, to: &Endpoints) -> u16 {
    check = replace32(check, h.src_addr, to.src_addr);
    check = replace32(check, h.dst_addr, to.dst_addr);
    check = replace16(check, h.src_port, to.src_port);
    replace16(check, h.dst_port, to.dst_port)
}

/// Sets the Ethernet source and destination addresses.
#[inline(always)]
pub fn set_macs(data: usize, data_end: usize, src: [u8; 6], dst: [u8; 6]) -> Result<(), ()> {
    if data + 12 > data_end {
        return Err(());
    }
    // SAFETY: the 12 address bytes are checked above.
    unsafe {
        write(data, OFF_ETH_DST, dst);
        write(data, OFF_ETH_SRC, src);
    }
    Ok(())
}
