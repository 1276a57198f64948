//! Gratuitous ARP: when this node takes an address over, it tells the LAN
//! at once (an ARP announcement, RFC 5227 §2.3: a broadcast request whose
//! sender and target address are both the address), so that hosts and
//! switches move their entries to this node's uplink without waiting for
//! their caches to expire. Linux updates an existing neighbour entry from
//! it (`arp_is_garp`), which is what keeps clients' connections working
//! across a failover without flushing anything.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result, bail};
use nix::libc;

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];

/// The announcement frame of `ip` at `mac`.
pub fn announcement(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&BROADCAST);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, 6-byte and 4-byte addresses, request.
    frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    // Target hardware address: zero (RFC 5227).
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

/// Sends the announcement of `ip` out of the interface `ifindex`.
pub fn announce(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<()> {
    let frame = announcement(mac, ip);
    // SAFETY: plain socket(2); the descriptor is owned (closed on drop) at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = i32::try_from(ifindex).context("interface index")?;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&BROADCAST);
    // SAFETY: the frame and the address outlive the call; their sizes are passed.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error()).context("sending a gratuitous ARP");
    }
    if sent as usize != frame.len() {
        bail!("sending a gratuitous ARP: {sent} of {} bytes sent", frame.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_is_a_broadcast_request_for_the_address_by_itself() {
        let mac = [0x02, 0, 0, 0, 0, 0x11];
        let frame = announcement(mac, Ipv4Addr::new(192, 168, 1, 150));
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x11, 0x08, 0x06, // Ethernet
            0, 1, 8, 0, 6, 4, 0, 1, // ARP request, Ethernet/IPv4
            0x02, 0, 0, 0, 0, 0x11, 192, 168, 1, 150, // sender
            0, 0, 0, 0, 0, 0, 192, 168, 1, 150, // target
        ];
        assert_eq!(frame, expected);
    }
}
