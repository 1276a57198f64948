//! Listening sockets that another process can share: every listener of the
//! agent (the proxy's, the admin and health check ports) is opened with
//! `SO_REUSEADDR` and `SO_REUSEPORT`, so a new agent can listen on the same
//! ports beside the old one during an upgrade (the kernel spreads new
//! connections over both until the old one closes its listeners; see
//! ARCHITECTURE.md, *Listener handover*).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Accept queue length of every listener (tokio's own default; Linux caps
/// it at `net.core.somaxconn`).
pub const BACKLOG: u32 = 1024;

/// A TCP socket bound to `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`, not
/// listening yet: the bind fails at once if the port is taken by a socket
/// that does not share it (another program, or another user), but no
/// connection reaches it until [`TcpSocket::listen`].
pub fn bind_shared(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// [`bind_shared`], listening. Needs a tokio runtime.
pub fn listen_shared(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_shared(addr)?.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_listeners_share_a_port() {
        let first = listen_shared("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let second = listen_shared(addr).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        // A plain listener (no SO_REUSEPORT) cannot join them.
        assert!(TcpListener::bind(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_port_taken_without_reuseport_fails_the_bind() {
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = bind_shared(plain.local_addr().unwrap()).expect_err("taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
