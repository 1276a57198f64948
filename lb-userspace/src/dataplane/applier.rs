//! Applies compiled [`DataplaneTables`] to the maps by difference: only what
//! changed is written, in an order that never lets the XDP program see a
//! Maglev slot pointing at a backend that is not in `BACKENDS`:
//!
//! 1. new backends are inserted;
//! 2. changed Maglev slots are written;
//! 3. `SERVICES` (backend counts, flags, affinity) is updated;
//! 4. frontends (of both scopes: XDP and sockets) are added, changed and
//!    removed;
//! 5. removed backends and services are deleted.
//!
//! The in-memory picture of the maps is updated write by write, so after a
//! failed write the next apply starts from what the kernel really holds.
//! Maglev slots need no picture: they are compared with the memory-mapped
//! array itself ([`super::MaglevSlots`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use lb_common::{
    Backend, FRONTEND_SNAT, Frontend, FrontendKey, SCOPE_SOCKET, SCOPE_XDP, SERVICE_DROP_WHEN_EMPTY, Service,
    ServiceStats,
};

use super::DataplaneMaps;
use super::ids::{BackendIds, ServiceIds};
use crate::compile::{BackendAddr, DataplaneTables, FrontendAddr, FrontendEntry, MaglevRow, ServiceEntry, ServiceView};

/// What one apply changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub frontends_written: usize,
    pub frontends_deleted: usize,
    pub backends_written: usize,
    pub backends_deleted: usize,
    pub maglev_slots_written: usize,
    pub services_written: usize,
    pub services_deleted: usize,
    /// Service ports left out because every service id is taken.
    pub services_over_capacity: Vec<ServiceView>,
}

/// A service port as it is in the maps.
#[derive(Debug)]
struct AppliedService {
    id: u32,
    backends: BTreeMap<BackendAddr, u32>,
    /// The compiled row the service's slots were last written from in full
    /// (with the same backends): handed the same row again, the apply skips
    /// the slots. Empty while a write of the row is unfinished.
    written_from: MaglevRow,
    /// Its `SERVICES` entry as written.
    value: Service,
}

pub struct Applier {
    maps: DataplaneMaps,
    maglev_size: u32,
    service_ids: ServiceIds,
    backend_ids: BackendIds,
    services: BTreeMap<ServiceView, AppliedService>,
    /// Frontends as written, by scope (`SCOPE_XDP`, `SCOPE_SOCKET`).
    frontends: BTreeMap<(u8, FrontendAddr), Frontend>,
}

impl Applier {
    pub fn new(maps: DataplaneMaps, maglev_size: u32, max_services: u32) -> Self {
        Self {
            maps,
            maglev_size,
            service_ids: ServiceIds::new(max_services),
            backend_ids: BackendIds::default(),
            services: BTreeMap::new(),
            frontends: BTreeMap::new(),
        }
    }

    pub fn maps(&self) -> &DataplaneMaps {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut DataplaneMaps {
        &mut self.maps
    }

    pub fn apply(&mut self, tables: &DataplaneTables) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        let mut stale_backends: Vec<u32> = Vec::new();
        for (name, entry) in &tables.services {
            if !self.services.contains_key(name) {
                let Some(id) = self.service_ids.allocate() else {
                    report.services_over_capacity.push(name.clone());
                    continue;
                };
                self.reset_stats(id)?;
                self.services.insert(
                    name.clone(),
                    AppliedService {
                        id,
                        backends: BTreeMap::new(),
                        written_from: MaglevRow::default(),
                        value: Service::default(),
                    },
                );
            }
            stale_backends.extend(self.update_service(name, entry, &mut report)?);
        }
        self.update_frontends(SCOPE_XDP, &tables.frontends, &mut report)?;
        self.update_frontends(SCOPE_SOCKET, &tables.socket_frontends, &mut report)?;
        for id in stale_backends {
            self.delete_backend(id, &mut report)?;
        }
        let removed: Vec<ServiceView> =
            self.services.keys().filter(|n| !tables.services.contains_key(*n)).cloned().collect();
        for name in removed {
            self.delete_service(&name, &mut report)?;
        }
        Ok(report)
    }

