//! The maps shared with userspace (names and value types in `lb_common`).
//! Sizes here are defaults; the agent may override them at load time.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use lb_common::{
    AGENT_STATE_ENTRIES, Affinity, AffinityKey, Backend, COUNTER_COUNT, Config, DEFAULT_AFFINITY_ENTRIES,
    DEFAULT_CONNTRACK_ENTRIES, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_FRONTENDS, DEFAULT_MAX_SERVICES,
    DEFAULT_SOCKET_REVNAT_ENTRIES, Flow, FlowKey, Frontend, FrontendKey, HANDOFF_ENTRIES_UNUSED, Handoff, Interface,
    L2Vip, L2VipKey, MAX_INTERFACES, MAX_L2_VIPS, Service, ServiceStats, SocketRevNat, SocketRevNatKey,
};

#[map]
pub static FRONTENDS: HashMap<FrontendKey, Frontend> = HashMap::with_max_entries(DEFAULT_MAX_FRONTENDS, 0);

#[map]
pub static SERVICES: Array<Service> = Array::with_max_entries(DEFAULT_MAX_SERVICES, 0);

#[map]
pub static BACKENDS: HashMap<u32, Backend> = HashMap::with_max_entries(DEFAULT_MAX_BACKENDS, 0);

/// Maglev rows, one per service id: entry `service_id * M + slot` holds a
/// backend id. Sized `max_services * M` by the agent at load time, and
/// memory-mappable: the agent writes slots as plain stores, not one
/// `bpf()` call each.
#[map]
pub static MAGLEV: Array<u32> = Array::with_max_entries(1, BPF_F_MMAPABLE);

#[map]
pub static CONNTRACK: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(DEFAULT_CONNTRACK_ENTRIES, 0);

#[map]
pub static INTERFACES: HashMap<u32, Interface> = HashMap::with_max_entries(MAX_INTERFACES, 0);

#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map]
pub static SERVICE_STATS: PerCpuArray<ServiceStats> = PerCpuArray::with_max_entries(DEFAULT_MAX_SERVICES, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[inline(always)]
pub fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

/// `sessionAffinity: ClientIP`: the backend each client was last given.
#[map]
pub static AFFINITY: LruHashMap<AffinityKey, Affinity> = LruHashMap::with_max_entries(DEFAULT_AFFINITY_ENTRIES, 0);

/// Socket and backend → the frontend the application asked for (see
/// `sock.rs`).
#[map]
pub static SOCKET_REVNAT: LruHashMap<SocketRevNatKey, SocketRevNat> =
    LruHashMap::with_max_entries(DEFAULT_SOCKET_REVNAT_ENTRIES, 0);

/// The agent's own state across restarts and its heartbeat
/// (`lb_common::AgentState`); only the ARP responder reads it (the
/// heartbeat).
#[map]
pub static AGENT_STATE: Array<u64> = Array::with_max_entries(AGENT_STATE_ENTRIES, 0);

/// The notes `lb_xdp` leaves for `lb_tc_ingress` when the kernel cannot
/// carry them in XDP metadata (see `transmit.rs`); sized by the agent.
#[map]
pub static HANDOFFS: LruHashMap<FlowKey, Handoff> = LruHashMap::with_max_entries(HANDOFF_ENTRIES_UNUSED, 0);

/// The LoadBalancer addresses this node answers ARP for, per uplink
/// (see `arp.rs`).
#[map]
pub static L2_VIPS: HashMap<L2VipKey, L2Vip> = HashMap::with_max_entries(MAX_L2_VIPS, 0);
