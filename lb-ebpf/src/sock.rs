//! The socket programs: load balancing at `connect()`/`sendmsg()` for the
//! processes of the cgroup the agent attaches them to (pods, and the
//! node's host-network processes).
//!
//! * `connect4` (TCP and UDP) and `sendmsg4` (unconnected UDP): a
//!   destination that is a socket-scope frontend (cluster IP × port, and
//!   the node port, LoadBalancer and external addresses, so in-cluster
//!   clients of those do not hairpin through the uplink) is replaced by a
//!   backend. The socket then talks to the pod directly: no packet is ever
//!   translated, so replies need nothing. The choice is remembered in
//!   `SOCKET_REVNAT` under (socket cookie, backend).
//! * The `*6` hooks do the same for IPv6 sockets whose address is an
//!   IPv4-mapped one (`::ffff:a.b.c.d`): dual-stack clients (the JVM's
//!   default) reach IPv4 Services that way.
//! * `recvmsg4` (UDP) and `getpeername4`: an address found in
//!   `SOCKET_REVNAT` for this socket is shown as the frontend it stands
//!   for, so the application sees the Service it asked for.
//!
//! A service without endpoints refuses the connect or send with
//! `ECONNREFUSED` (what kube-proxy's REJECT gives); a `Local`-policy
//! service whose endpoints are all elsewhere fails it with `ETIMEDOUT`,
//! what a client of a dropped flow ends with. The errno is set with
//! `bpf_set_retval`, so the application does not see `EPERM`.

use aya_ebpf::EbpfContext;
use aya_ebpf::bindings::bpf_sock_addr;
use aya_ebpf::helpers::{bpf_get_netns_cookie, bpf_get_prandom_u32, bpf_get_socket_cookie, bpf_set_retval};
use aya_ebpf::programs::SockAddrContext;
use lb_common::{
    Counter, FrontendKey, PROTO_TCP, PROTO_UDP, SCOPE_SOCKET, SERVICE_DROP_WHEN_EMPTY, SocketRevNat, SocketRevNatKey,
};

use crate::maps::{FRONTENDS, SERVICES, SOCKET_REVNAT, config};
use crate::select::{Client, pick};
use crate::stats::count;

/// Return values of sock_addr programs.
const ALLOW: i32 = 1;
const DENY: i32 = 0;

const ETIMEDOUT: i32 = 110;
const ECONNREFUSED: i32 = 111;
const EHOSTUNREACH: i32 = 113;

/// Where a hook's address is: an IPv4 socket's `user_ip4`, or an IPv6
/// socket's `user_ip6` holding an IPv4-mapped address (`::ffff:a.b.c.d`,
/// what dual-stack clients such as the JVM use for IPv4 peers).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6Mapped,
}

/// `::ffff:0:0/96` as the first three words of `user_ip6` (network byte
/// order read as native `u32`s).
const MAPPED_PREFIX: [u32; 3] = [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff])];

impl Family {
    /// The IPv4 address the hook is about, if any.
    #[inline(always)]
    fn addr(self, sa: &bpf_sock_addr) -> Option<u32> {
        match self {
            Family::V4 => Some(sa.user_ip4),
            Family::V6Mapped => {
                let ip6 = [sa.user_ip6[0], sa.user_ip6[1], sa.user_ip6[2]];
                (ip6 == MAPPED_PREFIX).then_some(sa.user_ip6[3])
            }
        }
    }

    #[inline(always)]
    fn set_addr(self, sa: &mut bpf_sock_addr, addr: u32) {
        match self {
            Family::V4 => sa.user_ip4 = addr,
            Family::V6Mapped => sa.user_ip6[3] = addr,
        }
    }
}

/// `connect4` and `connect6`: TCP and UDP.
#[inline(always)]
pub fn connect(ctx: &SockAddrContext, family: Family) -> i32 {
    // SAFETY: the kernel hands the program a valid context.
    let sa = unsafe { &mut *ctx.sock_addr };
    match sa.protocol as u8 {
        PROTO_TCP | PROTO_UDP => translate(ctx, sa, family),
        _ => ALLOW,
    }
}

/// `sendmsg4` and `sendmsg6`: unconnected UDP (`sendto()`, `sendmsg()`
/// with an address).
#[inline(always)]
pub fn sendmsg(ctx: &SockAddrContext, family: Family) -> i32 {
    // SAFETY: as above.
    let sa = unsafe { &mut *ctx.sock_addr };
    if sa.protocol as u8 != PROTO_UDP {
        return ALLOW;
    }
    translate(ctx, sa, family)
}

/// `recvmsg4/6` and `getpeername4/6`: show the frontend instead of the
/// backend. These hooks must allow.
#[inline(always)]
pub fn reverse(ctx: &SockAddrContext, family: Family) -> i32 {
    // SAFETY: as above.
    let sa = unsafe { &mut *ctx.sock_addr };
    let Some(addr) = family.addr(sa) else { return ALLOW };
    // SAFETY: the helper takes this program type's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let key = SocketRevNatKey { cookie, addr, port: sa.user_port as u16, _pad: 0 };
    // SAFETY: copied out at once.
    if let Some(frontend) = unsafe { SOCKET_REVNAT.get(&key) }.copied() {
        family.set_addr(sa, frontend.addr);
        sa.user_port = frontend.port as u32;
        count(Counter::SockRevNat);
    }
    ALLOW
}

#[inline(always)]
fn translate(ctx: &SockAddrContext, sa: &mut bpf_sock_addr, family: Family) -> i32 {
    let Some(addr) = family.addr(sa) else { return ALLOW };
    let frontend = FrontendKey { addr, port: sa.user_port as u16, protocol: sa.protocol as u8, scope: SCOPE_SOCKET };
    // SAFETY: copied out at once.
    let Some(fe) = (unsafe { FRONTENDS.get(&frontend) }).copied() else {
        return ALLOW;
    };
    let Some(service) = SERVICES.get(fe.service_id).copied() else {
        return ALLOW;
    };
    if service.backend_count == 0 {
        return if service.flags & SERVICE_DROP_WHEN_EMPTY != 0 {
            count(Counter::SockDropped);
            fail(ETIMEDOUT)
        } else {
            count(Counter::SockRefused);
            fail(ECONNREFUSED)
        };
    }
    let Some(cfg) = config() else { return ALLOW };
    // SAFETY: helpers that take this program type's context or nothing.
    let (hash, netns, cookie) =
        unsafe { (bpf_get_prandom_u32(), bpf_get_netns_cookie(ctx.as_ptr()), bpf_get_socket_cookie(ctx.as_ptr())) };
    let client = Client { key: netns, scope: SCOPE_SOCKET as u32 };
    let Some((_, backend)) = pick(fe.service_id, &service, hash, client, cfg) else {
        count(Counter::DropNoBackend);
        return fail(EHOSTUNREACH);
    };
    let key = SocketRevNatKey { cookie, addr: backend.addr, port: backend.port, _pad: 0 };
    let shown = SocketRevNat { addr: frontend.addr, port: frontend.port, _pad: 0 };
    let _ = SOCKET_REVNAT.insert(&key, &shown, 0);
    family.set_addr(sa, backend.addr);
    sa.user_port = backend.port as u32;
    count(Counter::SockTranslated);
    ALLOW
}

/// Fails the system call with `errno`.
#[inline(always)]
fn fail(errno: i32) -> i32 {
    // SAFETY: allowed in connect and sendmsg hooks.
    unsafe { bpf_set_retval(-errno) };
    DENY
}
