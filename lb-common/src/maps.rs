//! Keys and values of the BPF maps, and the maps' names.
//!
//! Map layout (see ARCHITECTURE.md for the packet path that uses it):
//!
//! | map              | type            | key            | value            |
//! |------------------|-----------------|----------------|------------------|
//! | `FRONTENDS`      | hash            | [`FrontendKey`]| [`Frontend`]     |
//! | `SERVICES`       | array           | service id     | [`Service`]      |
//! | `BACKENDS`       | hash            | backend id     | [`Backend`]      |
//! | `MAGLEV`         | array           | id × M + slot  | backend id       |
//! | `CONNTRACK`      | LRU hash        | [`FlowKey`]    | [`Flow`]         |
//! | `INTERFACES`     | hash            | ifindex        | [`Interface`]    |
//! | `CONFIG`         | array (1)       | 0              | [`Config`]       |
//! | `SERVICE_STATS`  | per-CPU array   | service id     | [`ServiceStats`] |
//! | `COUNTERS`       | per-CPU array   | [`Counter`]    | `u64`            |
//! | `AFFINITY`       | LRU hash        | [`AffinityKey`]| [`Affinity`]     |
//! | `SOCKET_REVNAT`  | LRU hash        | [`SocketRevNatKey`] | [`SocketRevNat`] |
//! | `AGENT_STATE`    | array           | [`AgentState`] | `u64`            |
//! | `HANDOFFS`       | LRU hash        | [`FlowKey`]    | [`Handoff`]      |
//! | `L2_VIPS`        | hash            | [`L2VipKey`]   | [`L2Vip`]        |

pub const MAP_FRONTENDS: &str = "FRONTENDS";
pub const MAP_SERVICES: &str = "SERVICES";
pub const MAP_BACKENDS: &str = "BACKENDS";
pub const MAP_MAGLEV: &str = "MAGLEV";
pub const MAP_CONNTRACK: &str = "CONNTRACK";
pub const MAP_INTERFACES: &str = "INTERFACES";
pub const MAP_CONFIG: &str = "CONFIG";
pub const MAP_SERVICE_STATS: &str = "SERVICE_STATS";
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_AFFINITY: &str = "AFFINITY";
pub const MAP_SOCKET_REVNAT: &str = "SOCKET_REVNAT";
pub const MAP_AGENT_STATE: &str = "AGENT_STATE";
pub const MAP_HANDOFFS: &str = "HANDOFFS";
pub const MAP_L2_VIPS: &str = "L2_VIPS";

/// Every map the agent pins (`--bpf-pin-dir`): the data path's whole state.
pub const PINNED_MAPS: [&str; 14] = [
    MAP_FRONTENDS,
    MAP_SERVICES,
    MAP_BACKENDS,
    MAP_MAGLEV,
    MAP_CONNTRACK,
    MAP_INTERFACES,
    MAP_CONFIG,
    MAP_SERVICE_STATS,
    MAP_COUNTERS,
    MAP_AFFINITY,
    MAP_SOCKET_REVNAT,
    MAP_AGENT_STATE,
    MAP_HANDOFFS,
    MAP_L2_VIPS,
];

/// Indexes of `AGENT_STATE`: what the agent keeps beside the maps so a
/// restarted agent continues where the last one stopped, and its
/// heartbeat, which the ARP responder reads.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    /// The highest backend id ever handed out: ids are never reused, also
    /// across restarts (a conntrack entry naming a removed backend's id must
    /// not find another backend under it).
    BackendIdHighWater = 0,
    /// When the agent last showed it is alive (`bpf_ktime_get_ns()`'s
    /// clock, `CLOCK_MONOTONIC`, in ns). The ARP responder answers only
    /// while it is more recent than [`AgentState::HeartbeatLeaseNs`]: a
    /// hung or stopped agent stops claiming its addresses, as its node
    /// Lease expires and another node takes them over.
    HeartbeatNs = 1,
    /// How old the heartbeat may get, in ns (the node Lease's duration).
    HeartbeatLeaseNs = 2,
}

pub const AGENT_STATE_ENTRIES: u32 = 4;

