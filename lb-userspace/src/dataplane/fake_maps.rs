//! An in-memory [`MapStore`] for root-free tests of the planner and the
//! write order. After every write it checks what the XDP and socket
//! programs rely on, as they could look at any moment:
//!
//! - every frontend names a service id below the capacity;
//! - a service with backends (`backend_count > 0`) that a frontend names
//!   has a Maglev row whose every slot is a backend in `BACKENDS`;
//! - no backend id above the recorded high-water mark is in `BACKENDS`.
//!
//! A write that breaks one of them fails with the reason, and the test
//! with it.

use std::collections::BTreeMap;

use anyhow::{Result, bail, ensure};
use lb_common::{Backend, Frontend, FrontendKey, Service};

use super::MapStore;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeMaps {
    pub maglev_size: u32,
    pub max_services: u32,
    pub frontends: BTreeMap<FrontendKey, Frontend>,
    pub services: BTreeMap<u32, Service>,
    pub backends: BTreeMap<u32, Backend>,
    pub maglev: Vec<u32>,
    pub backend_id_high_water: u32,
    /// Service ids whose stats were reset, in order.
    pub stats_resets: Vec<u32>,
    /// Every write, in order (`"insert_backend 3"`, …).
    pub writes: Vec<String>,
    /// Fail the write with this index in [`FakeMaps::writes`] (counting
    /// from 0), to test what a failed write leaves.
    pub fail_at: Option<usize>,
}

impl FakeMaps {
    pub fn new(maglev_size: u32, max_services: u32) -> Self {
        Self { maglev_size, max_services, maglev: vec![0; (maglev_size * max_services) as usize], ..Self::default() }
    }

    /// The backends a frontend's new flows can reach now, as the XDP
    /// program would pick them (every slot of its row), deduplicated.
    pub fn reachable(&self, key: &FrontendKey) -> Vec<Backend> {
        let Some(frontend) = self.frontends.get(key) else { return Vec::new() };
        let count = self.services.get(&frontend.service_id).map_or(0, |s| s.backend_count);
        if count == 0 {
            return Vec::new();
        }
        let base = (frontend.service_id * self.maglev_size) as usize;
        let mut out: Vec<Backend> = self.maglev[base..base + self.maglev_size as usize]
            .iter()
            .filter_map(|id| self.backends.get(id).copied())
            .collect();
        out.sort_by_key(|b| (b.addr, b.port));
        out.dedup();
        out
    }

    fn write(&mut self, what: String) -> Result<()> {
        if self.fail_at == Some(self.writes.len()) {
            bail!("injected failure of write {}: {what}", self.writes.len());
        }
        self.writes.push(what);
        Ok(())
    }

    fn check(&self) -> Result<()> {
        for (key, frontend) in &self.frontends {
            ensure!(frontend.service_id < self.max_services, "frontend {key} names service id {}", frontend.service_id);
            let count = self.services.get(&frontend.service_id).map_or(0, |s| s.backend_count);
            if count == 0 {
                continue;
            }
            let base = (frontend.service_id * self.maglev_size) as usize;
            for (slot, id) in self.maglev[base..base + self.maglev_size as usize].iter().enumerate() {
                ensure!(
                    self.backends.contains_key(id),
                    "frontend {key}: service {} slot {slot} names backend id {id}, not in BACKENDS",
                    frontend.service_id
                );
            }
        }
        if let Some((&id, _)) = self.backends.last_key_value() {
            ensure!(id <= self.backend_id_high_water, "backend id {id} is above the high-water mark");
        }
        Ok(())
    }
}

impl MapStore for FakeMaps {
    fn frontends(&self) -> Result<Vec<(FrontendKey, Frontend)>> {
        Ok(self.frontends.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn services(&self) -> Result<Vec<(u32, Service)>> {
        Ok(self.services.iter().filter(|(_, s)| **s != Service::default()).map(|(k, v)| (*k, *v)).collect())
    }

    fn backends(&self) -> Result<Vec<(u32, Backend)>> {
        Ok(self.backends.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn maglev_slot(&self, index: u32) -> Result<u32> {
        match self.maglev.get(index as usize) {
            Some(id) => Ok(*id),
            None => bail!("Maglev slot {index} is past the map"),
        }
    }

    fn backend_id_high_water(&self) -> Result<u32> {
        Ok(self.backend_id_high_water)
    }

    fn set_backend_id_high_water(&mut self, id: u32) -> Result<()> {
        self.write(format!("high_water {id}"))?;
        self.backend_id_high_water = id;
        self.check()
    }

    fn insert_backend(&mut self, id: u32, backend: Backend) -> Result<()> {
        self.write(format!("insert_backend {id}"))?;
        self.backends.insert(id, backend);
        self.check()
    }

    fn delete_backend(&mut self, id: u32) -> Result<()> {
        self.write(format!("delete_backend {id}"))?;
        ensure!(self.backends.remove(&id).is_some(), "deleting backend {id}: no such entry");
        self.check()
    }

    fn set_maglev_slot(&mut self, index: u32, backend_id: u32) -> Result<()> {
        self.write(format!("maglev {index}"))?;
        let Some(slot) = self.maglev.get_mut(index as usize) else { bail!("Maglev slot {index} is past the map") };
        *slot = backend_id;
        self.check()
    }

    fn set_service(&mut self, id: u32, service: Service) -> Result<()> {
        self.write(format!("service {id}"))?;
        ensure!(id < self.max_services, "service id {id} is past SERVICES");
        self.services.insert(id, service);
        self.check()
    }

    fn reset_service_stats(&mut self, id: u32) -> Result<()> {
        self.write(format!("reset_stats {id}"))?;
        self.stats_resets.push(id);
        Ok(())
    }

    fn insert_frontend(&mut self, key: FrontendKey, frontend: Frontend) -> Result<()> {
        self.write(format!("insert_frontend {key}"))?;
        self.frontends.insert(key, frontend);
        self.check()
    }

    fn delete_frontend(&mut self, key: FrontendKey) -> Result<()> {
        self.write(format!("delete_frontend {key}"))?;
        ensure!(self.frontends.remove(&key).is_some(), "deleting frontend {key}: no such entry");
        self.check()
    }
}
