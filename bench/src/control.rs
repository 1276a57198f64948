//! The control-plane bench: how long one Service/EndpointSlice change takes
//! to reach the data path with 1k, 10k and 50k services present — lb's map
//! diff (compile + apply on real BPF maps) against kube-proxy's
//! `iptables-restore --noflush` partial sync and its `nft -f` incremental
//! transaction, each in its own network namespace — plus the time to load
//! everything from empty, the memory the state takes, and Maglev row build
//! times.
//!
//! - [`changes`]: the sequence of EndpointSlice changes every subject applies.
//! - [`scale`]: one cluster size: load every subject, then interleaved
//!   rounds of changes.
//! - [`lb`] (with [`snapshot`] and [`maps`]): lb's side, in-process.
//! - [`peers`]: kube-proxy's rule sets in namespaces this bench creates.
//! - [`memory`]: kernel memory (`/proc/meminfo`) and map accounting (fdinfo).
//! - [`maglev`]: Maglev row builds.

mod changes;
mod lb;
mod maglev;
mod maps;
mod memory;
mod peers;
mod scale;
mod snapshot;

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::meta::Meta;
use crate::{Profile, Report, RunOptions};
use memory::KernelMemorySource;

/// The subject that is us in the change and load comparisons.
pub const OURS: &str = "lb (map diff)";
/// kube-proxy's iptables mode.
pub const IPTABLES: &str = "iptables-restore (partial sync)";
/// kube-proxy's nftables mode.
pub const NFT: &str = "nft (incremental)";

/// The Maglev table size of the scale runs. `MAGLEV` is a preallocated array
/// of `max_services × M` u32 slots (the kernel stores each in 8 bytes: array
/// values are rounded up to 8), so lb's default M = 16381 would make 50k
/// services a 6.5 GB array; with 1021 (a prime, still 500 slots per backend
/// of a 2-endpoint service) 50k services take 408 MB.
pub const SCALE_MAGLEV_SIZE: u32 = 1021;

/// What one run measures.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Cluster sizes (number of background services).
    pub scales: Vec<usize>,
    /// Interleaved rounds of changes per scale: at least `min_rounds`, then
    /// more while the scale's rounds have taken less than `round_budget`,
    /// up to `max_rounds` (iptables-restore takes seconds per change from
    /// 10k services up).
    pub min_rounds: usize,
    pub max_rounds: usize,
    pub round_budget: Duration,
    /// Changes each subject applies per round.
    pub changes_per_round: usize,
    /// Maglev table sizes of the build-time measurement.
    pub maglev_sizes: Vec<u32>,
    /// Backend counts of the build-time measurement.
    pub maglev_backends: Vec<usize>,
    /// Builds per (size, backends) pair.
    pub maglev_builds: usize,
}

impl Plan {
    pub fn for_profile(profile: Profile) -> Self {
        Self {
            scales: profile.pick(vec![10, 100], vec![1_000, 10_000], vec![1_000, 10_000, 50_000]),
            min_rounds: 2,
            max_rounds: profile.pick(3, 5, 8),
            round_budget: Duration::from_secs(profile.pick(5, 60, 240)),
            changes_per_round: profile.pick(2, 2, 1),
            maglev_sizes: vec![16_381, 65_537],
            maglev_backends: vec![2, 10, 100, 1_000],
            maglev_builds: profile.pick(3, 10, 20),
        }
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "services": self.scales,
            "rounds": { "min": self.min_rounds, "max": self.max_rounds, "budget_s": self.round_budget.as_secs() },
            "changes_per_round": self.changes_per_round,
            "change": changes::DESCRIPTION,
            "background_service": "ClusterIP + 1 external IP, TCP 80 → 8080, 2 ready endpoints (one per node)",
            "node": { "name": scale::NODE_NAME, "ips": [scale::NODE_IP.to_string()], "cluster_cidr": scale::CLUSTER_CIDR },
            "lb": {
                "maglev_table_size": SCALE_MAGLEV_SIZE,
                "max_services": "= services (exactly the cluster's service ports)",
                "max_frontends": "= 3 × services (one XDP and two socket frontends each)",
                "max_backends": "= the cluster's backends + 1 (a change inserts before it deletes)",
                "conntrack_entries": lb::CONNTRACK_ENTRIES,
                "timed": "making the next snapshot (a copy of the last with the changed slice put in) + L4Compiler::compile of it (finding and compiling what changed) + Applier::apply_changes of the entries it changed (in-process, real BPF maps, programs loaded, not attached)",
            },
            "iptables": "iptables-restore --noflush of kube-proxy's partial-sync payload, in a namespace holding the full rule set",
            "nft": "nft -f of kube-proxy's incremental transaction, in a namespace holding the full ruleset",
            "nft_max_services": peers::NFT_MAX_SERVICES,
            "kernel_memory": KernelMemorySource::detect().describe(),
            "maglev_build": {
                "table_sizes": self.maglev_sizes,
                "backends": self.maglev_backends,
                "builds_per_point": self.maglev_builds,
            },
        })
    }
}

