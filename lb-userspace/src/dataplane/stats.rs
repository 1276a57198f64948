//! Reading the data path's counters: from the agent's own map handles, or
//! through a [`StatsReader`] that opens the pinned maps itself, so the
//! admin listener reads them (at scrape time) without waiting for the task
//! that writes the maps.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use lb_common::{
    Counter, FLOW_FORWARD, FLOW_SNAT, Flow, FlowKey, MAP_CONNTRACK, MAP_COUNTERS, MAP_SERVICE_STATS, ServiceStats,
};

use super::DataplaneMaps;
use super::pins::PinDir;

/// Global counters summed over CPUs, in `Counter::ALL` order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot(pub Vec<(Counter, u64)>);

impl CounterSnapshot {
    pub fn get(&self, counter: Counter) -> u64 {
        self.0.iter().find(|(c, _)| *c == counter).map(|(_, v)| *v).unwrap_or(0)
    }
}

pub fn read_counters(maps: &DataplaneMaps) -> Result<CounterSnapshot> {
    sum_counters(&maps.counters)
}

fn sum_counters(counters: &PerCpuArray<MapData, u64>) -> Result<CounterSnapshot> {
    let mut out = Vec::with_capacity(Counter::ALL.len());
    for counter in Counter::ALL {
        let per_cpu = counters.get(&(counter as u32), 0)?;
        out.push((counter, per_cpu.iter().sum()));
    }
    Ok(CounterSnapshot(out))
}

/// A service id's packets and bytes, both directions, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// The conntrack table's fill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConntrackFill {
    /// Entries (each flow has a forward and a reply entry).
    pub entries: u64,
    pub capacity: u32,
    /// Masqueraded flows: each holds one source port of the node address.
    pub masquerade_ports: u64,
}

/// The pinned counter and conntrack maps, opened on their own.
pub struct StatsReader {
    service_stats: PerCpuArray<MapData, ServiceStats>,
    counters: PerCpuArray<MapData, u64>,
    conntrack: HashMap<MapData, FlowKey, Flow>,
    conntrack_capacity: u32,
}

fn open(pins: &PinDir, name: &str) -> Result<Map> {
    let path = pins.map(name);
    let data = MapData::from_pin(&path).with_context(|| format!("opening the pinned map {}", path.display()))?;
    Ok(Map::from_map_data(data)?)
}

impl StatsReader {
    /// Opens the maps pinned under `pins`.
    pub fn open(pins: &PinDir) -> Result<Self> {
        let conntrack = open(pins, MAP_CONNTRACK)?;
        let conntrack_capacity = max_entries(&pins.map(MAP_CONNTRACK))?;
        Ok(Self {
            service_stats: PerCpuArray::try_from(open(pins, MAP_SERVICE_STATS)?)?,
            counters: PerCpuArray::try_from(open(pins, MAP_COUNTERS)?)?,
            conntrack: HashMap::try_from(conntrack)?,
            conntrack_capacity,
        })
    }

    pub fn counters(&self) -> Result<CounterSnapshot> {
        sum_counters(&self.counters)
    }

    /// The traffic of each of `ids`.
    pub fn traffic(&self, ids: impl IntoIterator<Item = u32>) -> Result<BTreeMap<u32, Traffic>> {
        let mut out = BTreeMap::new();
        for id in ids {
            let per_cpu =
                self.service_stats.get(&id, 0).with_context(|| format!("reading service id {id}'s counters"))?;
            let mut traffic = Traffic::default();
            for stats in per_cpu.iter() {
                traffic.packets += stats.rx_packets + stats.tx_packets;
                traffic.bytes += stats.rx_bytes + stats.tx_bytes;
            }
            out.insert(id, traffic);
        }
        Ok(out)
    }

    /// Counts the conntrack entries (one walk of the table: about a
    /// microsecond per entry).
    pub fn conntrack_fill(&self) -> ConntrackFill {
        let mut fill = ConntrackFill { capacity: self.conntrack_capacity, ..ConntrackFill::default() };
        // Entries the LRU evicts during the walk end it early: counted as
        // far as it got.
        for (_, flow) in self.conntrack.iter().map_while(Result::ok) {
            fill.entries += 1;
            if flow.direction == FLOW_FORWARD && flow.flags & FLOW_SNAT != 0 {
                fill.masquerade_ports += 1;
            }
        }
        fill
    }

    /// Up to `limit` forward entries whose service id `wanted` accepts.
    pub fn flows(&self, limit: usize, wanted: impl Fn(u32) -> bool) -> Vec<(FlowKey, Flow)> {
        self.conntrack
            .iter()
            .map_while(Result::ok)
            .filter(|(_, flow)| flow.direction == FLOW_FORWARD && wanted(flow.service_id))
            .take(limit)
            .collect()
    }
}

fn max_entries(path: &Path) -> Result<u32> {
    let info = aya::maps::MapInfo::from_pin(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(info.max_entries())
}
