//! `NETLINK_SOCK_DIAG` messages: building the UDP dump and destroy
//! requests, and reading the kernel's replies. Pure; the socket is in
//! `netlink.rs`. The fixed structs (`inet_diag_req_v2`, `inet_diag_msg`,
//! `<linux/inet_diag.h>`) come from `netlink-packet-sock-diag`.

use std::net::{IpAddr, SocketAddrV4};

use anyhow::{Result, bail};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::constants::IPPROTO_UDP;
pub(super) use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::{SockDiagDestroy, SockDiagMessage};

/// A dump of the UDP sockets of `family` (`AF_INET`, `AF_INET6`) in state
/// ESTABLISHED: connected UDP sockets report `TCP_ESTABLISHED`,
/// unconnected ones `TCP_CLOSE`.
pub(super) fn udp_connected_dump_request(seq: u32, family: u8) -> Vec<u8> {
    let id = if family == AF_INET6 { SocketId::new_v6() } else { SocketId::new_v4() };
    let request = udp_request(family, id);
    serialize(NetlinkMessage::new(
        header(seq, NLM_F_REQUEST | NLM_F_DUMP),
        SockDiagMessage::InetRequest(request).into(),
    ))
}

/// A `SOCK_DESTROY` of the socket `id` (copied whole from the dump,
/// cookie and interface included), asking for an acknowledgement.
pub(super) fn udp_destroy_request(seq: u32, family: u8, id: &SocketId) -> Vec<u8> {
    let request = SockDiagDestroy::new(SockDiagMessage::InetRequest(udp_request(family, id.clone())));
    serialize(NetlinkMessage::new(header(seq, NLM_F_REQUEST | NLM_F_ACK), request.into()))
}

fn udp_request(family: u8, socket_id: SocketId) -> InetRequest {
    InetRequest {
        family,
        protocol: IPPROTO_UDP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::ESTABLISHED,
        socket_id,
    }
}

fn header(seq: u32, flags: u16) -> NetlinkHeader {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    header
}

fn serialize<I: netlink_packet_core::NetlinkSerializable>(mut message: NetlinkMessage<I>) -> Vec<u8> {
    message.finalize();
    let mut buf = vec![0; message.buffer_len()];
    message.serialize(&mut buf);
    buf
}

/// One message of the kernel's reply.
#[derive(Debug)]
pub(super) enum Reply {
    /// A socket of a dump.
    Socket(SocketId),
    /// The end of a dump; `Err(errno)` when the dump failed part way.
    Done(Result<(), i32>),
    /// `NLMSG_ERROR`: `Ok` is an acknowledgement, `Err(errno)` a failure.
    Status(Result<(), i32>),
}

/// The messages of one datagram from the kernel, each with its sequence
/// number. A dump spans several datagrams; each may hold several messages.
pub(super) fn parse_replies(mut buf: &[u8]) -> Result<Vec<(u32, Reply)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let message = match NetlinkMessage::<SockDiagMessage>::deserialize(buf) {
            Ok(message) => message,
            Err(e) => bail!("malformed sock_diag reply: {e}"),
        };
        // NLM_F_DUMP_INTR is not looked at: inet_diag dumps keep no
        // generation count, so the kernel does not set it on them.
        let seq = message.header.sequence_number;
        let reply = match message.payload {
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                Some(Reply::Socket(response.header.socket_id))
            }
            NetlinkPayload::Done(done) => Some(Reply::Done(errno(done.code))),
            NetlinkPayload::Error(error) => Some(Reply::Status(errno(error.raw_code()))),
            NetlinkPayload::Noop => None,
            NetlinkPayload::Overrun(_) => bail!("sock_diag reply overrun"),
            other => bail!("unexpected sock_diag message {other:?}"),
        };
        out.extend(reply.map(|reply| (seq, reply)));
        buf = next(buf, message.header.length);
    }
    Ok(out)
}

/// The rest of `buf` after a message of `length` bytes (`NLMSG_ALIGN`ed;
/// `deserialize` has checked that `16 <= length <= buf.len()`).
fn next(buf: &[u8], length: u32) -> &[u8] {
    let aligned = (length as usize).next_multiple_of(4);
    buf.get(aligned..).unwrap_or_default()
}

/// Netlink's "0 or a negative errno" as a `Result` of the positive errno.
fn errno(code: i32) -> Result<(), i32> {
    if code == 0 { Ok(()) } else { Err(code.saturating_abs()) }
}

