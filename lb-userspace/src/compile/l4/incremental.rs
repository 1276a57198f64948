//! The L4 compiler kept from one snapshot to the next: each compile works
//! on what changed since the last one (the Services, the Services whose
//! EndpointSlices changed, the frontends they claim or claimed) and says
//! which entries of the tables it changed, so the applier looks at those
//! alone. A change of the node's own context (its zone, the cluster's node
//! addresses, the options) compiles everything again.
//!
//! The result never depends on the history: compiling a snapshot after any
//! sequence of others gives the tables and diagnostics of compiling it
//! first (a test checks this on random sequences).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use lb_common::maglev;

use super::claims::{Claims, FrontendSlot};
use super::service::{Hook, ServiceContext, ServiceOutput, compile_service};
use super::{CompileOptions, MaglevRows, NodeContext, ZONE_LABEL};
use crate::compile::endpoints::SERVICE_NAME_LABEL;
use crate::compile::tables::{DataplaneTables, ServiceView, TablesDelta};
use crate::diagnostics::Diagnostic;
use crate::snapshot::{Changes, ObjectKey, Snapshot, object_key};

pub struct L4Compiler {
    node: NodeContext,
    options: CompileOptions,
    /// The snapshot of the last compile.
    last: Option<Arc<Snapshot>>,
    cluster: ClusterContext,
    slices: SliceOwners,
    /// Every Service's output, by (namespace, name).
    outputs: HashMap<ObjectKey, ServiceOutput>,
    claims: Claims,
    /// The Services with problems of their own (their outputs hold them).
    problems: BTreeSet<ObjectKey>,
    /// Diagnostics of the claims that lost their frontend.
    conflicts: BTreeMap<FrontendSlot, Vec<Diagnostic>>,
    tables: DataplaneTables,
    rows: MaglevRows,
}

/// What the cluster's Nodes tell every Service's compile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ClusterContext {
    /// This node's zone, for topology hints.
    zone: Option<String>,
    /// This node's addresses and every Node's IPv4 `InternalIP` and
    /// `ExternalIP`: where the cluster's sockets reach node ports.
    node_addresses: Vec<Ipv4Addr>,
}

impl ClusterContext {
    fn of(snapshot: &Snapshot, node: &NodeContext) -> Self {
        let zone = snapshot
            .nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node.name.as_str()))
            .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).filter(|z| !z.is_empty()).cloned());
        let mut node_addresses = node.addresses.clone();
        for n in &snapshot.nodes {
            let listed = n.status.as_ref().and_then(|s| s.addresses.as_deref()).unwrap_or_default();
            node_addresses.extend(
                listed
                    .iter()
                    .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                    .filter_map(|a| a.address.parse::<Ipv4Addr>().ok()),
            );
        }
        node_addresses.sort();
        node_addresses.dedup();
        Self { zone, node_addresses }
    }
}

impl L4Compiler {
    pub fn new(node: NodeContext, options: CompileOptions) -> Self {
        Self {
            node,
            options,
            last: None,
            cluster: ClusterContext::default(),
            slices: SliceOwners::default(),
            outputs: HashMap::new(),
            claims: Claims::default(),
            problems: BTreeSet::new(),
            conflicts: BTreeMap::new(),
            tables: DataplaneTables::default(),
            rows: MaglevRows::default(),
        }
    }

    /// The tables of the last compile.
    pub fn tables(&self) -> &DataplaneTables {
        &self.tables
    }