/// Names of the kernel programs in the object file.
pub const PROG_XDP: &str = "lb_xdp";
pub const PROG_TC_EGRESS: &str = "lb_tc_egress";
pub const PROG_TC_INGRESS: &str = "lb_tc_ingress";
/// The socket programs (cgroup `sock_addr` hooks), attached to the cgroup
/// given by `--cgroup-root`.
pub const PROG_SOCK_CONNECT4: &str = "lb_sock_connect4";
pub const PROG_SOCK_SENDMSG4: &str = "lb_sock_sendmsg4";
pub const PROG_SOCK_RECVMSG4: &str = "lb_sock_recvmsg4";
pub const PROG_SOCK_GETPEERNAME4: &str = "lb_sock_getpeername4";
/// The same hooks for IPv6 sockets (IPv4-mapped addresses only).
pub const PROG_SOCK_CONNECT6: &str = "lb_sock_connect6";
pub const PROG_SOCK_SENDMSG6: &str = "lb_sock_sendmsg6";
pub const PROG_SOCK_RECVMSG6: &str = "lb_sock_recvmsg6";
pub const PROG_SOCK_GETPEERNAME6: &str = "lb_sock_getpeername6";

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;

/// Compile-time capacities of the maps; userspace may lower or raise some of
/// them at load time (`EbpfLoader::set_max_entries`).
pub const DEFAULT_MAX_FRONTENDS: u32 = 65_536;
pub const DEFAULT_MAX_SERVICES: u32 = 1_024;
pub const DEFAULT_MAX_BACKENDS: u32 = 65_536;
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;
pub const MAX_INTERFACES: u32 = 64;
pub const DEFAULT_AFFINITY_ENTRIES: u32 = 65_536;
pub const DEFAULT_SOCKET_REVNAT_ENTRIES: u32 = 65_536;

/// A frontend: an address, port and protocol on which a service is offered
/// (node IP × nodePort, LoadBalancer ingress IP × port, external IP × port,
/// and for the socket hooks cluster IP × port), and which hook sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrontendKey {
    /// IPv4 address, network byte order.
    pub addr: u32,
    /// Port, network byte order.
    pub port: u16,
    pub protocol: u8,
    /// [`SCOPE_XDP`] or [`SCOPE_SOCKET`]: the same address may lead to
    /// different endpoints for traffic from outside (`externalTrafficPolicy`)
    /// and for connects from the cluster's own sockets.
    pub scope: u8,
}

/// Frontends of traffic arriving on an uplink (the XDP program).
pub const SCOPE_XDP: u8 = 0;
/// Frontends of connects and sends of processes in the cgroup (the socket
/// programs).
pub const SCOPE_SOCKET: u8 = 1;

/// Masquerade (SNAT to the node address) flows whose backend is reached
/// through another node (`externalTrafficPolicy: Cluster`).
pub const FRONTEND_SNAT: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frontend {
    pub service_id: u32,
    pub flags: u32,
}

/// One service port (Kubernetes' "ServicePortName"): the unit that owns a
/// set of backends and a Maglev row. Indexed by service id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Service {
    /// Number of usable backends; 0 means new flows are rejected with ICMP
    /// port unreachable (connects with `ECONNREFUSED`), as kube-proxy does,
    /// unless [`SERVICE_DROP_WHEN_EMPTY`] is set.
    pub backend_count: u32,
    /// `SERVICE_*` flags.
    pub flags: u32,
    /// `sessionAffinity: ClientIP`: how long a client keeps its backend
    /// after its last new flow, in seconds; 0: no affinity.
    pub affinity_timeout_s: u32,
}

/// The service has endpoints, but none this view may use (a `Local`
/// traffic policy on a node without local endpoints): new flows are
/// dropped, not rejected, as kube-proxy does.
pub const SERVICE_DROP_WHEN_EMPTY: u32 = 1;

