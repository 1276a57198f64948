//! The `NETLINK_SOCK_DIAG` socket of the calling thread's network namespace:
//! dump the connected IPv4 UDP sockets, destroy the ones with a given peer.

use std::collections::HashSet;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context, Result, bail};
use netlink_packet_sock_diag::inet::SocketId;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, connect, recv, send, setsockopt, socket,
    sockopt,
};
use nix::sys::time::TimeVal;

use super::diag::{self, Reply};

/// Big enough for any datagram of a dump: the kernel sizes them by the
/// reader's buffer, capped at 32 KiB.
const RECV_BUFFER: usize = 64 * 1024;

/// How long one reply may take before the kernel is deemed stuck.
const RECV_TIMEOUT_SECS: i64 = 5;

/// Destroys the UDP sockets of the calling thread's network namespace
/// whose IPv4 peer (IPv4-mapped for IPv6 sockets) is in `peers`; returns
/// how many.
pub(super) fn destroy_udp4_connected_to(peers: &HashSet<SocketAddrV4>) -> Result<usize> {
    let mut diag = DiagSocket::open()?;
    let mut doomed: Vec<(u8, SocketId)> = Vec::new();
    for family in [diag::AF_INET, diag::AF_INET6] {
        let connected = diag.udp_connected(family)?;
        doomed.extend(
            connected
                .into_iter()
                .filter(|id| diag::peer_v4(id).is_some_and(|p| peers.contains(&p)))
                .map(|id| (family, id)),
        );
    }
    let mut destroyed = 0;
    for (family, id) in &doomed {
        match diag.destroy(*family, id) {
            Ok(true) => destroyed += 1,
            Ok(false) => tracing::debug!(?id, "UDP socket closed before it could be destroyed"),
            Err(e) => return Err(e.context(format!("destroyed {destroyed} of {} sockets before this", doomed.len()))),
        }
    }
    Ok(destroyed)
}

struct DiagSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl DiagSocket {
    /// A sock_diag socket in the calling thread's network namespace,
    /// connected to the kernel (so only the kernel's messages reach it).
    fn open() -> Result<DiagSocket> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag)
            .context("creating a NETLINK_SOCK_DIAG socket")?;
        connect(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).context("connecting the sock_diag socket to the kernel")?;
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(RECV_TIMEOUT_SECS, 0))
            .context("setting SO_RCVTIMEO on the sock_diag socket")?;
        Ok(DiagSocket { fd, seq: 0, buf: vec![0; RECV_BUFFER] })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, message: &[u8]) -> Result<()> {
        let sent = send(self.fd.as_raw_fd(), message, MsgFlags::empty()).context("sending to sock_diag")?;
        if sent != message.len() {
            bail!("sock_diag took {sent} of {} bytes", message.len());
        }
        Ok(())
    }

    /// The messages of the next datagram that belong to request `seq`.
    fn recv(&mut self, seq: u32) -> Result<Vec<Reply>> {
        // MSG_TRUNC: netlink returns the datagram's real length, so a
        // truncated one is seen rather than misparsed.
        let len = loop {
            match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_TRUNC) {
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => bail!("no reply from sock_diag within {RECV_TIMEOUT_SECS}s"),
                other => break other.context("receiving from sock_diag")?,
            }
        };
        if len > self.buf.len() {
            bail!("sock_diag reply of {len} bytes is larger than the {}-byte buffer", self.buf.len());
        }
        let replies = diag::parse_replies(&self.buf[..len])?;
        Ok(replies.into_iter().filter(|(s, _)| *s == seq).map(|(_, r)| r).collect())
    }

    /// The UDP sockets of `family` in state ESTABLISHED (connected).
    fn udp_connected(&mut self, family: u8) -> Result<Vec<SocketId>> {
        let seq = self.next_seq();
        self.send(&diag::udp_connected_dump_request(seq, family))?;
        let mut sockets = Vec::new();
        loop {
            for reply in self.recv(seq)? {
                match reply {
                    Reply::Socket(id) => sockets.push(id),
                    Reply::Done(Ok(())) => return Ok(sockets),
                    Reply::Done(Err(errno)) | Reply::Status(Err(errno)) => {
                        return Err(Errno::from_raw(errno)).context("dumping UDP sockets (SOCK_DIAG_BY_FAMILY)");
                    }
                    Reply::Status(Ok(())) => {}
                }
            }
        }
    }

    /// Destroys one socket: `Ok(true)` when destroyed, `Ok(false)` when it
    /// no longer exists (closed since the dump: `ENOENT`).
    fn destroy(&mut self, family: u8, id: &SocketId) -> Result<bool> {
        let seq = self.next_seq();
        self.send(&diag::udp_destroy_request(seq, family, id))?;
        // The answer is one NLMSG_ERROR (0 or an errno) with our sequence number.
        let reply = loop {
            if let Some(reply) = self.recv(seq)?.into_iter().next() {
                break reply;
            }
        };
        match reply {
            Reply::Status(Ok(())) => Ok(true),
            Reply::Status(Err(nix::libc::ENOENT)) => Ok(false),
            Reply::Status(Err(errno)) => {
                let hint = match errno {
                    nix::libc::EOPNOTSUPP => " (kernel without CONFIG_INET_DIAG_DESTROY?)",
                    nix::libc::EPERM => " (needs CAP_NET_ADMIN in the namespace's user namespace)",
                    _ => "",
                };
                Err(Errno::from_raw(errno)).with_context(|| format!("SOCK_DESTROY of UDP socket {id:?}{hint}"))
            }
            other => bail!("unexpected reply to SOCK_DESTROY: {other:?}"),
        }
    }
}
