//! `lb inspect`: what a running agent serves, read through its admin
//! listener. The agent side ([`Inspector`]) answers `/inspect/*` in JSON
//! ([`model`]); the CLI ([`client`]) is a thin client that prints tables
//! or the JSON as it came.
//!
//! The data path's tables belong to the task that applies snapshots: the
//! inspector asks it ([`Query`]) for the names, ids, frontends and backends
//! (built when asked, never per change) and reads the counters and the
//! conntrack table itself, from its own handles on the pinned maps.

pub mod client;
pub mod model;
mod routes;
pub mod services;

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use lb_common::{FLOW_SNAT, PROTO_TCP};
use lb_proxy::RouteHandle;
use tokio::sync::{mpsc, oneshot, watch};

use crate::dataplane::StatsReader;
use crate::diagnostics::Diagnostic;
use crate::metrics::Metrics;
use crate::metrics::data_path::DataPathReading;
use crate::snapshot::Snapshot;
use model::{
    ConntrackReport, DiagnosticReport, DiagnosticsReport, FlowReport, RoutesReport, ServiceReport, ServicesReport,
};
use services::ipv4;

/// The data path's answer to [`Query::Services`].
pub struct DataPathView {
    /// Counters left at 0.
    pub services: Vec<ServiceReport>,
    pub stats: Arc<StatsReader>,
    pub maglev_table_size: u32,
}

/// A question for the task that owns the data path.
pub enum Query {
    /// `None`: no data path here (`--no-xdp`, standing by).
    Services(oneshot::Sender<Option<DataPathView>>),
}

/// The agent's side of `lb inspect` (and of the data-path families of
/// `/metrics`).
#[derive(Clone)]
pub struct Inspector {
    queries: mpsc::Sender<Query>,
    routes: RouteHandle,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    diagnostics: watch::Receiver<Arc<Vec<Diagnostic>>>,
    metrics: Arc<Metrics>,
}

impl Inspector {
    pub fn new(
        queries: mpsc::Sender<Query>,
        routes: RouteHandle,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        diagnostics: watch::Receiver<Arc<Vec<Diagnostic>>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { queries, routes, snapshots, diagnostics, metrics }
    }

    /// The data path's service views, without counters.
    pub async fn data_path(&self) -> Result<Option<DataPathView>> {
        let (reply, answer) = oneshot::channel();
        self.queries.send(Query::Services(reply)).await.map_err(|_| anyhow!("the agent is stopping"))?;
        answer.await.context("the agent is stopping")
    }

    /// `/inspect/services`, with each view's counters.
    pub async fn services(&self) -> Result<ServicesReport> {
        let Some(view) = self.data_path().await? else { return Ok(ServicesReport::default()) };
        tokio::task::spawn_blocking(move || {
            let services = with_traffic(view.services, &view.stats)?;
            Ok(ServicesReport { data_path: true, services })
        })
        .await?
    }

    /// `/inspect/conntrack`: up to `limit` live flows, of the Service
    /// `namespace/name` only when given.
    pub async fn conntrack(&self, service: Option<String>, limit: usize) -> Result<ConntrackReport> {
        let Some(view) = self.data_path().await? else { return Ok(ConntrackReport::default()) };
        tokio::task::spawn_blocking(move || {
            let names: std::collections::HashMap<u32, &ServiceReport> =
                view.services.iter().filter_map(|s| Some((s.id?, s))).collect();
            let wanted = |id: u32| {
                names
                    .get(&id)
                    .is_some_and(|s| service.as_deref().is_none_or(|w| w == format!("{}/{}", s.namespace, s.name)))
            };
            let mut flows = view.stats.flows(limit + 1, wanted);
            let truncated = flows.len() > limit;
            flows.truncate(limit);
            let fill = view.stats.conntrack_fill();
            let now = monotonic_ns();
            let flows = flows
                .iter()
                .map(|(key, flow)| {
                    let s = names.get(&flow.service_id);
                    let service = s.map(|s| service_port_name(s));
                    let protocol = if key.protocol == PROTO_TCP { "TCP" } else { "UDP" };
                    FlowReport {
                        service: service.unwrap_or_default(),
                        protocol: protocol.into(),
                        client: format!("{}:{}", ipv4(key.src_addr), u16::from_be(key.src_port)),
                        frontend: format!("{}:{}", ipv4(key.dst_addr), u16::from_be(key.dst_port)),
                        backend: format!("{}:{}", ipv4(flow.new_dst_addr), u16::from_be(flow.new_dst_port)),
                        source: format!("{}:{}", ipv4(flow.new_src_addr), u16::from_be(flow.new_src_port)),
                        masquerade: flow.flags & FLOW_SNAT != 0,
                        idle_seconds: now.saturating_sub(flow.last_seen_ns) as f64 / 1e9,
                    }
                })
                .collect();
            Ok(ConntrackReport { entries: fill.entries, capacity: fill.capacity, flows, truncated })
        })
        .await?
    }

    /// `/metrics`: every family, the data path's read now.
    pub async fn metrics_text(&self, format: crate::metrics::Format) -> Result<String> {
        let config_hash = self.config_hash();
        let Some(view) = self.data_path().await? else { return Ok(self.metrics.encode(format, config_hash, None)) };
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let reading = DataPathReading {
                services: with_traffic(view.services, &view.stats)?,
                counters: view.stats.counters()?,
                conntrack: view.stats.conntrack_fill(),
                maglev_table_size: view.maglev_table_size,
            };
            Ok(metrics.encode(format, config_hash, Some(&reading)))
        })
        .await?
    }

    /// A hash of the routes in use (ingress-nginx's `config_hash`): equal
    /// on agents that serve the same routes, changed by any change to them.
    fn config_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let routes = serde_json::to_string(&self.routes()).unwrap_or_default();
        let mut hasher = std::hash::DefaultHasher::new();
        routes.hash(&mut hasher);
        hasher.finish()
    }

    /// `/inspect/routes`.
    pub fn routes(&self) -> RoutesReport {
        let snapshot = self.snapshots.borrow().clone();
        let diagnostics = self.diagnostics.borrow().clone();
        routes::routes_report(&self.routes.current(), &snapshot, &diagnostics, &self.metrics.served_certificates())
    }

    /// `/inspect/diagnostics`.
    pub fn diagnostics(&self) -> DiagnosticsReport {
        let diagnostics = self.diagnostics.borrow().clone();
        let diagnostics = diagnostics
            .iter()
            .map(|d| DiagnosticReport { object: d.object.clone(), field: d.field.clone(), message: d.message.clone() })
            .collect();
        DiagnosticsReport { diagnostics }
    }
}

/// `namespace/name:port/protocol` (`namespace/name/protocol` for an
/// unnamed port).
fn service_port_name(s: &ServiceReport) -> String {
    match s.port.as_str() {
        "" => format!("{}/{}/{}", s.namespace, s.name, s.protocol),
        port => format!("{}/{}:{port}/{}", s.namespace, s.name, s.protocol),
    }
}

/// `services` with their counters read.
fn with_traffic(mut services: Vec<ServiceReport>, stats: &StatsReader) -> Result<Vec<ServiceReport>> {
    let traffic = stats.traffic(services.iter().filter_map(|s| s.id))?;
    for service in &mut services {
        if let Some(t) = service.id.and_then(|id| traffic.get(&id)) {
            (service.packets, service.bytes) = (t.packets, t.bytes);
        }
    }
    Ok(services)
}

/// `CLOCK_MONOTONIC` in ns: the clock of `bpf_ktime_get_ns`, which stamps
/// flows.
fn monotonic_ns() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}