pub fn run(opts: &RunOptions) -> Result<Report> {
    let plan = Plan::for_profile(opts.profile);
    let mut meta = Meta::collect();
    meta.tool("iptables", "iptables", &["--version"]);
    meta.tool("iptables-restore", "iptables-restore", &["--version"]);
    meta.tool("nft", "nft", &["--version"]);
    let mut report = Report::new("control", opts.profile, meta, plan.params());
    crate::kube_proxy::remove_stale_namespaces();
    for &services in &plan.scales {
        eprintln!("[control] {services} services");
        scale::measure(&plan, services, &mut report)?;
    }
    eprintln!("[control] Maglev builds");
    maglev::measure(&plan, &mut report)?;
    notes(&mut report);
    Ok(report)
}

/// `10`, `1k`, `50k`: the scenario label of a cluster size.
pub fn services_label(services: usize) -> String {
    if services >= 1_000 && services.is_multiple_of(1_000) {
        format!("{}k", services / 1_000)
    } else {
        services.to_string()
    }
}

fn notes(report: &mut Report) {
    report.note(format!(
        "lb runs with --maglev-table-size {SCALE_MAGLEV_SIZE}, --max-services = the cluster's service count and \
         --max-backends = its backend count + 1: MAGLEV is a preallocated array of max_services × M slots of 8 \
         bytes, so the default M = 16381 would need 6.5 GB at 50k services."
    ));
    report.note(
        "MAGLEV's u32 slots cost 8 bytes each in the kernel (array map values are rounded up to 8 bytes; see \
         MAGLEV_per_service in map_bytes_per_service's extras): the default 1024 × 16381 table takes 128 MiB.",
    );
    report.note(
        "apply_change_ms for lb covers what `lb run` does for one changed EndpointSlice, once the watch has \
         delivered it: the next snapshot is made as the Kubernetes source makes it (a copy of the last, whose \
         persistent maps share everything but the changed object's path, with the slice put in); the L4Compiler \
         finds what changed (skipping what both snapshots share), compiles the Services it concerns (only the \
         changed service's Maglev row is built; the bench checks it) and hands the applier the entries it \
         changed, which it alone diffs against the maps; `snapshot_ms`, `compile_ms` and `apply_ms` in the \
         measurement's extras split the three. \
         The peers' times cover only the tool (iptables-restore / nft) applying a payload generated beforehand, \
         not kube-proxy's own generation of it.",
    );
    report.note(
        "iptables-restore here is iptables' nf_tables backend (see meta.tools), as on current distributions; a node \
         on the legacy backend would give different peer figures. A partial-sync payload still rewrites \
         kube-proxy's top-level chains in full, so it grows with the cluster (payload_lines in the extras).",
    );
    report.note(
        "Not timed here: the watch's decoding of the object, and the --manifests source, which re-parses only \
         the files whose metadata changed, 15 ms after the last event of a burst, but lists and stats the whole \
         directory and builds its snapshot from every file's objects.",
    );
    report.note(format!(
        "Memory: map_bytes_per_service / map_bytes_per_backend are lb's own accounting (the `memlock` of each map in \
         /proc/self/fdinfo, divided by its max_entries; arrays and hash maps are preallocated, so this is the cost \
         of a slot whether used or not). kernel_mib compares the three subjects by the growth over the initial load \
         of the {}; reported from 1k services up.",
        KernelMemorySource::detect().describe()
    ));
}
