//! One cluster size: every subject loads the same cluster from empty, then
//! applies the same sequence of changes in interleaved rounds (the order of
//! the subjects rotates every round), and the results become comparisons.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::changes::Change;
use super::lb::LbMapDiff;
use super::memory::{KernelMemorySource, LbMapCost};
use super::peers::{IptablesPartialSync, NFT_MAX_SERVICES, NftIncremental};
use super::{NFT, OURS, Plan, services_label};
use crate::cluster::{Cluster, Node};
use crate::report::{Better, Comparison, Measurement, Report};

pub const NODE_NAME: &str = "node1";
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// Below this many services the kernel-memory growth of a load is lost in
/// the machine's own noise, so it is not reported.
const KERNEL_MEMORY_MIN_SERVICES: usize = 1_000;

/// The node every subject is configured for.
pub fn bench_node() -> Node {
    Node { name: NODE_NAME.into(), ips: vec![NODE_IP], cluster_cidr: CLUSTER_CIDR.into() }
}

/// Something that writes a cluster into a data path.
pub trait Subject {
    fn name(&self) -> &'static str;
    /// Loads `cluster` into an empty data path; returns the time it took.
    fn load(&mut self, cluster: &Cluster) -> Result<Duration>;
    /// Applies the change from `old` to `new` (service `changed` differs);
    /// returns the time it took.
    fn apply(&mut self, old: &Cluster, new: &Cluster, changed: usize) -> Result<Duration>;
    /// Checks that the data path holds `cluster` (read back from the kernel).
    fn verify(&self, cluster: &Cluster, changed: usize) -> Result<()>;
    /// What else the load showed.
    fn load_extras(&self) -> BTreeMap<String, f64>;
    /// What else the changes showed (medians).
    fn change_extras(&self) -> BTreeMap<String, f64>;
}

/// One subject's results at one size.
struct Results {
    name: &'static str,
    load_s: f64,
    kernel_bytes: i64,
    load_extras: BTreeMap<String, f64>,
    change_ms: Vec<f64>,
    change_extras: BTreeMap<String, f64>,
}

pub fn measure(plan: &Plan, services: usize, report: &mut Report) -> Result<()> {
    let cluster = Cluster::background(services);
    let changes = Change::plan(services, plan.max_rounds * plan.changes_per_round);
    let mut lb = LbMapDiff::new(services)?;
    let mut iptables = IptablesPartialSync::new()?;
    let mut nft = if services <= NFT_MAX_SERVICES { Some(NftIncremental::new()?) } else { None };
    let results = {
        let mut subjects: Vec<&mut dyn Subject> = vec![&mut lb, &mut iptables];
        if let Some(nft) = nft.as_mut() {
            subjects.push(nft);
        }
        run_subjects(plan, &mut subjects, &cluster, &changes)?
    };
    let label = services_label(services);
    if nft.is_none() {
        report.note(format!(
            "{NFT} is not measured at {label} services: kube-proxy's first sync is one nft transaction, which the \
             kernel makes quadratic in its size (it walks the pending transaction for every anonymous set a rule \
             binds: about 90 s at 10k services here, see initial_sync_s), so loading {label} services would take \
             most of an hour; smaller transactions slow down as the table grows (minutes each at 25k services)."
        ));
    }
    push_comparisons(report, &label, services, &results);
    let frontends_per_service =
        cluster.services.iter().map(|s| s.external_ips.len()).sum::<usize>() as f64 / services.max(1) as f64;
    let cost = LbMapCost::from_accounts(&lb.map_accounts()?, frontends_per_service)?;
    push_map_cost(report, &label, &cost);
    Ok(())
}

fn run_subjects(
    plan: &Plan,
    subjects: &mut [&mut dyn Subject],
    cluster: &Cluster,
    changes: &[Change],
) -> Result<Vec<Results>> {
    let mut results = load_all(subjects, cluster)?;
    let mut states = vec![cluster.clone(); subjects.len()];
    let started = Instant::now();
    let mut applied = 0;
    for (round, batch) in changes.chunks(plan.changes_per_round).enumerate() {
        if round >= plan.min_rounds && started.elapsed() > plan.round_budget {
            break;
        }
        for turn in 0..subjects.len() {
            let i = (round + turn) % subjects.len();
            for change in batch {
                let old = states[i].clone();
                change.apply_to(&mut states[i]);
                let took = subjects[i]
                    .apply(&old, &states[i], change.service)
                    .with_context(|| format!("{}: applying change {change:?}", subjects[i].name()))?;
                results[i].change_ms.push(took.as_secs_f64() * 1e3);
            }
        }
        applied += batch.len();
        eprintln!("[control]   round {} done ({:.1?} into the rounds)", round + 1, started.elapsed());
    }
    let last = changes[..applied].last().map_or(0, |c| c.service);
    for (i, subject) in subjects.iter().enumerate() {
        subject.verify(&states[i], last).with_context(|| format!("{}: checking the data path", subject.name()))?;
        results[i].change_extras = subject.change_extras();
    }
    Ok(results)
}

