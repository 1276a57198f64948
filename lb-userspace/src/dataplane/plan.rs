//! The planner: turns compiled [`DataplaneTables`] and what is in the maps
//! into an ordered list of [`MapOp`]s. Pure: it reads the maps through
//! [`MapStore`] and writes nothing.
//!
//! The order never lets a kernel program see a Maglev slot naming a backend
//! that is not in `BACKENDS`:
//!
//! 1. new backends are inserted (after the backend-id high-water mark that
//!    covers them is recorded);
//! 2. Maglev rows are written;
//! 3. `SERVICES` (backend counts, flags, affinity) is updated;
//! 4. frontends (of both scopes: XDP and sockets) are added, changed and
//!    removed;
//! 5. removed backends and services are deleted.
//!
//! **Adoption.** The planner's picture of the maps (which service port has
//! which service id, which backend has which id) starts empty of knowledge:
//! the first plan, and the first after a failed execution, reads it back
//! from the maps. A frontend already in the maps gives its service id to
//! the service port the tables put on that frontend; that service's row
//! names its backend ids; what no service port claims is removed by the
//! plan. So an agent restarted on pinned maps writes only what changed
//! while it was away, and a plan never trusts a picture the kernel may not
//! hold. Draining backends (terminating endpoints, in no row) are found by
//! their flag and address: a service port the tables give that draining
//! address takes the id back, so flows open to it survive the restart.
//!
//! **Draining.** A service port's terminating endpoints, while it has ready
//! ones, stay in `BACKENDS` flagged [`BACKEND_DRAINING`] under the id they
//! had: conntrack entries naming that id keep their backend, and no row
//! names it. An endpoint turning terminating or ready again only has its
//! flag rewritten (before the row, when it becomes usable again).
//!
//! **Deltas.** Handed the entries a compile changed ([`TablesDelta`]), a
//! plan visits those alone, so its cost follows the change and not the
//! cluster. Without one (the first plan, after a failure, while service
//! ports wait for a free id) it compares every entry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use anyhow::{Result, bail};
use lb_common::{
    BACKEND_DRAINING, Backend, FRONTEND_SNAT, Frontend, FrontendKey, SCOPE_SOCKET, SCOPE_XDP, SERVICE_DROP_WHEN_EMPTY,
    Service,
};

use super::MapStore;
use super::ids::{BackendIds, ServiceIds};
use crate::compile::{
    BackendAddr, DataplaneTables, FrontendAddr, FrontendEntry, MaglevRow, ServiceEntry, ServiceView, TablesDelta,
};

/// One write to the maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// Records that backend ids up to `through` are taken (`AGENT_STATE`).
    ReserveBackendIds {
        through: u32,
    },
    InsertBackend {
        id: u32,
        backend: Backend,
    },
    /// A service id is new to its service port: its counters start at 0.
    ResetServiceStats {
        service_id: u32,
    },
    /// Makes every slot of the service's row hold `ids[row[slot]]`; the
    /// executor writes only the slots that differ.
    WriteMaglevRow {
        service_id: u32,
        row: MaglevRow,
        ids: Vec<u32>,
    },
    WriteService {
        service_id: u32,
        service: Service,
    },
    WriteFrontend {
        key: FrontendKey,
        frontend: Frontend,
    },
    DeleteFrontend {
        key: FrontendKey,
    },
    DeleteBackend {
        id: u32,
    },
}

impl fmt::Display for MapOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapOp::ReserveBackendIds { through } => write!(f, "recording backend ids up to {through}"),
            MapOp::InsertBackend { id, backend } => write!(f, "inserting backend {backend} (id {id})"),
            MapOp::ResetServiceStats { service_id } => write!(f, "resetting the counters of service id {service_id}"),
            MapOp::WriteMaglevRow { service_id, .. } => write!(f, "writing the Maglev row of service id {service_id}"),
            MapOp::WriteService { service_id, .. } => write!(f, "writing SERVICES[{service_id}]"),
            MapOp::WriteFrontend { key, frontend } => {
                write!(f, "writing frontend {key} (service id {})", frontend.service_id)
            }
            MapOp::DeleteFrontend { key } => write!(f, "deleting frontend {key}"),
            MapOp::DeleteBackend { id } => write!(f, "deleting backend id {id}"),
        }
    }
}

