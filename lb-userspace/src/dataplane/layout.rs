//! Map layouts across agent versions: what a pinned map must look like to be
//! adopted, and what happens when it does not.
//!
//! aya reuses a pinned map of the same name without looking at it, so the
//! agent compares every pinned map with the map this agent's object file
//! would create (type, key size, value size, max entries, flags) first:
//!
//! - **same layout**: adopted as it is;
//! - **another layout**: a new map is created and pinned beside it
//!   (`NAME_new`); the old one stays pinned, and in use by the old program,
//!   until the new program is live, then the new pin takes its name.
//!   - State the agent cannot rebuild (`CONNTRACK`, `AFFINITY`,
//!     `SOCKET_REVNAT`, the counters, `AGENT_STATE`) is copied over when
//!     only the size or flags changed (entries beyond a smaller size are
//!     dropped); with another type, key or value it starts empty.
//!   - The service tables (`FRONTENDS`, `SERVICES`, `BACKENDS`, `MAGLEV`)
//!     refer to each other by id, so they are replaced together, and
//!     filled from the snapshot before the program that reads them is
//!     attached. `INTERFACES` and `CONFIG` are rewritten too.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use aya::Pod;
use aya::maps::{Array, HashMap, Map, MapData, MapInfo, PerCpuArray, PerCpuValues};
use lb_common::{
    Affinity, AffinityKey, Flow, FlowKey, MAP_AFFINITY, MAP_AGENT_STATE, MAP_BACKENDS, MAP_CONNTRACK, MAP_COUNTERS,
    MAP_FRONTENDS, MAP_MAGLEV, MAP_SERVICE_STATS, MAP_SERVICES, MAP_SOCKET_REVNAT, ServiceStats, SocketRevNat,
    SocketRevNatKey,
};

/// The maps that refer to each other by service and backend id.
pub const SERVICE_TABLES: [&str; 4] = [MAP_FRONTENDS, MAP_SERVICES, MAP_BACKENDS, MAP_MAGLEV];

/// Maps whose contents the agent cannot rebuild from the cluster.
pub const STATE_MAPS: [&str; 6] =
    [MAP_CONNTRACK, MAP_AFFINITY, MAP_SOCKET_REVNAT, MAP_COUNTERS, MAP_SERVICE_STATS, MAP_AGENT_STATE];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl fmt::Display for MapLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {}, key {} B, value {} B, {} entries, flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.flags
        )
    }
}

impl MapLayout {
    pub fn of_pin(path: &Path) -> Result<Self> {
        let info = MapInfo::from_pin(path).with_context(|| format!("reading the pinned map {}", path.display()))?;
        Ok(Self {
            map_type: info.map_type().map(|t| t as u32).unwrap_or(u32::MAX),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            flags: info.map_flags(),
        })
    }

    /// Entries can be copied between the two (only size or flags differ).
    fn copyable_from(&self, old: &MapLayout) -> bool {
        self.map_type == old.map_type && self.key_size == old.key_size && self.value_size == old.value_size
    }
}

/// The layouts this agent's object file creates, with the agent's sizes.
pub fn expected(object: &[u8], max_entries: &BTreeMap<&str, u32>) -> Result<BTreeMap<String, MapLayout>> {
    let object = aya_obj::Object::parse(object).context("parsing the eBPF object")?;
    Ok(object
        .maps
        .iter()
        .map(|(name, map)| {
            let layout = MapLayout {
                map_type: map.map_type(),
                key_size: map.key_size(),
                value_size: map.value_size(),
                max_entries: max_entries.get(name.as_str()).copied().unwrap_or_else(|| map.max_entries()),
                flags: map.map_flags(),
            };
            (name.clone(), layout)
        })
        .collect())
}

/// What to do with one map's pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinAction {
    /// Nothing pinned: create and pin.
    Create,
    /// Pinned with this layout: use it.
    Adopt,
    /// Pinned with another layout (`old`): create a new one, staged.
    Replace { old: MapLayout, copy: bool },
}

/// Decides for every map, given its expected layout and the pinned one.
pub fn decide(
    expected: &BTreeMap<String, MapLayout>,
    pinned: &BTreeMap<String, MapLayout>,
) -> BTreeMap<String, PinAction> {
    let mut actions: BTreeMap<String, PinAction> = expected
        .iter()
        .map(|(name, layout)| {
            let action = match pinned.get(name) {
                None => PinAction::Create,
                Some(old) if old == layout => PinAction::Adopt,
                Some(old) => PinAction::Replace {
                    old: *old,
                    copy: STATE_MAPS.contains(&name.as_str()) && layout.copyable_from(old),
                },
            };
            (name.clone(), action)
        })
        .collect();
    let group_replaced =
        SERVICE_TABLES.iter().any(|name| matches!(actions.get(*name), Some(PinAction::Replace { .. })));
    if group_replaced {
        for name in SERVICE_TABLES {
            if let (Some(action @ PinAction::Adopt), Some(old)) = (actions.get_mut(name), pinned.get(name)) {
                *action = PinAction::Replace { old: *old, copy: false };
            }
        }
    }
    actions
}

