//! Typed handles on the kernel programs' maps.

use anyhow::{Context, Result};
use aya::Ebpf;
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use lb_common::{
    Affinity, AffinityKey, Backend, Config, Flow, FlowKey, Frontend, FrontendKey, Interface, L2Vip, L2VipKey,
    MAP_AFFINITY, MAP_AGENT_STATE, MAP_BACKENDS, MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS, MAP_FRONTENDS,
    MAP_INTERFACES, MAP_L2_VIPS, MAP_MAGLEV, MAP_SERVICE_STATS, MAP_SERVICES, MAP_SOCKET_REVNAT, Service, ServiceStats,
    SocketRevNat, SocketRevNatKey,
};

use super::MaglevSlots;

pub struct DataplaneMaps {
    pub frontends: HashMap<MapData, FrontendKey, Frontend>,
    pub services: Array<MapData, Service>,
    pub backends: HashMap<MapData, u32, Backend>,
    pub maglev: MaglevSlots,
    pub conntrack: HashMap<MapData, FlowKey, Flow>,
    pub interfaces: HashMap<MapData, u32, Interface>,
    pub config: Array<MapData, Config>,
    pub service_stats: PerCpuArray<MapData, ServiceStats>,
    pub counters: PerCpuArray<MapData, u64>,
    pub affinity: HashMap<MapData, AffinityKey, Affinity>,
    pub socket_revnat: HashMap<MapData, SocketRevNatKey, SocketRevNat>,
    pub agent_state: Array<MapData, u64>,
    /// The addresses the ARP responder answers for (see `l2.rs`).
    pub l2_vips: HashMap<MapData, L2VipKey, L2Vip>,
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<Map> {
    ebpf.take_map(name).with_context(|| format!("the eBPF object has no map {name}"))
}

impl DataplaneMaps {
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Self {
            frontends: HashMap::try_from(take(ebpf, MAP_FRONTENDS)?)?,
            services: Array::try_from(take(ebpf, MAP_SERVICES)?)?,
            backends: HashMap::try_from(take(ebpf, MAP_BACKENDS)?)?,
            maglev: MaglevSlots::new(Array::try_from(take(ebpf, MAP_MAGLEV)?)?)?,
            conntrack: HashMap::try_from(take(ebpf, MAP_CONNTRACK)?)?,
            interfaces: HashMap::try_from(take(ebpf, MAP_INTERFACES)?)?,
            config: Array::try_from(take(ebpf, MAP_CONFIG)?)?,
            service_stats: PerCpuArray::try_from(take(ebpf, MAP_SERVICE_STATS)?)?,
            counters: PerCpuArray::try_from(take(ebpf, MAP_COUNTERS)?)?,
            affinity: HashMap::try_from(take(ebpf, MAP_AFFINITY)?)?,
            socket_revnat: HashMap::try_from(take(ebpf, MAP_SOCKET_REVNAT)?)?,
            agent_state: Array::try_from(take(ebpf, MAP_AGENT_STATE)?)?,
            l2_vips: HashMap::try_from(take(ebpf, MAP_L2_VIPS)?)?,
        })
    }
}