/// The planned writes of one apply.
#[derive(Debug, Default)]
pub struct Plan {
    pub ops: Vec<MapOp>,
    /// Service ports left out because every service id is taken.
    pub over_capacity: Vec<ServiceView>,
    /// Service ports that left the tables.
    pub services_deleted: usize,
    /// Set when this plan adopted the maps' contents.
    pub adopted: Option<Adopted>,
}

/// What a plan found in the maps when it adopted them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Service ports that kept the service id they had in the maps.
    pub services: usize,
    pub frontends: usize,
    pub backends: usize,
    /// Service ids in the maps that no service port of the tables claimed.
    pub orphan_services: usize,
}

/// A service port as it is in the maps.
#[derive(Debug)]
struct AppliedService {
    id: u32,
    /// Its backends' ids, the draining ones included.
    backends: BTreeMap<BackendAddr, u32>,
    /// Those of `backends` written as draining.
    draining: BTreeSet<BackendAddr>,
    /// The compiled row the service's slots were last written from in full
    /// (with the same backends): handed the same row again, the plan skips
    /// the row. Empty when the slots are not known to match a row.
    written_from: MaglevRow,
    /// Its `SERVICES` entry as written.
    value: Service,
}

/// A service id found in the maps that no service port claimed.
#[derive(Debug)]
struct Orphan {
    id: u32,
    backends: Vec<u32>,
    value: Service,
}

/// The planner's picture of the maps, as the last plan left them.
#[derive(Debug)]
struct Picture {
    service_ids: ServiceIds,
    backend_ids: BackendIds,
    /// The backend-id high-water mark recorded in the maps.
    recorded_high_water: u32,
    services: BTreeMap<ServiceView, AppliedService>,
    frontends: BTreeMap<FrontendKey, Frontend>,
    /// Adopted and unclaimed: removed by the next plan.
    orphans: Vec<Orphan>,
    orphan_backends: Vec<u32>,
    /// Adopted draining backends by address, for the service ports that
    /// still drain them; the next plan removes the unclaimed ones.
    draining_found: BTreeMap<BackendAddr, Vec<u32>>,
    /// Service ports were left without an id: the next plan compares
    /// everything, to give them one if one is free.
    waiting_for_ids: bool,
}

pub struct Planner {
    maglev_size: u32,
    max_services: u32,
    picture: Option<Picture>,
}

impl Planner {
    pub fn new(maglev_size: u32, max_services: u32) -> Self {
        Self { maglev_size, max_services, picture: None }
    }

    pub fn maglev_size(&self) -> u32 {
        self.maglev_size
    }

    /// The service id of each service view in the maps, as the last plan
    /// left them (none before the first plan or after a failed one).
    pub fn service_ids(&self) -> impl Iterator<Item = (&ServiceView, u32)> {
        self.picture.iter().flat_map(|picture| picture.services.iter().map(|(view, applied)| (view, applied.id)))
    }

    /// Forgets the picture: the next plan adopts the maps again. Called
    /// when an execution failed half-way.
    pub fn invalidate(&mut self) {
        self.picture = None;
    }

    /// Plans the writes that make the maps hold `tables`, assuming they will
    /// all succeed (on failure call [`Planner::invalidate`]). `delta` names
    /// the entries that changed since the last plan (`None`: any may have).
    pub fn plan(&mut self, tables: &DataplaneTables, delta: Option<&TablesDelta>, maps: &dyn MapStore) -> Result<Plan> {
        let mut plan = Plan::default();
        if self.picture.is_none() {
            let (picture, adopted) = adopt(tables, maps, self.maglev_size, self.max_services)?;
            self.picture = Some(picture);
            plan.adopted = Some(adopted);
        }
        let delta =
            delta.filter(|_| plan.adopted.is_none() && !self.picture.as_ref().is_some_and(|p| p.waiting_for_ids));
        let result = self.plan_on_picture(tables, delta, &mut plan);
        if result.is_err() {
            self.picture = None;
        }
        result.map(|()| plan)
    }

