//! Applies compiled [`DataplaneTables`] to the maps by difference: the
//! [planner](super::plan) decides which writes, in which order; the
//! executor here makes them through [`MapStore`], one by one, and stops at
//! the first failure. After a failure the planner forgets its picture, so
//! the next apply starts from what the kernel really holds.

use anyhow::{Context, Result};

use super::plan::{Adopted, MapOp, Planner};
use super::{DataplaneMaps, MapStore};
use crate::compile::{DataplaneTables, ServiceView, TablesDelta};

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
    /// Set when this apply adopted what the maps held (the first apply, on
    /// maps a previous agent left pinned, or after a failed apply).
    pub adopted: Option<Adopted>,
}

pub struct Applier<S: MapStore = DataplaneMaps> {
    store: S,
    planner: Planner,
}

impl<S: MapStore> Applier<S> {
    pub fn new(store: S, maglev_size: u32, max_services: u32) -> Self {
        Self { store, planner: Planner::new(maglev_size, max_services) }
    }

    pub fn maps(&self) -> &S {
        &self.store
    }

    pub fn maps_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The service id of each service view in the maps.
    pub fn service_ids(&self) -> impl Iterator<Item = (&ServiceView, u32)> {
        self.planner.service_ids()
    }

    pub fn apply(&mut self, tables: &DataplaneTables) -> Result<ApplyReport> {
        self.apply_changes(tables, None)
    }

    /// Applies `tables`, of which only the entries `delta` names changed
    /// since the last apply (`None`: any may have).
    pub fn apply_changes(&mut self, tables: &DataplaneTables, delta: Option<&TablesDelta>) -> Result<ApplyReport> {
        let plan = self.planner.plan(tables, delta, &self.store)?;
        let mut report = ApplyReport {
            services_over_capacity: plan.over_capacity,
            services_deleted: plan.services_deleted,
            adopted: plan.adopted,
            ..ApplyReport::default()
        };
        if let Err(e) = execute(&plan.ops, &mut self.store, self.planner.maglev_size(), &mut report) {
            self.planner.invalidate();
            return Err(e);
        }
        Ok(report)
    }
}

/// Makes the writes in order; stops at the first that fails.
pub fn execute(ops: &[MapOp], store: &mut dyn MapStore, maglev_size: u32, report: &mut ApplyReport) -> Result<()> {
    for op in ops {
        execute_one(op, store, maglev_size, report).with_context(|| op.to_string())?;
    }
    Ok(())
}

fn execute_one(op: &MapOp, store: &mut dyn MapStore, maglev_size: u32, report: &mut ApplyReport) -> Result<()> {
    match op {
        MapOp::ReserveBackendIds { through } => store.set_backend_id_high_water(*through)?,
        MapOp::InsertBackend { id, backend } => {
            store.insert_backend(*id, *backend)?;
            report.backends_written += 1;
        }
        MapOp::ResetServiceStats { service_id } => store.reset_service_stats(*service_id)?,
        MapOp::WriteMaglevRow { service_id, row, ids } => {
            let base = service_id * maglev_size;
            for (slot, &index) in row.iter().enumerate() {
                let id = ids[index as usize];
                let at = base + slot as u32;
                if store.maglev_slot(at)? != id {
                    store.set_maglev_slot(at, id)?;
                    report.maglev_slots_written += 1;
                }
            }
        }
        MapOp::WriteService { service_id, service } => {
            store.set_service(*service_id, *service)?;
            report.services_written += 1;
        }
        MapOp::WriteFrontend { key, frontend } => {
            store.insert_frontend(*key, *frontend)?;
            report.frontends_written += 1;
        }
        MapOp::DeleteFrontend { key } => {
            store.delete_frontend(*key)?;
            report.frontends_deleted += 1;
        }
        MapOp::DeleteBackend { id } => {
            store.delete_backend(*id)?;
            report.backends_deleted += 1;
        }
    }
    Ok(())
}