    /// The snapshot of the last compile.
    pub fn last_snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.last.as_ref()
    }

    /// The node compiled for.
    pub fn node_name(&self) -> &str {
        &self.node.name
    }

    /// The IPv4 EndpointSlices of the last compile that belong to `service`
    /// (namespace, an empty one being `default`, and name), by name.
    pub fn service_slices(&self, service: &ObjectKey) -> Vec<&EndpointSlice> {
        self.slices.for_service(service)
    }

    pub fn into_tables(self) -> DataplaneTables {
        self.tables
    }

    /// Maglev rows built (not reused) by the last compile.
    pub fn rows_built(&self) -> usize {
        self.rows.built()
    }

    /// Compiles `snapshot`: updates the tables and returns what changed in
    /// them (`None`: anything may have, as on the first compile) and every
    /// problem of the snapshot's objects (what they concern is left out,
    /// everything else is compiled).
    pub fn compile(&mut self, snapshot: &Arc<Snapshot>) -> (Option<TablesDelta>, Vec<Diagnostic>) {
        let changes = self.last.as_ref().map(|last| snapshot.changes_since(last));
        self.compile_changes(snapshot, changes.as_ref())
    }

    /// [`L4Compiler::compile`] with the changes since
    /// [`L4Compiler::last_snapshot`] already found by the caller.
    pub fn compile_changes(
        &mut self,
        snapshot: &Arc<Snapshot>,
        changes: Option<&Changes>,
    ) -> (Option<TablesDelta>, Vec<Diagnostic>) {
        let changes = changes.filter(|_| self.last.is_some());
        // The Nodes are read again only when one changed.
        let cluster = match changes {
            Some(changes) if changes.nodes.is_empty() => None,
            _ => Some(ClusterContext::of(snapshot, &self.node)),
        };
        let delta = match (changes, cluster) {
            (Some(changes), cluster) if cluster.as_ref().is_none_or(|c| *c == self.cluster) => {
                let dirty = self.dirty_services(changes, snapshot);
                Some(self.recompile(snapshot, dirty))
            }
            (_, cluster) => {
                let cluster = cluster.unwrap_or_else(|| ClusterContext::of(snapshot, &self.node));
                self.reset(cluster);
                for slice in &snapshot.endpoint_slices {
                    self.slices.insert(slice);
                }
                let dirty = snapshot.services.iter().map(|s| service_key(object_key(&s.metadata))).collect();
                self.recompile(snapshot, dirty);
                None
            }
        };
        self.last = Some(snapshot.clone());
        (delta, self.diagnostics())
    }

    /// Forgets everything compiled and indexes the slices anew.
    fn reset(&mut self, cluster: ClusterContext) {
        let (node, options) = (self.node.clone(), self.options.clone());
        *self = Self::new(node, options);
        self.cluster = cluster;
    }

    /// The Services to compile again: those that changed and those whose
    /// slices changed (re-indexing the slices that changed).
    fn dirty_services(&mut self, changes: &Changes, snapshot: &Snapshot) -> BTreeSet<ObjectKey> {
        let mut dirty: BTreeSet<ObjectKey> = changes.services.iter().map(|(ns, n)| service_key((ns, n))).collect();
        for key in &changes.endpoint_slices {
            dirty.extend(self.slices.remove(key));
            if let Some(slice) = snapshot.endpoint_slice(&key.0, &key.1) {
                dirty.extend(self.slices.insert(slice));
            }
        }
        dirty
    }

    /// Compiles the `dirty` Services again and settles the frontends and
    /// views they concern.
    fn recompile(&mut self, snapshot: &Snapshot, dirty: BTreeSet<ObjectKey>) -> TablesDelta {
        let maglev_size = maglev::is_prime(self.options.maglev_table_size).then_some(self.options.maglev_table_size);
        let context = ServiceContext {
            node: &self.node,
            zone: self.cluster.zone.as_deref(),
            cluster_node_addresses: &self.cluster.node_addresses,
            maglev_size,
        };
        self.rows.begin(self.options.maglev_table_size);
        let mut touched: BTreeSet<FrontendSlot> = BTreeSet::new();
        let mut affected: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut old_views: BTreeMap<ObjectKey, Vec<ServiceView>> = BTreeMap::new();
        for key in dirty {
            let old = self.outputs.remove(&key);
            self.problems.remove(&key);
            if let Some(old) = &old {
                self.claims.remove(&key, &old.claims, &mut touched);
                for (backends, row) in old.entries.values().map(|e| (&e.backends, &e.maglev)) {
                    self.rows.offer(backends, row);
                }
                old_views.insert(key.clone(), old.entries.keys().cloned().collect());
            }
            if let Some(service) = snapshot.service_in(&key.0, &key.1) {
                let slices = self.slices.for_service(&key);
                let output = compile_service(&context, service, &slices, &mut self.rows);
                self.claims.add(&key, &output.claims, &mut touched);
                if !output.diagnostics.is_empty() {
                    self.problems.insert(key.clone());
                }
                self.outputs.insert(key.clone(), output);
            }
            affected.insert(key);
        }
        self.rows.end();
        let mut delta = TablesDelta::default();
        // Frontends: the winner of each touched one.
        for slot in &touched {
            let (hook, addr) = slot;
            let table = match hook {
                Hook::Xdp => &mut self.tables.frontends,
                Hook::Socket => &mut self.tables.socket_frontends,
            };
            let winner =
                self.claims.winner(slot).map(|(service, index)| (service, &self.outputs[service].claims[*index]));
            let before = table.get(addr).cloned();
            if let Some((service, _)) = winner {
                affected.insert(service.clone());
            }
            if let Some(before) = &before {
                affected.insert(service_key((&before.service.port.namespace, &before.service.port.name)));
            }
            let after = winner.map(|(_, claim)| claim.entry.clone());
            if before != after {
                match after {
                    Some(entry) => table.insert(*addr, entry),
                    None => table.remove(addr),
                };
                match hook {
                    Hook::Xdp => delta.frontends.insert(*addr),
                    Hook::Socket => delta.socket_frontends.insert(*addr),
                };
            }
            let conflicts = self.claims.conflicts(slot, &self.outputs);
            if conflicts.is_empty() {
                self.conflicts.remove(slot);
            } else {
                self.conflicts.insert(*slot, conflicts);
            }
        }
        // Views: in the tables while one of their claims holds a frontend.
        for key in affected {
            let mut held = BTreeSet::new();
            if let Some(output) = self.outputs.get(&key) {
                for (index, claim) in output.claims.iter().enumerate() {
                    let winner = self.claims.winner(&(claim.hook, claim.addr));
                    if winner.is_some_and(|(service, at)| *service == key && *at == index) {
                        held.insert(&claim.entry.service);
                    }
                }
                for (view, entry) in &output.entries {
                    let current = self.tables.services.get(view);
                    if !held.contains(view) {
                        if current.is_some() {
                            self.tables.services.remove(view);
                            delta.services.insert(view.clone());
                        }
                    } else if current != Some(entry) {
                        self.tables.services.insert(view.clone(), entry.clone());
                        delta.services.insert(view.clone());
                    }
                }
            }
            let entries = self.outputs.get(&key).map(|o| &o.entries);
            for view in old_views.remove(&key).into_iter().flatten() {
                if !entries.is_some_and(|e| e.contains_key(&view)) && self.tables.services.remove(&view).is_some() {
                    delta.services.insert(view);
                }
            }
        }
        delta
    }

    /// Every problem found: the options', then each Service's own (by
    /// namespace and name), then the frontends lost to another Service;
    /// each once.
    fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        if !maglev::is_prime(self.options.maglev_table_size) {
            let message = format!("{} is not a prime number; no Maglev rows are built", self.options.maglev_table_size);
            out.push(Diagnostic::new("compile options", "maglev_table_size", message));
        }
        out.extend(self.problems.iter().flat_map(|key| self.outputs[key].diagnostics.iter().cloned()));
        out.extend(self.conflicts.values().flatten().cloned());
        let mut seen = std::collections::HashSet::new();
        out.retain(|d| seen.insert(d.clone()));
        out
    }
}

