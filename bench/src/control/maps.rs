//! lb's BPF maps for the bench: loaded through lb's own [`Datapath::load`]
//! when the cluster fits its compiled-in `BACKENDS` size, else the same
//! steps with `BACKENDS` enlarged (lb has no flag for it); and what the
//! kernel charges for each map (`/proc/self/fdinfo`).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use aya::maps::{IterableMap, MapData};
use aya::programs::{SchedClassifier, Xdp};
use aya::{Ebpf, EbpfLoader};
use lb_common::{
    DEFAULT_MAX_BACKENDS, MAP_BACKENDS, MAP_CONNTRACK, MAP_FRONTENDS, MAP_MAGLEV, MAP_SERVICE_STATS, MAP_SERVICES,
    PROG_TC_EGRESS, PROG_XDP,
};
use lb_userspace::dataplane::{Datapath, DataplaneMaps, DataplaneSettings, object};

/// Keeps the loaded (verified, unattached) programs alive with their maps.
pub enum Programs {
    /// Loaded by lb's own [`Datapath::load`].
    Lb { _datapath: Datapath },
    /// Loaded by [`load`] with `BACKENDS` enlarged.
    Enlarged { _ebpf: Ebpf },
}

/// Loads the programs and creates the maps for a cluster of `backends`
/// backends.
pub fn load(settings: &DataplaneSettings, backends: u32) -> Result<(Programs, DataplaneMaps)> {
    if backends <= DEFAULT_MAX_BACKENDS {
        let (datapath, maps, _) = Datapath::load(settings, None)?;
        return Ok((Programs::Lb { _datapath: datapath }, maps));
    }
    settings.validate()?;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_MAGLEV, settings.maglev_slots())
        .map_max_entries(MAP_SERVICES, settings.max_services)
        .map_max_entries(MAP_FRONTENDS, settings.max_frontends)
        .map_max_entries(MAP_SERVICE_STATS, settings.max_services)
        .map_max_entries(MAP_CONNTRACK, settings.conntrack_entries)
        .map_max_entries(MAP_BACKENDS, backends)
        .load(object::bytes())
        .context("loading lb's eBPF object with BACKENDS enlarged")?;
    let xdp: &mut Xdp = ebpf.program_mut(PROG_XDP).context("no XDP program")?.try_into()?;
    xdp.load().context("verifying the XDP program")?;
    let tc: &mut SchedClassifier = ebpf.program_mut(PROG_TC_EGRESS).context("no TC program")?.try_into()?;
    tc.load().context("verifying the TC egress program")?;
    let mut maps = DataplaneMaps::take_from(&mut ebpf)?;
    maps.config.set(0, settings.kernel_config(), 0).context("writing CONFIG")?;
    Ok((Programs::Enlarged { _ebpf: ebpf }, maps))
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