    fn plan_on_picture(
        &mut self,
        tables: &DataplaneTables,
        delta: Option<&TablesDelta>,
        plan: &mut Plan,
    ) -> Result<()> {
        let maglev_size = self.maglev_size;
        let picture = self.picture.as_mut().expect("adopted above");
        let mut stale_backends: Vec<u32> = Vec::new();
        // Steps 1–3 per service port; new backends are inserted first.
        let mut inserts: Vec<MapOp> = Vec::new();
        let mut rows_and_services: Vec<MapOp> = Vec::new();
        let services: Box<dyn Iterator<Item = (&ServiceView, &ServiceEntry)>> = match delta {
            Some(delta) => Box::new(delta.services.iter().filter_map(|v| tables.services.get_key_value(v))),
            None => Box::new(tables.services.iter()),
        };
        for (name, entry) in services {
            if !entry.maglev.is_empty() && entry.maglev.len() != maglev_size as usize {
                bail!("{name}: Maglev row has {} slots, expected {maglev_size}", entry.maglev.len());
            }
            if let Some(slot) = entry.maglev.iter().position(|&index| index as usize >= entry.backends.len()) {
                bail!("{name}: Maglev slot {slot} points past the backends");
            }
            if !picture.services.contains_key(name) {
                let Some(id) = picture.service_ids.allocate() else {
                    plan.over_capacity.push(name.clone());
                    continue;
                };
                rows_and_services.push(MapOp::ResetServiceStats { service_id: id });
                let applied = AppliedService {
                    id,
                    backends: BTreeMap::new(),
                    draining: BTreeSet::new(),
                    written_from: MaglevRow::default(),
                    value: Service::default(),
                };
                picture.services.insert(name.clone(), applied);
            }
            let applied = picture.services.get_mut(name).expect("allocated above");
            let same_backends =
                applied.backends.keys().filter(|a| !applied.draining.contains(a)).eq(entry.backends.iter());
            let wanted = entry.backends.iter().map(|a| (a, false)).chain(entry.draining.iter().map(|a| (a, true)));
            for (addr, draining) in wanted {
                let backend =
                    if draining { Backend::draining(addr.ip, addr.port) } else { Backend::new(addr.ip, addr.port) };
                match applied.backends.get(addr) {
                    None => {
                        let found = picture.draining_found.get_mut(addr).and_then(Vec::pop);
                        let id = found.unwrap_or_else(|| picture.backend_ids.allocate());
                        if !(draining && found.is_some()) {
                            inserts.push(MapOp::InsertBackend { id, backend });
                        }
                        applied.backends.insert(*addr, id);
                    }
                    Some(&id) if applied.draining.contains(addr) != draining => {
                        inserts.push(MapOp::InsertBackend { id, backend });
                    }
                    Some(_) => {}
                }
                if draining {
                    applied.draining.insert(*addr);
                } else {
                    applied.draining.remove(addr);
                }
            }
            let row_unchanged = same_backends
                && !applied.written_from.is_empty()
                && (Arc::ptr_eq(&applied.written_from, &entry.maglev) || applied.written_from == entry.maglev);
            if !row_unchanged && !entry.maglev.is_empty() {
                let ids = entry.backends.iter().map(|addr| applied.backends[addr]).collect();
                rows_and_services.push(MapOp::WriteMaglevRow {
                    service_id: applied.id,
                    row: entry.maglev.clone(),
                    ids,
                });
            }
            applied.written_from = entry.maglev.clone();
            let value = Service {
                backend_count: entry.backends.len() as u32,
                flags: if entry.drop_when_empty { SERVICE_DROP_WHEN_EMPTY } else { 0 },
                affinity_timeout_s: entry.affinity_timeout_s,
            };
            if applied.value != value {
                rows_and_services.push(MapOp::WriteService { service_id: applied.id, service: value });
                applied.value = value;
            }
            let gone: Vec<BackendAddr> = applied
                .backends
                .keys()
                .filter(|a| entry.backends.binary_search(a).is_err() && entry.draining.binary_search(a).is_err())
                .copied()
                .collect();
            for addr in gone {
                applied.draining.remove(&addr);
                stale_backends.extend(applied.backends.remove(&addr));
            }
        }
        let high_water = picture.backend_ids.last();
        if high_water > picture.recorded_high_water {
            plan.ops.push(MapOp::ReserveBackendIds { through: high_water });
            picture.recorded_high_water = high_water;
        }
        plan.ops.extend(inserts);
        plan.ops.extend(rows_and_services);
        picture.waiting_for_ids = !plan.over_capacity.is_empty();
        // Step 4.
        let desired = match delta {
            Some(delta) => desired_frontends_of(tables, delta, &picture.services),
            None => desired_frontends(tables, &picture.services),
        };
        for (key, frontend) in &desired {
            match frontend {
                Some(frontend) if picture.frontends.get(key) != Some(frontend) => {
                    plan.ops.push(MapOp::WriteFrontend { key: *key, frontend: *frontend });
                    picture.frontends.insert(*key, *frontend);
                }
                Some(_) => {}
                None => {
                    if picture.frontends.remove(key).is_some() {
                        plan.ops.push(MapOp::DeleteFrontend { key: *key });
                    }
                }
            }
        }
        if delta.is_none() {
            let removed: Vec<FrontendKey> =
                picture.frontends.keys().filter(|k| !desired.contains_key(k)).copied().collect();
            for key in removed {
                plan.ops.push(MapOp::DeleteFrontend { key });
                picture.frontends.remove(&key);
            }
        }
        // Step 5.
        plan.ops.extend(stale_backends.into_iter().map(|id| MapOp::DeleteBackend { id }));
        let removed: Vec<ServiceView> = match delta {
            Some(delta) => delta
                .services
                .iter()
                .filter(|n| !tables.services.contains_key(*n) && picture.services.contains_key(*n))
                .cloned()
                .collect(),
            None => picture.services.keys().filter(|n| !tables.services.contains_key(*n)).cloned().collect(),
        };
        for name in removed {
            let applied = picture.services.remove(&name).expect("listed above");
            remove_service(plan, applied.id, applied.value, applied.backends.into_values());
            picture.service_ids.release(applied.id);
            plan.services_deleted += 1;
        }
        for orphan in std::mem::take(&mut picture.orphans) {
            remove_service(plan, orphan.id, orphan.value, orphan.backends.into_iter());
            picture.service_ids.release(orphan.id);
        }
        plan.ops.extend(std::mem::take(&mut picture.orphan_backends).into_iter().map(|id| MapOp::DeleteBackend { id }));
        let unclaimed = std::mem::take(&mut picture.draining_found).into_values().flatten();
        plan.ops.extend(unclaimed.map(|id| MapOp::DeleteBackend { id }));
        Ok(())
    }
}

