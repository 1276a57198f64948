//! Where a translated packet goes: the kernel's FIB decides.

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
    },
    helpers::bpf_fib_lookup,
    programs::XdpContext,
};

use crate::maps::INTERFACES;

const AF_INET: u8 = 2;

pub enum Route {
    /// The destination is on this node (a pod behind a local bridge, or a
    /// local address): hand the packet to the kernel.
    Local,
    /// Out of an uplink towards another node, next hop resolved.
    Remote { ifindex: u32, src_mac: [u8; 6], dst_mac: [u8; 6] },
    /// Out of an uplink, but the kernel has no neighbour entry for the next
    /// hop yet: hand the packet to the kernel, which resolves it.
    RemoteUnresolved { ifindex: u32 },
    /// No route, blackhole, prohibited, forwarding disabled.
    Unreachable,
}

impl Route {
    #[inline(always)]
    pub fn egress_ifindex(&self, ingress: u32) -> u32 {
        match self {
            Route::Remote { ifindex, .. } | Route::RemoteUnresolved { ifindex } => *ifindex,
            _ => ingress,
        }
    }
}

/// Looks up the route from `src` to `dst` (network byte order) as if the
/// packet had arrived on `ingress`.
#[inline(always)]
pub fn lookup(ctx: &XdpContext, ingress: u32, protocol: u8, src: u32, dst: u32) -> Route {
    // SAFETY: all-zero is a valid bpf_fib_lookup.
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.l4_protocol = protocol;
    params.ifindex = ingress;
    params.__bindgen_anon_3.ipv4_src = src;
    params.__bindgen_anon_4.ipv4_dst = dst;
    // SAFETY: params is a properly sized, initialised bpf_fib_lookup.
    let ret = unsafe { bpf_fib_lookup(ctx.ctx as *mut _, &mut params, core::mem::size_of::<FibParams>() as i32, 0) };
    let uplink = params.ifindex == ingress || unsafe { INTERFACES.get(&params.ifindex) }.is_some();
    match ret as u32 {
        BPF_FIB_LKUP_RET_SUCCESS if uplink => {
            Route::Remote { ifindex: params.ifindex, src_mac: params.smac, dst_mac: params.dmac }
        }
        BPF_FIB_LKUP_RET_NO_NEIGH if uplink => Route::RemoteUnresolved { ifindex: params.ifindex },
        BPF_FIB_LKUP_RET_SUCCESS | BPF_FIB_LKUP_RET_NO_NEIGH | BPF_FIB_LKUP_RET_NOT_FWDED => Route::Local,
        _ => Route::Unreachable,
    }
}