/// Copies the entries of the old pinned map `name` into its replacement;
/// returns how many were copied.
pub fn copy_entries(name: &str, old: &Path, new: &mut Map) -> Result<usize> {
    let old = Map::from_map_data(MapData::from_pin(old)?)?;
    match name {
        MAP_CONNTRACK => copy_hash::<FlowKey, Flow>(old, new),
        MAP_AFFINITY => copy_hash::<AffinityKey, Affinity>(old, new),
        MAP_SOCKET_REVNAT => copy_hash::<SocketRevNatKey, SocketRevNat>(old, new),
        MAP_COUNTERS => copy_per_cpu_array::<u64>(old, new),
        MAP_SERVICE_STATS => copy_per_cpu_array::<ServiceStats>(old, new),
        MAP_AGENT_STATE => copy_array::<u64>(old, new),
        _ => Ok(0),
    }
}

fn copy_hash<K: Pod, V: Pod>(old: Map, new: &mut Map) -> Result<usize> {
    let old: HashMap<MapData, K, V> = HashMap::try_from(old)?;
    let mut new: HashMap<&mut MapData, K, V> = HashMap::try_from(new)?;
    let mut copied = 0;
    for entry in old.iter() {
        let (key, value) = entry?;
        // A full new map (smaller than the old) refuses the rest.
        if new.insert(key, value, 0).is_ok() {
            copied += 1;
        }
    }
    Ok(copied)
}

fn copy_array<V: Pod>(old: Map, new: &mut Map) -> Result<usize> {
    let old: Array<MapData, V> = Array::try_from(old)?;
    let mut new: Array<&mut MapData, V> = Array::try_from(new)?;
    let n = old.len().min(new.len());
    for index in 0..n {
        new.set(index, old.get(&index, 0)?, 0)?;
    }
    Ok(n as usize)
}

fn copy_per_cpu_array<V: Pod>(old: Map, new: &mut Map) -> Result<usize> {
    let old: PerCpuArray<MapData, V> = PerCpuArray::try_from(old)?;
    let mut new: PerCpuArray<&mut MapData, V> = PerCpuArray::try_from(new)?;
    let n = old.len().min(new.len());
    for index in 0..n {
        let values: Vec<V> = old.get(&index, 0)?.iter().copied().collect();
        new.set(index, PerCpuValues::try_from(values)?, 0)?;
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(max_entries: u32, value_size: u32) -> MapLayout {
        MapLayout { map_type: 9, key_size: 16, value_size, max_entries, flags: 0 }
    }

    fn maps(entries: &[(&str, MapLayout)]) -> BTreeMap<String, MapLayout> {
        entries.iter().map(|(n, l)| (n.to_string(), *l)).collect()
    }

    #[test]
    fn same_layouts_are_adopted_and_missing_ones_created() {
        let expected = maps(&[(MAP_CONNTRACK, layout(1000, 48)), (MAP_AFFINITY, layout(10, 16))]);
        let pinned = maps(&[(MAP_CONNTRACK, layout(1000, 48))]);
        let actions = decide(&expected, &pinned);
        assert_eq!(actions[MAP_CONNTRACK], PinAction::Adopt);
        assert_eq!(actions[MAP_AFFINITY], PinAction::Create);
    }

    #[test]
    fn state_is_copied_when_only_the_size_changed() {
        let expected = maps(&[(MAP_CONNTRACK, layout(2000, 48)), (MAP_AFFINITY, layout(10, 24))]);
        let pinned = maps(&[(MAP_CONNTRACK, layout(1000, 48)), (MAP_AFFINITY, layout(10, 16))]);
        let actions = decide(&expected, &pinned);
        assert_eq!(actions[MAP_CONNTRACK], PinAction::Replace { old: layout(1000, 48), copy: true });
        assert_eq!(actions[MAP_AFFINITY], PinAction::Replace { old: layout(10, 16), copy: false });
    }

    #[test]
    fn the_service_tables_are_replaced_together() {
        let table = layout(64, 8);
        let expected = maps(&[
            (MAP_FRONTENDS, table),
            (MAP_SERVICES, layout(2048, 12)),
            (MAP_BACKENDS, table),
            (MAP_MAGLEV, table),
            (MAP_CONNTRACK, layout(1000, 48)),
        ]);
        let pinned = maps(&[
            (MAP_FRONTENDS, table),
            (MAP_SERVICES, layout(1024, 12)),
            (MAP_BACKENDS, table),
            (MAP_MAGLEV, table),
            (MAP_CONNTRACK, layout(1000, 48)),
        ]);
        let actions = decide(&expected, &pinned);
        for name in SERVICE_TABLES {
            assert!(matches!(actions[name], PinAction::Replace { copy: false, .. }), "{name}: {:?}", actions[name]);
        }
        assert_eq!(actions[MAP_CONNTRACK], PinAction::Adopt);
    }
}