/// Session affinity: which backend a client was last given for a service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// The client: its IPv4 address (network byte order, XDP) or its
    /// network namespace cookie (socket hooks).
    pub client: u64,
    pub service_id: u32,
    /// [`SCOPE_XDP`] or [`SCOPE_SOCKET`]: the kind of `client`.
    pub scope: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Affinity {
    pub backend_id: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` of the client's last new flow.
    pub last_ns: u64,
}

/// What a socket was connected or sent to, as the socket hooks rewrote it:
/// the socket and the backend it really talks to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SocketRevNatKey {
    /// `bpf_get_socket_cookie()`.
    pub cookie: u64,
    /// Backend address and port, network byte order.
    pub addr: u32,
    pub port: u16,
    pub _pad: u16,
}

/// The frontend the application asked for: what `getpeername()` and
/// `recvmsg()` show it instead of the backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SocketRevNat {
    pub addr: u32,
    pub port: u16,
    pub _pad: u16,
}

/// A backend of one service port. Ids are never reused while the agent
/// runs, so a conntrack entry whose backend id is gone knows its backend was
/// removed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Pod (or endpoint) IPv4 address, network byte order.
    pub addr: u32,
    /// Target port, network byte order.
    pub port: u16,
    /// `BACKEND_*` flags.
    pub flags: u16,
}

/// The backend's endpoint is terminating while the service has ready
/// ones: flows already open to it keep going to it (conntrack finds it),
/// but no new flow is given to it — it is in no Maglev row, and session
/// affinity that points at it is ignored (Cilium's terminating backends,
/// kube-proxy leaving established connections to terminating pods).
pub const BACKEND_DRAINING: u16 = 1;

/// A 5-tuple as it appears in a packet at the hook that looks it up.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_addr: u32,
    pub dst_addr: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub _pad: [u8; 3],
}

/// Conntrack entry: what to rewrite a packet of this flow to.
///
/// A forward entry (client → frontend) rewrites to (new source = client or
/// SNAT address, new destination = backend). A reply entry (backend →
/// client or SNAT address) rewrites to (new source = frontend, new
/// destination = client) and, when it is handled in XDP, says which L2
/// header to send it back with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flow {
    pub new_src_addr: u32,
    pub new_dst_addr: u32,
    pub new_src_port: u16,
    pub new_dst_port: u16,
    /// Forward entries: the backend chosen. Reply entries: the same id.
    pub backend_id: u32,
    pub service_id: u32,
    /// Reply entries handled in XDP: interface to send the reply out of.
    pub ifindex: u32,
    /// `bpf_ktime_get_ns()` of the last packet seen.
    pub last_seen_ns: u64,
    /// Reply entries handled in XDP: Ethernet source and destination.
    pub reply_src_mac: [u8; 6],
    pub reply_dst_mac: [u8; 6],
    pub direction: u8,
    pub flags: u8,
    pub _pad: [u8; 2],
}

pub const FLOW_FORWARD: u8 = 0;
pub const FLOW_REPLY: u8 = 1;

/// The flow was source-NATed to the node address.
pub const FLOW_SNAT: u8 = 1;
/// A TCP FIN or RST was seen: the entry expires after the closing timeout.
pub const FLOW_CLOSING: u8 = 2;
/// The backend is on this node: packets are handed to the kernel after DNAT
/// and replies are reverse-NATed by the TC egress program.
pub const FLOW_LOCAL: u8 = 4;

/// An interface the agent manages (an uplink).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Interface {
    /// Address used to masquerade flows leaving through this interface,
    /// network byte order.
    pub snat_addr: u32,
    /// `INTERFACE_*` flags.
    pub flags: u32,
}

/// Frames arriving on, or leaving through, this interface are finished by
/// TC, not by XDP: the XDP program rewrites them (addresses, ports, TTL,
/// MACs, the IPv4 checksum), leaves a [`Handoff`] in the frame's metadata
/// and passes it; the TC ingress program of the interface it arrived on
/// fixes the L4 checksum and redirects the skb (or lets it into the stack).
/// For drivers whose XDP transmit depends on the other end (a veth delivers
/// `XDP_TX` frames only to a peer that runs an XDP program itself) and
/// whose frames may carry a partial checksum (`CHECKSUM_PARTIAL`, which
/// only the skb knows of: a veth passes on what the sender's stack left).
pub const INTERFACE_TC_TRANSMIT: u32 = 1;

/// The note `lb_xdp` leaves in a frame's XDP metadata for `lb_tc_ingress`:
/// "this frame is translated; fix its L4 checksum by these differences and
/// send it out of `ifindex`". XDP metadata is at most 32 bytes, in 4-byte
/// steps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Handoff {
    /// [`HANDOFF_MAGIC`]: metadata another program left is not ours.
    pub magic: u32,
    /// Where to send the frame; 0: into this node's stack (a local
    /// backend, or a next hop the kernel must resolve).
    pub ifindex: u32,
    /// The ones'-complement difference the rewrite made to the L4
    /// pseudo-header (addresses) …
    pub l4_pseudo_diff: u32,
    /// … and to the ports (as `bpf_csum_diff` computes it).
    pub l4_ports_diff: u32,
    /// Offset of the L4 checksum from the start of the frame; 0: nothing
    /// to fix (an ICMP error built whole by XDP).
    pub l4_check_off: u16,
    /// Non-zero for UDP, whose zero checksum means "none".
    pub udp: u8,
    pub _pad: u8,
}

/// `lbtx`.
pub const HANDOFF_MAGIC: u32 = 0x6c62_7478;

/// The global (`.rodata`, set at load) that says where `lb_xdp` leaves its
/// [`Handoff`] notes: non-zero, in the frame's XDP metadata; zero, in the
/// `HANDOFFS` map, for kernels whose verifier refuses
/// `bpf_xdp_adjust_meta`. The branch not taken is never verified.
pub const GLOBAL_HANDOFF_IN_METADATA: &str = "HANDOFF_IN_METADATA";

/// The IPv4 flag bit (reserved, "must be zero", RFC 791) that marks a frame
/// whose note is in `HANDOFFS`, under the translated frame's [`FlowKey`]
/// (ports zero for protocols without) (network byte order, in the flags and
/// fragment offset word). It also keeps GRO from merging such frames,
/// whose notes are one per frame. `lb_tc_ingress` clears it.
pub const IP_FLAG_HANDED_OFF_BE: u16 = 0x8000u16.to_be();

/// `HANDOFFS` entries when the notes go there: one per translated flow
/// direction in flight, so as many as conntrack has (the agent sizes it so).
/// When notes go in the metadata the map is unused and kept small.
pub const HANDOFF_ENTRIES_UNUSED: u32 = 64;

/// A LoadBalancer address this node answers ARP requests for, on one
/// uplink (MetalLB's layer-2 mode; IPv4 only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct L2VipKey {
    /// The uplink the request arrives on.
    pub ifindex: u32,
    /// The address asked for, network byte order.
    pub addr: u32,
}

/// What to answer with: the uplink's own Ethernet address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct L2Vip {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Capacity of `L2_VIPS`: addresses announced by one node × uplinks.
pub const MAX_L2_VIPS: u32 = 16_384;

/// Run-time settings of the data path (`CONFIG[0]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Maglev table size M (prime).
    pub maglev_size: u32,
    /// Number of Maglev rows (= `SERVICES` entries).
    pub max_services: u32,
    /// Masquerade source ports, host byte order, inclusive.
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    pub tcp_timeout_s: u32,
    pub tcp_closing_timeout_s: u32,
    pub udp_timeout_s: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            maglev_size: 16_381,
            max_services: DEFAULT_MAX_SERVICES,
            snat_port_min: 61_000,
            snat_port_max: 65_535,
            tcp_timeout_s: 21_600,
            tcp_closing_timeout_s: 10,
            udp_timeout_s: 60,
        }
    }
}