/// Step 5 for a service id no longer used (its frontends are already gone).
fn remove_service(plan: &mut Plan, id: u32, value: Service, backends: impl Iterator<Item = u32>) {
    if value != Service::default() {
        plan.ops.push(MapOp::WriteService { service_id: id, service: Service::default() });
    }
    plan.ops.extend(backends.map(|id| MapOp::DeleteBackend { id }));
}

/// The frontends of both scopes as the maps should hold them (those of
/// service ports without an id left out).
fn desired_frontends(
    tables: &DataplaneTables,
    services: &BTreeMap<ServiceView, AppliedService>,
) -> BTreeMap<FrontendKey, Option<Frontend>> {
    let mut out = BTreeMap::new();
    for (scope, frontends) in [(SCOPE_XDP, &tables.frontends), (SCOPE_SOCKET, &tables.socket_frontends)] {
        for (addr, entry) in frontends {
            if let Some(value) = frontend_value(entry, services) {
                out.insert(frontend_key(scope, addr), Some(value));
            }
        }
    }
    out
}

/// The frontends `delta` names as the maps should hold them: `None` for
/// those to remove.
fn desired_frontends_of(
    tables: &DataplaneTables,
    delta: &TablesDelta,
    services: &BTreeMap<ServiceView, AppliedService>,
) -> BTreeMap<FrontendKey, Option<Frontend>> {
    let mut out = BTreeMap::new();
    let scopes = [
        (SCOPE_XDP, &delta.frontends, &tables.frontends),
        (SCOPE_SOCKET, &delta.socket_frontends, &tables.socket_frontends),
    ];
    for (scope, changed, frontends) in scopes {
        for addr in changed {
            let value = frontends.get(addr).and_then(|entry| frontend_value(entry, services));
            out.insert(frontend_key(scope, addr), value);
        }
    }
    out
}

fn frontend_value(entry: &FrontendEntry, services: &BTreeMap<ServiceView, AppliedService>) -> Option<Frontend> {
    let service = services.get(&entry.service)?;
    Some(Frontend { service_id: service.id, flags: if entry.snat { FRONTEND_SNAT } else { 0 } })
}

pub fn frontend_key(scope: u8, addr: &FrontendAddr) -> FrontendKey {
    FrontendKey::new(addr.ip, addr.port, addr.protocol.number(), scope)
}

