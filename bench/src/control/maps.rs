//! lb's BPF maps for the bench: loaded through lb's own [`Datapath::load`];
//! and what the kernel charges for each map (`/proc/self/fdinfo`).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use aya::maps::{IterableMap, MapData};
use lb_userspace::dataplane::{Datapath, DataplaneMaps, DataplaneSettings};

/// Keeps the loaded (verified, unattached) programs alive with their maps.
pub struct Programs {
    _datapath: Datapath,
}

/// Loads the programs and creates the maps, through lb's own loader.
pub fn load(settings: &DataplaneSettings) -> Result<(Programs, DataplaneMaps)> {
    let (datapath, maps, _) = Datapath::load(settings, None)?;
    Ok((Programs { _datapath: datapath }, maps))
}

/// What the kernel says about one map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapAccount {
    pub max_entries: u64,
    /// Bytes charged for the map (`memlock:` in fdinfo).
    pub memlock: u64,
}

impl MapAccount {
    /// Bytes per entry (the map is preallocated: used or not).
    pub fn per_entry(&self) -> f64 {
        self.memlock as f64 / self.max_entries.max(1) as f64
    }
}

/// The accounts of the maps that hold services (not conntrack, counters or
/// configuration), by map name.
pub fn accounts(maps: &DataplaneMaps) -> Result<BTreeMap<&'static str, MapAccount>> {
    let mut out = BTreeMap::new();
    out.insert("FRONTENDS", account(maps.frontends.map())?);
    out.insert("SERVICES", account(maps.services.map())?);
    out.insert("BACKENDS", account(maps.backends.map())?);
    out.insert("MAGLEV", account(maps.maglev.map())?);
    out.insert("SERVICE_STATS", account(maps.service_stats.map())?);
    Ok(out)
}

fn account(map: &MapData) -> Result<MapAccount> {
    let fd = map.fd().as_fd().as_raw_fd();
    let path = format!("/proc/self/fdinfo/{fd}");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |key: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim))
            .with_context(|| format!("{path} has no {key}"))?
            .parse()
            .with_context(|| format!("{path}: {key} is not a number"))
    };
    Ok(MapAccount { max_entries: field("max_entries:")?, memlock: field("memlock:")? })
}