/// The IPv4 peer of a connected socket: an IPv4 socket's, or an IPv6
/// socket's IPv4-mapped one (`::ffff:a.b.c.d`, which the socket programs
/// balance too).
pub(super) fn peer_v4(id: &SocketId) -> Option<SocketAddrV4> {
    match id.destination_address {
        IpAddr::V4(ip) => Some(SocketAddrV4::new(ip, id.destination_port)),
        IpAddr::V6(ip) => ip.to_ipv4_mapped().map(|ip| SocketAddrV4::new(ip, id.destination_port)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// `struct nlmsghdr` (`<linux/netlink.h>`), in native byte order.
    fn nlmsghdr(len: usize, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(len as u32).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&4242u32.to_ne_bytes());
        b
    }

    /// `struct inet_diag_sockid` (`<linux/inet_diag.h>`): ports and addresses
    /// in network order, interface and cookie in native order.
    fn sockid(src: SocketAddrV4, dst: SocketAddrV4, ifindex: u32, cookie: [u32; 2]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&src.port().to_be_bytes());
        b.extend_from_slice(&dst.port().to_be_bytes());
        for ip in [src.ip(), dst.ip()] {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&ip.octets());
            b.extend_from_slice(&addr);
        }
        b.extend_from_slice(&ifindex.to_ne_bytes());
        b.extend_from_slice(&cookie[0].to_ne_bytes());
        b.extend_from_slice(&cookie[1].to_ne_bytes());
        assert_eq!(b.len(), 48);
        b
    }

    /// One `SOCK_DIAG_BY_FAMILY` reply message: `inet_diag_msg` (72 bytes)
    /// followed by an `INET_DIAG_SHUTDOWN` attribute, as the kernel sends;
    /// `nlmsg_len` is 93, the message 96 bytes with its `NLMSG_ALIGN` padding.
    fn diag_msg(seq: u32, src: SocketAddrV4, dst: SocketAddrV4, cookie: [u32; 2]) -> Vec<u8> {
        let mut body = vec![AF_INET, 1 /* TCP_ESTABLISHED */, 0, 0];
        body.extend(sockid(src, dst, 0, cookie));
        for field in
            [0u32 /* expires */, 0 /* rqueue */, 0 /* wqueue */, 0 /* uid */, 77 /* inode */]
        {
            body.extend_from_slice(&field.to_ne_bytes());
        }
        assert_eq!(body.len(), 72);
        // struct nlattr { u16 nla_len; u16 nla_type } + u8 value, padded to 4.
        body.extend_from_slice(&5u16.to_ne_bytes());
        body.extend_from_slice(&8u16.to_ne_bytes()); // INET_DIAG_SHUTDOWN
        body.extend_from_slice(&[0, 0, 0, 0]);
        let mut m = nlmsghdr(16 + 72 + 5, 20, 2 /* NLM_F_MULTI */, seq);
        m.extend(body);
        m
    }

    fn error_msg(seq: u32, code: i32) -> Vec<u8> {
        let mut m = nlmsghdr(16 + 4 + 16, 2 /* NLMSG_ERROR */, 0, seq);
        m.extend_from_slice(&code.to_ne_bytes());
        m.extend(nlmsghdr(16 + 56, 21, NLM_F_REQUEST | NLM_F_ACK, seq));
        m
    }

    fn done_msg(seq: u32, code: i32) -> Vec<u8> {
        let mut m = nlmsghdr(20, 3 /* NLMSG_DONE */, 2, seq);
        m.extend_from_slice(&code.to_ne_bytes());
        m
    }

    fn addr(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    #[test]
    fn dump_request_is_an_inet_diag_req_v2_for_established_udp() {
        let got = udp_connected_dump_request(7, AF_INET);
        // nlmsghdr: len 72, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq 7, pid 0.
        let mut want = nlmsghdr(72, 20, 0x301, 7);
        want[12..16].copy_from_slice(&0u32.to_ne_bytes());
        // inet_diag_req_v2: family, protocol, ext, pad, states = 1 << TCP_ESTABLISHED.
        want.extend_from_slice(&[2, 17, 0, 0]);
        want.extend_from_slice(&(1u32 << 1).to_ne_bytes());
        want.extend(vec![0; 48]);
        assert_eq!(got, want);
    }

    #[test]
    fn destroy_request_copies_the_whole_socket_id() {
        let src = addr([10, 0, 0, 5], 40000);
        let dst = addr([10, 1, 2, 3], 53);
        let mut dump = diag_msg(1, src, dst, [0xdead_beef, 0x1234]);
        // Bound to interface 3.
        dump[16 + 4 + 36..16 + 4 + 40].copy_from_slice(&3u32.to_ne_bytes());
        let replies = parse_replies(&dump).unwrap();
        let [(_, Reply::Socket(id))] = replies.as_slice() else { panic!("{replies:?}") };

        let got = udp_destroy_request(9, AF_INET, id);
        let mut want = nlmsghdr(72, 21, 0x5, 9);
        want[12..16].copy_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[2, 17, 0, 0]);
        want.extend_from_slice(&2u32.to_ne_bytes());
        want.extend(sockid(src, dst, 3, [0xdead_beef, 0x1234]));
        assert_eq!(got, want);
    }

    #[test]
    fn parses_a_multipart_dump_with_done() {
        let a = (addr([10, 0, 0, 5], 40000), addr([10, 1, 2, 3], 53));
        let b = (addr([10, 0, 0, 6], 40001), addr([10, 1, 2, 4], 5353));
        let mut buf = diag_msg(3, a.0, a.1, [1, 0]);
        buf.extend(diag_msg(3, b.0, b.1, [2, 0]));
        buf.extend(done_msg(3, 0));
        let replies = parse_replies(&buf).unwrap();
        assert_eq!(replies.len(), 3, "{replies:?}");
        let peers: Vec<_> = replies
            .iter()
            .filter_map(|(seq, r)| match r {
                Reply::Socket(id) => {
                    assert_eq!(*seq, 3);
                    let IpAddr::V4(src) = id.source_address else { panic!("{id:?}") };
                    Some((SocketAddrV4::new(src, id.source_port), peer_v4(id)))
                }
                _ => None,
            })
            .collect();
        assert_eq!(peers, vec![(a.0, Some(a.1)), (b.0, Some(b.1))]);
        assert!(matches!(replies[2], (3, Reply::Done(Ok(())))));
    }

    #[test]
    fn parses_acks_errors_and_failed_dumps() {
        let mut buf = error_msg(4, 0);
        buf.extend(error_msg(5, -nix::libc::ENOENT));
        buf.extend(done_msg(6, -nix::libc::EPERM));
        let replies = parse_replies(&buf).unwrap();
        assert!(matches!(replies[0], (4, Reply::Status(Ok(())))), "{replies:?}");
        assert!(matches!(replies[1], (5, Reply::Status(Err(nix::libc::ENOENT)))), "{replies:?}");
        assert!(matches!(replies[2], (6, Reply::Done(Err(nix::libc::EPERM)))), "{replies:?}");
        // NLMSG_DONE may also come without a body.
        let replies = parse_replies(&nlmsghdr(16, 3, 2, 8)).unwrap();
        assert!(matches!(replies[..], [(8, Reply::Done(Ok(())))]), "{replies:?}");
    }

    #[test]
    fn rejects_malformed_replies() {
        let whole = diag_msg(1, addr([1, 2, 3, 4], 1), addr([5, 6, 7, 8], 2), [0, 0]);
        // Cut short: the length field says more than the datagram holds.
        assert!(parse_replies(&whole[..50]).is_err());
        // A length below the header size must not loop forever.
        assert!(parse_replies(&nlmsghdr(8, 20, 2, 1)).is_err());
        // A body too short for inet_diag_msg.
        let mut short = nlmsghdr(16 + 8, 20, 2, 1);
        short.extend([2, 1, 0, 0, 0, 0, 0, 0]);
        assert!(parse_replies(&short).is_err());
        assert!(parse_replies(&[]).unwrap().is_empty());
    }

    #[test]
    fn ipv4_mapped_peers_of_ipv6_sockets_count() {
        let mut id = SocketId::new_v6();
        id.destination_address = "::ffff:10.244.1.10".parse().unwrap();
        id.destination_port = 5353;
        assert_eq!(peer_v4(&id), Some(addr([10, 244, 1, 10], 5353)));
        id.destination_address = "fd00::10".parse().unwrap();
        assert_eq!(peer_v4(&id), None);
        // The AF_INET6 dump asks for IPv6 sockets.
        assert_eq!(udp_connected_dump_request(3, AF_INET6)[16], AF_INET6);
    }
}
