//! The few system calls std does not offer: joining a network namespace
//! from a worker thread, `sendmmsg`/`recvmmsg`, socket options, `getrusage`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sched::{CloneFlags, setns};

/// Moves the calling thread into network namespace `ns`: sockets it creates
/// from now on belong there. Only for threads the bench spawned itself.
pub fn enter_netns(ns: &str) -> Result<()> {
    let path = lb_testbed::netns::ns_path(ns);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into {ns}"))
}

fn check(ret: libc::c_int, what: &str) -> io::Result<usize> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret as usize)
    }
}

fn set_int_opt(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid fd and a pointer to an int of the given size.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(ret, "setsockopt").map(|_| ())
}

/// Receive buffer of `bytes`, above `rmem_max` (we are root).
pub fn set_rcvbuf_force(fd: impl AsFd, bytes: usize) -> io::Result<()> {
    set_int_opt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes.min(i32::MAX as usize) as libc::c_int)
}

/// `SO_RCVTIMEO`: also bounds a blocking `accept`.
pub fn set_recv_timeout(fd: impl AsFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval { tv_sec: timeout.as_secs() as libc::time_t, tv_usec: timeout.subsec_micros() as _ };
    // SAFETY: a valid fd and a timeval.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    check(ret, "setsockopt SO_RCVTIMEO").map(|_| ())
}

/// A batch of identical datagrams for one connected UDP socket.
pub struct SendBatch {
    payload: Vec<u8>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers point into `payload`/`iovs`, owned by the batch.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub fn new(payload: Vec<u8>, count: usize) -> Self {
        let mut batch = Self { payload, iovs: Vec::with_capacity(count), msgs: Vec::with_capacity(count) };
        let iov = libc::iovec { iov_base: batch.payload.as_mut_ptr().cast(), iov_len: batch.payload.len() };
        batch.iovs.resize(count, iov);
        for i in 0..count {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &mut batch.iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            batch.msgs.push(m);
        }
        batch
    }

    /// `sendmmsg` of the first `count` datagrams on a connected socket:
    /// how many the kernel took.
    pub fn send(&mut self, fd: impl AsFd, count: usize) -> io::Result<usize> {
        let count = count.min(self.msgs.len());
        // SAFETY: msgs[..count] are valid headers pointing at live buffers.
        let ret = unsafe {
            libc::sendmmsg(fd.as_fd().as_raw_fd(), self.msgs.as_mut_ptr(), count as libc::c_uint, libc::MSG_DONTWAIT)
        };
        check(ret, "sendmmsg")
    }
}

/// Buffers for `recvmmsg`.
pub struct RecvBatch {
    bufs: Vec<[u8; 2048]>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers point into `bufs`/`iovs`, owned by the batch.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(count: usize) -> Self {
        let mut batch = Self { bufs: vec![[0u8; 2048]; count], iovs: Vec::new(), msgs: Vec::new() };
        for buf in batch.bufs.iter_mut() {
            batch.iovs.push(libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() });
        }
        for i in 0..count {
            // SAFETY: plain data; all-zero is a valid empty header.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &mut batch.iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            batch.msgs.push(m);
        }
        batch
    }

    /// Takes whatever is queued, up to the batch size, without waiting
    /// (`EAGAIN` when nothing is).
    pub fn recv(&mut self, fd: impl AsFd) -> io::Result<usize> {
        // SAFETY: msgs are valid headers pointing at live buffers.
        let ret = unsafe {
            libc::recvmmsg(
                fd.as_fd().as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        check(ret, "recvmmsg")
    }
}

/// CPU time (user + system) of every thread this process ever ran.
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Clock ticks per second of `/proc/*/stat` times.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}