/// Per-service traffic counters (summed over CPUs in userspace).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceStats {
    /// Client → service packets and bytes.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Service → client (reverse-NATed) packets and bytes.
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Global data-path counters: why packets took the path they took.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Not IPv4 (ARP, IPv6, VLAN-tagged, ...): passed to the stack.
    PassNotIpv4 = 0,
    /// Headers cut short by the end of the packet: passed to the stack.
    PassTruncated,
    /// IPv4 header with options: passed to the stack.
    PassIpOptions,
    /// IPv4 fragment: passed to the stack.
    PassFragment,
    /// Neither a frontend nor a reply of a tracked flow: passed untouched.
    PassNotService,
    /// A new flow was created.
    FlowNew,
    /// A packet of a tracked flow (either direction) was translated.
    FlowHit,
    /// A tracked flow's backend was removed; the flow was re-balanced.
    FlowBackendGone,
    /// New flow to a service without backends: answered ICMP port unreachable.
    RejectNoBackend,
    /// Sent back out of the interface it came in on.
    Tx,
    /// Redirected to another interface.
    Redirect,
    /// Translated and handed to the kernel (local backend, or next hop
    /// not resolved yet).
    PassLocal,
    PassNeighbourUnresolved,
    /// No route to the backend: dropped.
    DropNoRoute,
    /// No masquerade port was free for the flow: dropped.
    DropSnatExhausted,
    /// Inconsistent maps (a row points to a missing backend): dropped.
    DropNoBackend,
    /// More than the allowed rejections per second on this CPU: dropped
    /// instead of answered (like the kernel's ICMP rate limit).
    DropRejectRateLimited,
    /// TC egress rewrote a reply from a local backend.
    TcReplyNat,
    /// A translated frame was handed to TC ingress to be finished (one of
    /// its interfaces has [`INTERFACE_TC_TRANSMIT`]).
    XdpHandoff,
    /// The driver keeps no XDP metadata, so the frame could not be handed
    /// to TC: dropped.
    DropHandoff,
    /// TC ingress finished a frame handed over by XDP.
    TcHandoff,
    /// New flow to a service whose endpoints are all on other nodes while
    /// its traffic policy is `Local`: dropped (kube-proxy's rule).
    DropNoLocalBackend,
    /// A connect or send to a service frontend was sent to a backend by a
    /// socket hook.
    SockTranslated,
    /// A connect or send to a service without endpoints: refused
    /// (`ECONNREFUSED`).
    SockRefused,
    /// A connect or send to a `Local`-policy service without endpoints on
    /// this node: failed as a dropped flow would (`ETIMEDOUT`).
    SockDropped,
    /// `getpeername()`/`recvmsg()` of a translated socket showed the
    /// frontend instead of the backend.
    SockRevNat,
    /// An ARP request for an address this node announces was answered.
    ArpReply,
    /// An ARP request for an address this node announces was left to the
    /// stack unanswered: the agent's heartbeat is older than its lease.
    ArpAgentStale,
    /// An IPv4 frame arrived already carrying lb's hand-off mark (the
    /// reserved flag) on an uplink whose frames TC finishes with notes in
    /// `HANDOFFS`: it cannot be told from lb's own, so it is dropped.
    DropForgedMark,
    /// Must stay last.
    Max,
}