/// A Service's key as its slices name it (an empty namespace is `default`).
fn service_key((namespace, name): (&str, &str)) -> ObjectKey {
    (if namespace.is_empty() { "default" } else { namespace }.to_string(), name.to_string())
}

/// The `addressType: IPv4` EndpointSlices by the Service they belong to
/// (label `kubernetes.io/service-name`, same namespace).
#[derive(Debug, Default)]
struct SliceOwners {
    by_service: HashMap<ObjectKey, BTreeMap<ObjectKey, Arc<EndpointSlice>>>,
    owner: HashMap<ObjectKey, ObjectKey>,
}

impl SliceOwners {
    /// Indexes `slice`; returns its Service.
    fn insert(&mut self, slice: &Arc<EndpointSlice>) -> Option<ObjectKey> {
        if slice.address_type != "IPv4" {
            return None;
        }
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        let (namespace, name) = object_key(&slice.metadata);
        let service = service_key((namespace, service));
        let key = (namespace.to_string(), name.to_string());
        self.by_service.entry(service.clone()).or_default().insert(key.clone(), slice.clone());
        self.owner.insert(key, service.clone());
        Some(service)
    }

    /// Forgets the slice `key`; returns the Service it belonged to.
    fn remove(&mut self, key: &ObjectKey) -> Option<ObjectKey> {
        let service = self.owner.remove(key)?;
        if let Some(slices) = self.by_service.get_mut(&service) {
            slices.remove(key);
            if slices.is_empty() {
                self.by_service.remove(&service);
            }
        }
        Some(service)
    }

    /// The slices of `service`, by (namespace, name).
    fn for_service(&self, service: &ObjectKey) -> Vec<&EndpointSlice> {
        self.by_service.get(service).map(|s| s.values().map(|s| &**s).collect()).unwrap_or_default()
    }
}
