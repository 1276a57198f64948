//! lb's side: each snapshot compiled by lb's `L4Compiler` and applied by
//! its `Applier` to real BPF maps (programs loaded and verified, not
//! attached), in-process and timed around those two calls — what `lb run`
//! does on every snapshot: the compiler finds what changed since the last
//! snapshot, compiles that and hands the applier the entries it changed.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lb_common::Backend;
use std::sync::Arc;

use lb_userspace::compile::{CompileOptions, DataplaneTables, L4Compiler, NodeContext};
use lb_userspace::dataplane::{Applier, ApplyReport, DataplaneSettings};
use lb_userspace::snapshot::Snapshot;

use super::maps::{self, MapAccount, Programs};
use super::scale::{Subject, bench_node};
use super::{OURS, SCALE_MAGLEV_SIZE, snapshot};
use crate::cluster::{self, Cluster};

/// The bench carries no traffic: the smallest conntrack table lb accepts,
/// so the memory figures are the services' own.
pub const CONNTRACK_ENTRIES: u32 = 1_024;

struct Loaded {
    _programs: Programs,
    applier: Applier,
    snapshot: Arc<Snapshot>,
    /// Kept from one snapshot to the next, as `lb run` keeps it.
    compiler: L4Compiler,
}

pub struct LbMapDiff {
    settings: DataplaneSettings,
    node: NodeContext,
    options: CompileOptions,
    loaded: Option<Loaded>,
    /// Milliseconds per change spent making the snapshot, in the compiler
    /// and in the applier.
    snapshot_ms: Vec<f64>,
    compile_ms: Vec<f64>,
    apply_ms: Vec<f64>,
    maglev_slots_written: Vec<f64>,
    load_extras: BTreeMap<String, f64>,
}

impl LbMapDiff {
    /// lb sized for `services` service ports.
    pub fn new(services: usize) -> Result<Self> {
        let node = bench_node();
        let settings = DataplaneSettings {
            maglev_table_size: SCALE_MAGLEV_SIZE,
            max_services: u32::try_from(services.max(1)).context("too many services")?,
            // The bench's Services have a cluster IP and an external IP:
            // one XDP and two socket frontends each.
            max_frontends: u32::try_from(3 * services.max(1)).context("too many services")?,
            conntrack_entries: CONNTRACK_ENTRIES,
            ..DataplaneSettings::default()
        };
        Ok(Self {
            node: NodeContext { name: node.name, addresses: node.ips, ingress: None },
            options: CompileOptions { maglev_table_size: settings.maglev_table_size },
            settings,
            loaded: None,
            snapshot_ms: Vec::new(),
            compile_ms: Vec::new(),
            apply_ms: Vec::new(),
            maglev_slots_written: Vec::new(),
            load_extras: BTreeMap::new(),
        })
    }

    /// Compiles `snapshot` and applies it; returns (compile, total) times.
    fn sync(&mut self) -> Result<(Duration, Duration, ApplyReport)> {
        let loaded = self.loaded.as_mut().context("lb's maps are not loaded")?;
        let started = Instant::now();
        let (delta, diagnostics) = loaded.compiler.compile(&loaded.snapshot);
        let compiled = started.elapsed();
        let tables = loaded.compiler.tables();
        let report = loaded.applier.apply_changes(tables, delta.as_ref()).context("applying to lb's maps")?;
        let total = started.elapsed();
        if let Some(d) = diagnostics.first() {
            bail!("lb diagnosed the bench's cluster ({} problems), e.g. {d}", diagnostics.len());
        }
        ensure!(
            report.services_over_capacity.is_empty(),
            "{} service ports did not fit --max-services",
            report.services_over_capacity.len()
        );
        check_tables(tables, &loaded.snapshot)?;
        Ok((compiled, total, report))
    }

    /// The kernel's accounting of the service maps.
    pub fn map_accounts(&self) -> Result<BTreeMap<&'static str, MapAccount>> {
        let loaded = self.loaded.as_ref().context("lb's maps are not loaded")?;
        maps::accounts(loaded.applier.maps())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Every service of the snapshot compiled into an entry with backends.
fn check_tables(tables: &DataplaneTables, snapshot: &Snapshot) -> Result<()> {
    ensure!(
        tables.services.len() == snapshot.services.len(),
        "lb compiled {} service ports from {} Services",
        tables.services.len(),
        snapshot.services.len()
    );
    ensure!(tables.services.values().all(|s| !s.backends.is_empty()), "a service port compiled without backends");
    Ok(())
}

impl Subject for LbMapDiff {
    fn name(&self) -> &'static str {
        OURS
    }

