//! The thin I/O shell around the kernel programs: load and attach them, and
//! apply compiled tables to their maps by difference.

mod applier;
mod fake_maps;
mod ids;
mod l2;
pub mod layout;
mod loader;
mod maglev_slots;
mod maps;
pub mod object;
pub mod pins;
pub mod plan;
mod probe;
mod settings;
mod stats;
mod store;

pub use applier::{Applier, ApplyReport};
pub use fake_maps::FakeMaps;
pub use l2::L2Write;
pub use loader::{Attachment, Datapath, PinReport, VETH_DRIVER, XdpAttachMode, XdpTransmit};
pub use maglev_slots::MaglevSlots;
pub use maps::DataplaneMaps;
pub use pins::{PinDir, PinLock};
pub use settings::{DataplaneSettings, HandoffTransport, PortRange, default_snat_ports};
pub use stats::{ConntrackFill, CounterSnapshot, StatsReader, Traffic, read_counters};
pub use store::MapStore;