/// Loads the cluster into every subject, one after the other, measuring
/// the time and the kernel memory it took.
fn load_all(subjects: &mut [&mut dyn Subject], cluster: &Cluster) -> Result<Vec<Results>> {
    let memory = KernelMemorySource::detect();
    let mut results = Vec::new();
    for subject in subjects.iter_mut() {
        let before = settled(&memory)?;
        let started = Instant::now();
        let took = subject.load(cluster).with_context(|| format!("{}: loading the cluster", subject.name()))?;
        let after = settled(&memory)?;
        eprintln!("[control]   {} loaded in {:.2?} (wall {:.2?})", subject.name(), took, started.elapsed());
        results.push(Results {
            name: subject.name(),
            load_s: took.as_secs_f64(),
            kernel_bytes: after as i64 - before as i64,
            load_extras: subject.load_extras(),
            change_ms: Vec::new(),
            change_extras: BTreeMap::new(),
        });
    }
    Ok(results)
}

/// The kernel memory once it has stopped moving (at most 5 s of waiting):
/// the kernel frees deleted namespaces and rule-set transactions later.
fn settled(memory: &KernelMemorySource) -> Result<u64> {
    let mut last = memory.read()?;
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(200));
        let now = memory.read()?;
        if now.abs_diff(last) < 256 * 1024 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn push_comparisons(report: &mut Report, label: &str, services: usize, results: &[Results]) {
    let mut change = Comparison::new(
        "apply_change_ms",
        "One EndpointSlice change applied to the data path",
        "ms",
        Better::Lower,
        OURS,
    )
    .scenario("services", label);
    let mut load = Comparison::new("initial_sync_s", "Loading every service from empty", "s", Better::Lower, OURS)
        .scenario("services", label);
    let mut kernel = Comparison::new("kernel_mib", "Kernel memory of the loaded state", "MiB", Better::Lower, OURS)
        .scenario("services", label);
    for r in results {
        change.push(with_extras(Measurement::new(r.name, r.change_ms.clone()), &r.change_extras));
        load.push(with_extras(Measurement::new(r.name, vec![r.load_s]), &r.load_extras));
        kernel.push(Measurement::new(r.name, vec![r.kernel_bytes as f64 / (1024.0 * 1024.0)]));
    }
    report.push(change);
    report.push(load);
    if services < KERNEL_MEMORY_MIN_SERVICES {
        return;
    }
    if results.iter().all(|r| r.kernel_bytes > 0) {
        report.push(kernel);
    } else {
        let seen: Vec<String> = results.iter().map(|r| format!("{} {} B", r.name, r.kernel_bytes)).collect();
        report.note(format!(
            "kernel_mib at {label} services is left out: a load did not grow the kernel's memory ({}), i.e. the \
             machine's noise was larger than the state",
            seen.join(", ")
        ));
    }
}

fn with_extras(mut m: Measurement, extras: &BTreeMap<String, f64>) -> Measurement {
    for (k, v) in extras {
        m = m.with_extra(k, *v);
    }
    m
}

fn push_map_cost(report: &mut Report, label: &str, cost: &LbMapCost) {
    let mut service =
        Comparison::new("map_bytes_per_service", "lb map bytes per service port", "bytes", Better::Lower, OURS)
            .scenario("services", label);
    service.push(with_extras(Measurement::new(OURS, vec![cost.per_service]), &cost.parts));
    report.push(service);
    let mut backend =
        Comparison::new("map_bytes_per_backend", "lb map bytes per backend", "bytes", Better::Lower, OURS)
            .scenario("services", label);
    backend.push(Measurement::new(OURS, vec![cost.per_backend]));
    report.push(backend);
}
