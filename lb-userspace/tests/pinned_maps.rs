//! Pinned maps across agent versions (root, bpffs): what a later agent does
//! with maps an earlier one pinned, when their layout is the same and when
//! it is not (see `dataplane::layout`). Loads the real eBPF object; attaches
//! nothing.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use lb_common::{
    Flow, FlowKey, Frontend, FrontendKey, MAP_AFFINITY, MAP_AGENT_STATE, MAP_BACKENDS, MAP_CONNTRACK, MAP_FRONTENDS,
    MAP_MAGLEV, MAP_SERVICE_STATS, MAP_SERVICES, PINNED_MAPS, SCOPE_XDP,
};
use lb_userspace::dataplane::layout::MapLayout;
use lb_userspace::dataplane::pins::{BPFFS, staged};
use lb_userspace::dataplane::{Datapath, DataplaneMaps, DataplaneSettings, MapStore, PinDir, PinLock, PinReport};

/// Removes the test's pin directory, also when it fails.
struct Pins(PinDir);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.root());
    }
}

fn settings(conntrack_entries: u32, max_services: u32) -> DataplaneSettings {
    DataplaneSettings { conntrack_entries, max_services, maglev_table_size: 251, ..DataplaneSettings::default() }
}

fn load(settings: &DataplaneSettings, lock: &PinLock) -> (Datapath, DataplaneMaps, PinReport) {
    Datapath::load(settings, Some(lock)).expect("load the eBPF object on the pins (root and BPF are required)")
}

fn flow_key() -> FlowKey {
    FlowKey::new(Ipv4Addr::new(192, 168, 1, 2), 40000, Ipv4Addr::new(192, 168, 1, 11), 30007, 6)
}

fn frontend_key() -> FrontendKey {
    FrontendKey::new(Ipv4Addr::new(192, 168, 1, 11), 30007, 6, SCOPE_XDP)
}

fn layout(path: &Path) -> MapLayout {
    MapLayout::of_pin(path).expect("pinned map")
}

/// Replaces the pin `path` by a map of another shape (bpftool, as another
/// agent version would have made it).
fn pin_other_shape(path: &Path, name: &str) {
    std::fs::remove_file(path).expect("remove pin");
    let status = Command::new("bpftool")
        .args(["map", "create"])
        .arg(path)
        .args(["type", "lru_hash", "key", "16", "value", "8", "entries", "16", "name", name])
        .status()
        .expect("bpftool (installed by cargo xtask setup)");
    assert!(status.success());
}

#[test]
fn pinned_maps_are_adopted_migrated_or_replaced_by_layout() {
    let root = PathBuf::from(format!("{BPFFS}/lbt{}-layout", std::process::id()));
    let pins = Pins(PinDir::new(&root));
    pins.0.prepare().expect("pin directory on bpffs");
    let lock = pins.0.try_lock().unwrap().expect("the directory is free");

    // A first agent: everything is created and pinned.
    let (datapath, mut maps, report) = load(&settings(1024, 16), &lock);
    assert_eq!(report.created.len(), PINNED_MAPS.len(), "{report:?}");
    let flow = Flow { backend_id: 7, service_id: 3, ..Flow::default() };
    maps.conntrack.insert(flow_key(), flow, 0).unwrap();
    maps.frontends.insert(frontend_key(), Frontend { service_id: 3, flags: 0 }, 0).unwrap();
    maps.set_backend_id_high_water(42).unwrap();
    drop((datapath, maps));

    // The same agent again: everything adopted, the contents are there.
    let (datapath, maps, report) = load(&settings(1024, 16), &lock);
    assert_eq!((report.adopted.len(), report.replaced.len()), (PINNED_MAPS.len(), 0), "{report:?}");
    assert_eq!(maps.conntrack.get(&flow_key(), 0).unwrap().backend_id, 7);
    assert!(maps.frontends.get(&frontend_key(), 0).is_ok());
    drop((datapath, maps));

    // Another version: AFFINITY's value changed, and the agent runs with a
    // larger conntrack and more service ports.
    let affinity = pins.0.map(MAP_AFFINITY);
    pin_other_shape(&affinity, "AFFINITY");
    let (mut datapath, maps, report) = load(&settings(2048, 32), &lock);
    let replaced: std::collections::BTreeMap<_, _> = report.replaced.iter().copied().collect();
    assert_eq!(replaced.get(MAP_CONNTRACK), Some(&1), "conntrack is copied: {report:?}");
    assert_eq!(replaced.get(MAP_AFFINITY), Some(&0), "another value layout starts empty: {report:?}");
    assert_eq!(replaced.get(MAP_SERVICE_STATS), Some(&16), "counters are copied: {report:?}");
    for name in [MAP_FRONTENDS, MAP_SERVICES, MAP_BACKENDS, MAP_MAGLEV] {
        assert_eq!(replaced.get(name), Some(&0), "{name}: the service tables are replaced together: {report:?}");
    }
    assert!(report.adopted.contains(&MAP_AGENT_STATE), "{report:?}");
    // The new maps hold what could be kept…
    assert_eq!(maps.conntrack.get(&flow_key(), 0).unwrap().backend_id, 7);
    assert!(maps.frontends.get(&frontend_key(), 0).is_err(), "the service tables start empty");
    assert_eq!(maps.backend_id_high_water().unwrap(), 42, "backend ids continue");
    // …while the old ones stay pinned, for the old program, until the new
    // program is live.
    let conntrack = pins.0.map(MAP_CONNTRACK);
    assert_eq!(layout(&conntrack).max_entries, 1024);
    assert_eq!(layout(&pins.0.staged_map(MAP_CONNTRACK)).max_entries, 2048);
    datapath.commit_pins().unwrap();
    assert_eq!(layout(&conntrack).max_entries, 2048);
    assert_ne!(layout(&affinity).value_size, 8);
    let left: Vec<String> = std::fs::read_dir(pins.0.maps())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with("_new"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "no staged map is left");
    drop((datapath, maps));

    // An agent that stopped before its program was live left a staged map:
    // the next one drops it and adopts the pinned one.
    let leftover = pins.0.staged_map(MAP_CONNTRACK);
    assert_eq!(leftover.file_name().unwrap().to_string_lossy(), staged(MAP_CONNTRACK));
    let status = Command::new("bpftool")
        .args(["map", "create"])
        .arg(&leftover)
        .args(["type", "hash", "key", "4", "value", "4", "entries", "4", "name", "CONNTRACK"])
        .status()
        .unwrap();
    assert!(status.success());
    let (_datapath, maps, report) = load(&settings(2048, 32), &lock);
    assert_eq!((report.adopted.len(), report.replaced.len()), (PINNED_MAPS.len(), 0), "{report:?}");
    assert!(!leftover.exists());
    assert_eq!(maps.conntrack.get(&flow_key(), 0).unwrap().backend_id, 7);
}
