//! Kernel memory: what the kernel charges for the rule sets and BPF maps
//! (this process's memory cgroup, else machine-wide `/proc/meminfo`), and
//! lb's per-service and per-backend map costs from the kernel's own
//! accounting of each map.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::maps::MapAccount;

/// Where [`kernel_bytes`] reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelMemorySource {
    /// This process's memory cgroup (v1 `memory.kmem.usage_in_bytes`, v2
    /// `memory.stat` `kernel`): the kernel memory charged to this process
    /// and its children (iptables-restore, nft), which includes BPF maps and
    /// nf_tables objects — and nothing of the rest of the machine.
    Cgroup(PathBuf),
    /// Machine-wide `SUnreclaim + VmallocUsed + Percpu` of `/proc/meminfo`.
    Meminfo,
}

impl KernelMemorySource {
    /// This process's memory cgroup if its kernel memory can be read, else
    /// `/proc/meminfo`.
    pub fn detect() -> Self {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = path.trim_start_matches('/');
            let candidate = if controllers.split(',').any(|c| c == "memory") {
                Path::new("/sys/fs/cgroup/memory").join(path).join("memory.kmem.usage_in_bytes")
            } else if controllers.is_empty() {
                Path::new("/sys/fs/cgroup").join(path).join("memory.stat")
            } else {
                continue;
            };
            let source = Self::Cgroup(candidate);
            if source.read().is_ok() {
                return source;
            }
        }
        Self::Meminfo
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Cgroup(path) => format!("kernel memory charged to this process's memory cgroup ({})", path.display()),
            Self::Meminfo => "machine-wide SUnreclaim + VmallocUsed + Percpu of /proc/meminfo".into(),
        }
    }

    /// Kernel bytes now.
    pub fn read(&self) -> Result<u64> {
        match self {
            Self::Cgroup(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let value = if path.ends_with("memory.stat") {
                    text.lines()
                        .find_map(|l| l.strip_prefix("kernel "))
                        .with_context(|| format!("{} has no kernel", path.display()))?
                } else {
                    text.trim()
                };
                value.trim().parse().with_context(|| format!("{}: not a number", path.display()))
            }
            Self::Meminfo => meminfo_kernel_bytes(),
        }
    }
}

/// `SUnreclaim + VmallocUsed + Percpu` of `/proc/meminfo`, in bytes:
/// nf_tables rules, chains and set elements are slab objects; BPF arrays
/// and preallocated hash maps are vmalloc'ed (per-CPU ones in Percpu).
/// Reclaimable slab (dentries, inodes) is left out.
fn meminfo_kernel_bytes() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    let field = |key: &str| -> Result<u64> {
        let line =
            text.lines().find_map(|l| l.strip_prefix(key)).with_context(|| format!("/proc/meminfo has no {key}"))?;
        let kib: u64 = line
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("/proc/meminfo {key} is not a number"))?;
        Ok(kib * 1024)
    };
    Ok(field("SUnreclaim:")? + field("VmallocUsed:")? + field("Percpu:")?)
}

/// lb's map bytes per service port and per backend, from the map accounts.
#[derive(Clone, Debug, PartialEq)]
pub struct LbMapCost {
    /// One service id's slot in `SERVICES`, `MAGLEV` (a row of M u32) and
    /// `SERVICE_STATS` (per CPU), plus its frontends' `FRONTENDS` entries.
    pub per_service: f64,
    /// One `BACKENDS` entry.
    pub per_backend: f64,
    /// The parts of `per_service`, and every map's total, by name.
    pub parts: BTreeMap<String, f64>,
}

impl LbMapCost {
    pub fn from_accounts(accounts: &BTreeMap<&'static str, MapAccount>, frontends_per_service: f64) -> Result<Self> {
        let get = |name: &str| accounts.get(name).copied().with_context(|| format!("no account of map {name}"));
        let mut parts = BTreeMap::new();
        let mut per_service = 0.0;
        // These maps are sized by the service ids (`SERVICES`' max_entries);
        // MAGLEV has max_services × M entries, a service owns M of them.
        let services = get("SERVICES")?.max_entries.max(1) as f64;
        for name in ["SERVICES", "MAGLEV", "SERVICE_STATS"] {
            let share = get(name)?.memlock as f64 / services;
            parts.insert(format!("{name}_per_service"), share);
            per_service += share;
        }
        let frontends = get("FRONTENDS")?.per_entry() * frontends_per_service;
        parts.insert("FRONTENDS_per_service".into(), frontends);
        per_service += frontends;
        for (name, account) in accounts {
            parts.insert(format!("{name}_total_bytes"), account.memlock as f64);
            parts.insert(format!("{name}_max_entries"), account.max_entries as f64);
        }
        Ok(Self { per_service, per_backend: get("BACKENDS")?.per_entry(), parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_service_cost_splits_the_preallocated_maps() {
        let account = |max_entries, memlock| MapAccount { max_entries, memlock };
        let accounts = BTreeMap::from([
            ("SERVICES", account(10, 1_000)),
            ("MAGLEV", account(10 * 1021, 10 * 1021 * 4)),
            ("SERVICE_STATS", account(10, 2_000)),
            ("FRONTENDS", account(100, 10_000)),
            ("BACKENDS", account(100, 5_000)),
        ]);
        let cost = LbMapCost::from_accounts(&accounts, 1.0).unwrap();
        assert_eq!(cost.per_service, 100.0 + 1021.0 * 4.0 + 200.0 + 100.0);
        assert_eq!(cost.per_backend, 50.0);
        assert!(KernelMemorySource::detect().read().unwrap() > 0);
        assert!(KernelMemorySource::Meminfo.read().unwrap() > 0);
    }
}