    fn load(&mut self, cluster: &Cluster) -> Result<Duration> {
        let snapshot = snapshot::of_cluster(cluster)?;
        let backends: usize = cluster.services.iter().map(|s| s.endpoints.len()).sum();
        // --max-backends: one more than the cluster's, as a change inserts
        // the new backend before deleting the old one.
        let settings = DataplaneSettings {
            max_backends: u32::try_from(backends + 1).context("too many backends")?,
            ..self.settings.clone()
        };
        let created = Instant::now();
        let (programs, maps) = maps::load(&settings)?;
        let create_ms = ms(created.elapsed());
        let applier = Applier::new(maps, self.settings.maglev_table_size, self.settings.max_services);
        self.load_extras.insert("load_programs_and_create_maps_ms".into(), create_ms);
        let compiler = L4Compiler::new(self.node.clone(), self.options.clone());
        self.loaded = Some(Loaded { _programs: programs, applier, snapshot: Arc::new(snapshot), compiler });
        let (compiled, total, report) = self.sync()?;
        self.load_extras.insert("compile_ms".into(), ms(compiled));
        self.load_extras.insert("apply_ms".into(), ms(total - compiled));
        self.load_extras.insert("maglev_slots_written".into(), report.maglev_slots_written as f64);
        Ok(total)
    }

    fn apply(&mut self, _old: &Cluster, new: &Cluster, changed: usize) -> Result<Duration> {
        let service: &cluster::Service = &new.services[changed];
        let loaded = self.loaded.as_mut().context("lb's maps are not loaded")?;
        // What the watch delivers, deserialized outside the timed part.
        let slice = Arc::new(snapshot::endpoint_slice_of(service)?);
        // The next snapshot, made as the Kubernetes source makes it: a copy
        // of the last (the compiler holds it) with the slice put in.
        let started = Instant::now();
        let mut next = Snapshot::clone(&loaded.snapshot);
        next.endpoint_slices.insert(slice);
        loaded.snapshot = Arc::new(next);
        let built = started.elapsed();
        let (compiled, synced, report) = self.sync()?;
        let total = built + synced;
        ensure!(
            report.backends_written == 1 && report.backends_deleted == 1 && report.maglev_slots_written > 0,
            "changing {} wrote {report:?}, not one backend replaced",
            service.port_id()
        );
        let rows_built = self.loaded.as_ref().map_or(0, |l| l.compiler.rows_built());
        ensure!(rows_built == 1, "changing {} built {rows_built} Maglev rows, not one", service.port_id());
        self.snapshot_ms.push(ms(built));
        self.compile_ms.push(ms(compiled));
        self.apply_ms.push(ms(synced - compiled));
        self.maglev_slots_written.push(report.maglev_slots_written as f64);
        Ok(total)
    }

    /// Counts the frontends and backends in the kernel's maps and looks for
    /// the changed service's endpoints.
    fn verify(&self, cluster: &Cluster, changed: usize) -> Result<()> {
        let loaded = self.loaded.as_ref().context("lb's maps are not loaded")?;
        let maps = loaded.applier.maps();
        let keys: Vec<lb_common::FrontendKey> = maps.frontends.keys().filter_map(Result::ok).collect();
        let xdp = keys.iter().filter(|k| k.scope == lb_common::SCOPE_XDP).count();
        let socket = keys.len() - xdp;
        let stored: HashSet<Backend> = maps.backends.iter().filter_map(Result::ok).map(|(_, b)| b).collect();
        let backends = stored.len();
        let s = &cluster.services[changed];
        for e in &s.endpoints {
            ensure!(stored.contains(&Backend::new(e.ip, s.target_port)), "BACKENDS lacks {}:{}", e.ip, s.target_port);
        }
        // Traffic from outside reaches the external IPs (XDP); the
        // cluster's own sockets reach those and the cluster IP.
        let want_xdp: usize = cluster.services.iter().map(|s| s.external_ips.len()).sum();
        let want_socket: usize = cluster.services.iter().map(|s| s.external_ips.len() + 1).sum();
        let want_backends: usize = cluster.services.iter().map(|s| s.endpoints.len()).sum();
        ensure!(
            (xdp, socket, backends) == (want_xdp, want_socket, want_backends),
            "lb's maps hold {xdp} XDP and {socket} socket frontends and {backends} backends; the cluster has \
             {want_xdp}, {want_socket} and {want_backends}"
        );
        Ok(())
    }

    fn load_extras(&self) -> BTreeMap<String, f64> {
        self.load_extras.clone()
    }

    fn change_extras(&self) -> BTreeMap<String, f64> {
        let median = crate::stats::median;
        BTreeMap::from([
            ("snapshot_ms".to_string(), median(&self.snapshot_ms)),
            ("compile_ms".to_string(), median(&self.compile_ms)),
            ("apply_ms".to_string(), median(&self.apply_ms)),
            ("maglev_slots_written".to_string(), median(&self.maglev_slots_written)),
        ])
    }
}