pub const COUNTER_COUNT: u32 = Counter::Max as u32;

impl Counter {
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::PassNotIpv4,
        Counter::PassTruncated,
        Counter::PassIpOptions,
        Counter::PassFragment,
        Counter::PassNotService,
        Counter::FlowNew,
        Counter::FlowHit,
        Counter::FlowBackendGone,
        Counter::RejectNoBackend,
        Counter::Tx,
        Counter::Redirect,
        Counter::PassLocal,
        Counter::PassNeighbourUnresolved,
        Counter::DropNoRoute,
        Counter::DropSnatExhausted,
        Counter::DropNoBackend,
        Counter::DropRejectRateLimited,
        Counter::TcReplyNat,
        Counter::XdpHandoff,
        Counter::DropHandoff,
        Counter::TcHandoff,
        Counter::DropNoLocalBackend,
        Counter::SockTranslated,
        Counter::SockRefused,
        Counter::SockDropped,
        Counter::SockRevNat,
        Counter::ArpReply,
        Counter::ArpAgentStale,
        Counter::DropForgedMark,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Counter::PassNotIpv4 => "pass_not_ipv4",
            Counter::PassTruncated => "pass_truncated",
            Counter::PassIpOptions => "pass_ip_options",
            Counter::PassFragment => "pass_fragment",
            Counter::PassNotService => "pass_not_service",
            Counter::FlowNew => "flow_new",
            Counter::FlowHit => "flow_hit",
            Counter::FlowBackendGone => "flow_backend_gone",
            Counter::RejectNoBackend => "reject_no_backend",
            Counter::Tx => "tx",
            Counter::Redirect => "redirect",
            Counter::PassLocal => "pass_local",
            Counter::PassNeighbourUnresolved => "pass_neighbour_unresolved",
            Counter::DropNoRoute => "drop_no_route",
            Counter::DropSnatExhausted => "drop_snat_exhausted",
            Counter::DropNoBackend => "drop_no_backend",
            Counter::DropRejectRateLimited => "drop_reject_rate_limited",
            Counter::TcReplyNat => "tc_reply_nat",
            Counter::XdpHandoff => "xdp_handoff",
            Counter::DropHandoff => "drop_handoff",
            Counter::TcHandoff => "tc_handoff",
            Counter::DropNoLocalBackend => "drop_no_local_backend",
            Counter::SockTranslated => "sock_translated",
            Counter::SockRefused => "sock_refused",
            Counter::SockDropped => "sock_dropped",
            Counter::SockRevNat => "sock_revnat",
            Counter::ArpReply => "arp_reply",
            Counter::ArpAgentStale => "arp_agent_stale",
            Counter::DropForgedMark => "drop_forged_mark",
            Counter::Max => "max",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)] structs of integers and byte
    // arrays with explicit padding fields: every bit pattern is valid and
    // there are no implicit padding bytes.
    unsafe impl aya::Pod for FrontendKey {}
    unsafe impl aya::Pod for Frontend {}
    unsafe impl aya::Pod for Service {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for Flow {}
    unsafe impl aya::Pod for Interface {}
    unsafe impl aya::Pod for Handoff {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for ServiceStats {}
    unsafe impl aya::Pod for AffinityKey {}
    unsafe impl aya::Pod for Affinity {}
    unsafe impl aya::Pod for SocketRevNatKey {}
    unsafe impl aya::Pod for SocketRevNat {}
    unsafe impl aya::Pod for L2VipKey {}
    unsafe impl aya::Pod for L2Vip {}
}

#[cfg(feature = "user")]
mod ctors {
    use super::*;
    use std::net::Ipv4Addr;

    /// An address as stored in maps (network byte order in a `u32`).
    pub fn addr_to_map(ip: Ipv4Addr) -> u32 {
        u32::from_ne_bytes(ip.octets())
    }

    /// A port as stored in maps (network byte order in a `u16`).
    pub fn port_to_map(port: u16) -> u16 {
        port.to_be()
    }

    /// An address as read from a map.
    pub fn addr_from_map(addr: u32) -> Ipv4Addr {
        Ipv4Addr::from(addr.to_ne_bytes())
    }

    impl FrontendKey {
        pub fn new(addr: Ipv4Addr, port: u16, protocol: u8, scope: u8) -> Self {
            Self { addr: addr_to_map(addr), port: port_to_map(port), protocol, scope }
        }
    }

    /// `10.96.0.10:53/17 (socket)`.
    impl core::fmt::Display for FrontendKey {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            let scope = if self.scope == SCOPE_SOCKET { "socket" } else { "xdp" };
            write!(f, "{}:{}/{} ({scope})", addr_from_map(self.addr), u16::from_be(self.port), self.protocol)
        }
    }

    /// `10.244.1.5:8080`.
    impl core::fmt::Display for Backend {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "{}:{}", addr_from_map(self.addr), u16::from_be(self.port))
        }
    }

    impl Backend {
        pub fn new(addr: Ipv4Addr, port: u16) -> Self {
            Self { addr: addr_to_map(addr), port: port_to_map(port), flags: 0 }
        }

        /// A backend that keeps its open flows but takes no new one
        /// ([`BACKEND_DRAINING`]).
        pub fn draining(addr: Ipv4Addr, port: u16) -> Self {
            Self { flags: BACKEND_DRAINING, ..Self::new(addr, port) }
        }
    }

    impl FlowKey {
        pub fn new(src: Ipv4Addr, src_port: u16, dst: Ipv4Addr, dst_port: u16, protocol: u8) -> Self {
            Self {
                src_addr: addr_to_map(src),
                dst_addr: addr_to_map(dst),
                src_port: port_to_map(src_port),
                dst_port: port_to_map(dst_port),
                protocol,
                _pad: [0; 3],
            }
        }
    }
}

#[cfg(feature = "user")]
pub use ctors::*;

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FrontendKey>(), 8);
        assert_eq!(size_of::<Frontend>(), 8);
        assert_eq!(size_of::<Service>(), 12);
        assert_eq!(size_of::<Backend>(), 8);
        assert_eq!(size_of::<FlowKey>(), 16);
        assert_eq!(size_of::<Flow>(), 48);
        assert_eq!(size_of::<Interface>(), 8);
        // XDP metadata is at most 32 bytes, in 4-byte steps.
        assert_eq!(size_of::<Handoff>(), 20);
        assert_eq!(size_of::<Config>(), 24);
        assert_eq!(size_of::<ServiceStats>(), 32);
        assert_eq!(size_of::<AffinityKey>(), 16);
        assert_eq!(size_of::<Affinity>(), 16);
        assert_eq!(size_of::<SocketRevNatKey>(), 16);
        assert_eq!(size_of::<SocketRevNat>(), 8);
        assert_eq!(size_of::<L2VipKey>(), 8);
        assert_eq!(size_of::<L2Vip>(), 8);
    }

    #[test]
    fn counter_names_are_unique_and_complete() {
        let names: std::collections::BTreeSet<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), COUNTER_COUNT as usize);
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
