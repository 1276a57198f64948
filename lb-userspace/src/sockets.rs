//! Destroying connected UDP sockets whose peer is a backend that went away.
//!
//! With socket-level load balancing (the cgroup `connect4`/`sendmsg4`
//! hooks), a connect to a Service's ClusterIP becomes a connect straight to
//! one pod. A connected UDP socket (DNS resolvers use them) then stays
//! pointed at that pod; when the pod's endpoint is removed it is stuck.
//! The agent's answer: when a backend is removed, destroy every connected
//! UDP socket whose peer is that backend, in every network namespace that
//! has a process in lb's cgroup tree. The application sees `ECONNABORTED`
//! on its next `recv` (and `EDESTADDRREQ` on a `send`: the kernel also
//! disconnects the socket), reconnects, and the connect hook picks a live
//! backend.
//!
//! [`namespaces_in_cgroup`] finds the namespaces; [`destroy_udp_connected_to`]
//! does the work in one of them with `NETLINK_SOCK_DIAG`: a dump of the IPv4
//! UDP sockets in state ESTABLISHED (which is what connected UDP sockets
//! report), then one `SOCK_DESTROY` per socket whose peer matches. The
//! netlink socket is created by a short-lived thread that has entered the
//! namespace (a socket belongs to the namespace it was created in), so no
//! other thread of the agent ever changes namespace.
//!
//! Both functions block (file system walks, netlink round trips): call them
//! from a blocking context (`tokio::task::spawn_blocking`). Destroying needs
//! `CAP_NET_ADMIN` in the user namespace owning the network namespace,
//! entering it `CAP_SYS_ADMIN`, and the kernel `CONFIG_INET_DIAG_DESTROY`.

mod cgroup;
mod diag;
mod netlink;

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::net::SocketAddrV4;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use nix::sched::{CloneFlags, setns};

pub use cgroup::namespaces_in_cgroup;

/// An open network namespace (a file descriptor of an nsfs file such as
/// `/proc/PID/ns/net` or `/run/netns/NAME`), which keeps it alive.
pub struct NetNs {
    file: File,
    dev: u64,
    ino: u64,
    pid: Option<u32>,
}

impl NetNs {
    /// Opens the network namespace file at `path`.
    pub fn open(path: &Path) -> Result<NetNs> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::from_file(file, None).with_context(|| format!("reading the metadata of {}", path.display()))
    }

    /// The network namespace of process `pid` (`/proc/PID/ns/net`). The
    /// `io::Error` is returned as is, so that callers can tell a process
    /// that exited (`NotFound`, `ESRCH`) from a real failure.
    pub(crate) fn of_process(pid: u32) -> std::io::Result<NetNs> {
        let file = File::open(format!("/proc/{pid}/ns/net"))?;
        Self::from_file(file, Some(pid))
    }

    fn from_file(file: File, pid: Option<u32>) -> std::io::Result<NetNs> {
        let meta = file.metadata()?;
        Ok(NetNs { dev: meta.dev(), ino: meta.ino(), file, pid })
    }

    /// The namespace's identity: (device, inode) of its nsfs file, the same
    /// for every file that refers to it.
    pub fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// The process it was found through, if any.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
}

impl fmt::Debug for NetNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetNs").field("inode", &self.ino).field("pid", &self.pid).finish()
    }
}

/// Destroys the IPv4 UDP sockets in `netns` that are connected to one of
/// `peers` (destination address and port); returns how many it destroyed.
/// A socket that closes between the dump and its destroy is not counted
/// and is not an error.
pub fn destroy_udp_connected_to(netns: &NetNs, peers: &HashSet<SocketAddrV4>) -> Result<usize> {
    if peers.is_empty() {
        return Ok(0);
    }
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("lb-sockdestroy".into())
            .spawn_scoped(scope, || {
                // This thread alone enters the namespace, and ends with the work.
                setns(&netns.file, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering {netns:?}"))?;
                netlink::destroy_udp4_connected_to(peers)
            })
            .context("starting the socket-destroy thread")?;
        worker.join().map_err(|_| anyhow!("the socket-destroy thread panicked"))?
    })
    .with_context(|| format!("destroying UDP sockets connected to removed backends in {netns:?}"))
}
