//! The small trait between the planner and the maps: what the planner reads
//! to adopt the maps' contents, and the writes the executor makes. The aya
//! maps ([`DataplaneMaps`]) and an in-memory fake ([`super::FakeMaps`]) are
//! its two implementations.

use anyhow::{Context, Result};
use aya::maps::PerCpuValues;
use lb_common::{AgentState, Backend, Frontend, FrontendKey, Service, ServiceStats};

use super::DataplaneMaps;

pub trait MapStore {
    /// Every entry of `FRONTENDS`.
    fn frontends(&self) -> Result<Vec<(FrontendKey, Frontend)>>;
    /// The `SERVICES` entries that are not all zero.
    fn services(&self) -> Result<Vec<(u32, Service)>>;
    /// Every entry of `BACKENDS`.
    fn backends(&self) -> Result<Vec<(u32, Backend)>>;
    /// Slot `index` of `MAGLEV` (`service id × M + slot`).
    fn maglev_slot(&self, index: u32) -> Result<u32>;
    /// The highest backend id handed out so far (`AGENT_STATE`).
    fn backend_id_high_water(&self) -> Result<u32>;

    fn set_backend_id_high_water(&mut self, id: u32) -> Result<()>;
    fn insert_backend(&mut self, id: u32, backend: Backend) -> Result<()>;
    fn delete_backend(&mut self, id: u32) -> Result<()>;
    fn set_maglev_slot(&mut self, index: u32, backend_id: u32) -> Result<()>;
    fn set_service(&mut self, id: u32, service: Service) -> Result<()>;
    fn reset_service_stats(&mut self, id: u32) -> Result<()>;
    fn insert_frontend(&mut self, key: FrontendKey, frontend: Frontend) -> Result<()>;
    fn delete_frontend(&mut self, key: FrontendKey) -> Result<()>;
}

impl MapStore for DataplaneMaps {
    fn frontends(&self) -> Result<Vec<(FrontendKey, Frontend)>> {
        self.frontends.iter().map(|entry| entry.context("reading FRONTENDS")).collect()
    }

    fn services(&self) -> Result<Vec<(u32, Service)>> {
        let mut out = Vec::new();
        for id in 0..self.services.len() {
            let service = self.services.get(&id, 0).context("reading SERVICES")?;
            if service != Service::default() {
                out.push((id, service));
            }
        }
        Ok(out)
    }

    fn backends(&self) -> Result<Vec<(u32, Backend)>> {
        self.backends.iter().map(|entry| entry.context("reading BACKENDS")).collect()
    }

    fn maglev_slot(&self, index: u32) -> Result<u32> {
        self.maglev.get(index)
    }

    fn backend_id_high_water(&self) -> Result<u32> {
        let value = self.agent_state.get(&(AgentState::BackendIdHighWater as u32), 0).context("reading AGENT_STATE")?;
        Ok(u32::try_from(value).unwrap_or(u32::MAX))
    }

    fn set_backend_id_high_water(&mut self, id: u32) -> Result<()> {
        self.agent_state.set(AgentState::BackendIdHighWater as u32, u64::from(id), 0).context("writing AGENT_STATE")
    }

    fn insert_backend(&mut self, id: u32, backend: Backend) -> Result<()> {
        Ok(self.backends.insert(id, backend, 0)?)
    }

    fn delete_backend(&mut self, id: u32) -> Result<()> {
        Ok(self.backends.remove(&id)?)
    }

    fn set_maglev_slot(&mut self, index: u32, backend_id: u32) -> Result<()> {
        self.maglev.set(index, backend_id)
    }

    fn set_service(&mut self, id: u32, service: Service) -> Result<()> {
        Ok(self.services.set(id, service, 0)?)
    }

    fn reset_service_stats(&mut self, id: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let zeros = PerCpuValues::try_from(vec![ServiceStats::default(); cpus])?;
        Ok(self.service_stats.set(id, zeros, 0)?)
    }

    fn insert_frontend(&mut self, key: FrontendKey, frontend: Frontend) -> Result<()> {
        Ok(self.frontends.insert(key, frontend, 0)?)
    }

    fn delete_frontend(&mut self, key: FrontendKey) -> Result<()> {
        Ok(self.frontends.remove(&key)?)
    }
}