/// Reads the picture back from the maps (see the module documentation).
fn adopt(
    tables: &DataplaneTables,
    maps: &dyn MapStore,
    maglev_size: u32,
    max_services: u32,
) -> Result<(Picture, Adopted)> {
    let frontends: BTreeMap<FrontendKey, Frontend> = maps.frontends()?.into_iter().collect();
    let values: BTreeMap<u32, Service> = maps.services()?.into_iter().collect();
    let backends: BTreeMap<u32, Backend> = maps.backends()?.into_iter().collect();
    // Service ids in use: named by a frontend, or with a SERVICES entry.
    let in_use: BTreeSet<u32> = frontends
        .values()
        .map(|f| f.service_id)
        .chain(values.keys().copied())
        .filter(|&id| id < max_services)
        .collect();
    // Claims, in the tables' order: a desired frontend already in the maps
    // gives its service id to the service port the tables put there.
    let mut claimed: BTreeMap<ServiceView, u32> = BTreeMap::new();
    let mut claimed_ids: BTreeSet<u32> = BTreeSet::new();
    let desired = [(SCOPE_XDP, &tables.frontends), (SCOPE_SOCKET, &tables.socket_frontends)];
    for (scope, table) in desired {
        for (addr, FrontendEntry { service, .. }) in table {
            let Some(existing) = frontends.get(&frontend_key(scope, addr)) else { continue };
            let id = existing.service_id;
            if in_use.contains(&id)
                && tables.services.contains_key(service)
                && !claimed.contains_key(service)
                && claimed_ids.insert(id)
            {
                claimed.insert(service.clone(), id);
            }
        }
    }
    let row_backends = |id: u32| -> Result<Vec<u32>> {
        let mut ids = BTreeSet::new();
        for slot in 0..maglev_size {
            let backend = maps.maglev_slot(id * maglev_size + slot)?;
            if backends.contains_key(&backend) {
                ids.insert(backend);
            }
        }
        Ok(ids.into_iter().collect())
    };
    let mut referenced: BTreeSet<u32> = BTreeSet::new();
    let mut services = BTreeMap::new();
    for (view, &id) in &claimed {
        let mut by_addr = BTreeMap::new();
        for backend_id in row_backends(id)? {
            let backend = backends[&backend_id];
            let addr = BackendAddr { ip: lb_common::addr_from_map(backend.addr), port: u16::from_be(backend.port) };
            if by_addr.insert(addr, backend_id).is_none() {
                referenced.insert(backend_id);
            }
        }
        let value = values.get(&id).copied().unwrap_or_default();
        let applied = AppliedService {
            id,
            backends: by_addr,
            draining: BTreeSet::new(),
            written_from: MaglevRow::default(),
            value,
        };
        services.insert(view.clone(), applied);
    }
    let mut orphans = Vec::new();
    for &id in in_use.difference(&claimed_ids) {
        let ids: Vec<u32> = row_backends(id)?.into_iter().filter(|b| referenced.insert(*b)).collect();
        orphans.push(Orphan { id, backends: ids, value: values.get(&id).copied().unwrap_or_default() });
    }
    let mut orphan_backends: Vec<u32> = Vec::new();
    let mut draining_found: BTreeMap<BackendAddr, Vec<u32>> = BTreeMap::new();
    for (&id, backend) in backends.iter().filter(|(id, _)| !referenced.contains(id)) {
        if backend.flags & BACKEND_DRAINING != 0 {
            let addr = BackendAddr { ip: lb_common::addr_from_map(backend.addr), port: u16::from_be(backend.port) };
            draining_found.entry(addr).or_default().push(id);
        } else {
            orphan_backends.push(id);
        }
    }
    let recorded_high_water = maps.backend_id_high_water()?;
    let highest = backends.keys().next_back().copied().unwrap_or(0).max(recorded_high_water);
    let adopted = Adopted {
        services: services.len(),
        frontends: frontends.len(),
        backends: backends.len(),
        orphan_services: orphans.len(),
    };
    let picture = Picture {
        service_ids: ServiceIds::with_used(max_services, &in_use),
        backend_ids: BackendIds::starting_after(highest),
        recorded_high_water,
        services,
        frontends,
        orphans,
        orphan_backends,
        draining_found,
        waiting_for_ids: false,
    };
    Ok((picture, adopted))
}

#[cfg(test)]
mod tests;