    /// Steps 1–3 for one service; returns the ids of backends to delete.
    fn update_service(
        &mut self,
        name: &ServiceView,
        entry: &ServiceEntry,
        report: &mut ApplyReport,
    ) -> Result<Vec<u32>> {
        let maglev_size = self.maglev_size as usize;
        if !entry.maglev.is_empty() && entry.maglev.len() != maglev_size {
            return Err(anyhow!("{name}: Maglev row has {} slots, expected {maglev_size}", entry.maglev.len()));
        }
        let applied = self.services.get_mut(name).expect("allocated above");
        let same_backends = applied.backends.keys().eq(entry.backends.iter());
        for addr in &entry.backends {
            if !applied.backends.contains_key(addr) {
                let id = self.backend_ids.allocate();
                self.maps
                    .backends
                    .insert(id, Backend::new(addr.ip, addr.port), 0)
                    .with_context(|| format!("{name}: inserting backend {addr}"))?;
                applied.backends.insert(*addr, id);
                report.backends_written += 1;
            }
        }
        let row_unchanged = same_backends
            && !applied.written_from.is_empty()
            && (Arc::ptr_eq(&applied.written_from, &entry.maglev) || applied.written_from == entry.maglev);
        if !row_unchanged {
            let ids: Vec<u32> = entry.backends.iter().map(|addr| applied.backends[addr]).collect();
            let base = applied.id * self.maglev_size;
            applied.written_from = MaglevRow::default();
            for (slot, &index) in entry.maglev.iter().enumerate() {
                let id = *ids
                    .get(index as usize)
                    .ok_or_else(|| anyhow!("{name}: Maglev slot {slot} points past the backends"))?;
                let at = base + slot as u32;
                let slots = &mut self.maps.maglev;
                if slots.get(at)? != id {
                    slots.set(at, id).with_context(|| format!("{name}: writing Maglev slot {slot}"))?;
                    report.maglev_slots_written += 1;
                }
            }
            applied.written_from = entry.maglev.clone();
        }
        let value = Service {
            backend_count: entry.backends.len() as u32,
            flags: if entry.drop_when_empty { SERVICE_DROP_WHEN_EMPTY } else { 0 },
            affinity_timeout_s: entry.affinity_timeout_s,
        };
        if applied.value != value {
            self.maps.services.set(applied.id, value, 0).with_context(|| format!("{name}: writing SERVICES"))?;
            applied.value = value;
            report.services_written += 1;
        }
        let gone: Vec<BackendAddr> =
            applied.backends.keys().filter(|a| entry.backends.binary_search(a).is_err()).copied().collect();
        Ok(gone.iter().filter_map(|a| applied.backends.remove(a)).collect())
    }

    /// Step 4, for the frontends of one scope.
    fn update_frontends(
        &mut self,
        scope: u8,
        frontends: &BTreeMap<FrontendAddr, FrontendEntry>,
        report: &mut ApplyReport,
    ) -> Result<()> {
        for (addr, entry) in frontends {
            let Some(service) = self.services.get(&entry.service) else { continue };
            let value = Frontend { service_id: service.id, flags: if entry.snat { FRONTEND_SNAT } else { 0 } };
            if self.frontends.get(&(scope, *addr)) != Some(&value) {
                self.maps
                    .frontends
                    .insert(frontend_key(scope, addr), value, 0)
                    .with_context(|| format!("writing frontend {addr} of {}", entry.service))?;
                self.frontends.insert((scope, *addr), value);
                report.frontends_written += 1;
            }
        }
        let removed: Vec<FrontendAddr> = self
            .frontends
            .keys()
            .filter(|(s, a)| *s == scope && frontends.get(a).is_none_or(|e| !self.services.contains_key(&e.service)))
            .map(|(_, a)| *a)
            .collect();
        for addr in removed {
            let key = frontend_key(scope, &addr);
            self.maps.frontends.remove(&key).with_context(|| format!("deleting frontend {addr}"))?;
            self.frontends.remove(&(scope, addr));
            report.frontends_deleted += 1;
        }
        Ok(())
    }

    fn delete_backend(&mut self, id: u32, report: &mut ApplyReport) -> Result<()> {
        self.maps.backends.remove(&id).with_context(|| format!("deleting backend id {id}"))?;
        report.backends_deleted += 1;
        Ok(())
    }

    /// Step 5 for a service port no longer in the tables (its frontends are
    /// already gone).
    fn delete_service(&mut self, name: &ServiceView, report: &mut ApplyReport) -> Result<()> {
        let applied = self.services.get_mut(name).expect("listed above");
        if applied.value != Service::default() {
            self.maps
                .services
                .set(applied.id, Service::default(), 0)
                .with_context(|| format!("{name}: clearing SERVICES"))?;
            applied.value = Service::default();
        }
        let ids: Vec<u32> = applied.backends.values().copied().collect();
        for id in ids {
            self.delete_backend(id, report)?;
            self.services.get_mut(name).expect("present").backends.retain(|_, v| *v != id);
        }
        let applied = self.services.remove(name).expect("present");
        self.service_ids.release(applied.id);
        report.services_deleted += 1;
        Ok(())
    }

    fn reset_stats(&mut self, id: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![ServiceStats::default(); cpus])?;
        self.maps.service_stats.set(id, zeros, 0).context("resetting SERVICE_STATS")?;
        Ok(())
    }
}

fn frontend_key(scope: u8, addr: &FrontendAddr) -> FrontendKey {
    FrontendKey::new(addr.ip, addr.port, addr.protocol.number(), scope)
}
