//! `GET /metrics` on the admin listener: the agent's Prometheus families,
//! under the names dashboards already query — kube-proxy's for the data
//! path's syncs, ingress-nginx's for the proxy's configuration — and lb's
//! own (`lb_*`).
//!
//! The families live in one [`Metrics`] shared by the tasks that update
//! them (atomics: an update never waits for a scrape). A scrape encodes
//! them with `prometheus-client` in OpenMetrics when the scraper asks for
//! it (`Accept: application/openmetrics-text`), else in the Prometheus
//! text format 0.0.4 (see [`exposition`]).

mod exposition;

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use exposition::{Format, encode};

/// The labels ingress-nginx puts on its controller-wide families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller_namespace: String,
    pub controller_class: String,
    pub controller_pod: String,
}

/// Every family the agent exports.
pub struct Metrics {
    registry: Registry,
    sync_duration: Histogram,
    sync_last: Gauge<f64, AtomicU64>,
    reload_successful: Family<ControllerLabels, Gauge>,
    reload_timestamp: Family<ControllerLabels, Gauge<f64, AtomicU64>>,
    controller: ControllerLabels,
}

impl Metrics {
    /// The families, with `controller` on ingress-nginx's.
    pub fn new(controller: ControllerLabels) -> Self {
        let mut registry = Registry::default();
        // kube-proxy's buckets: 1 ms doubling 15 times.
        let sync_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds: compiling a snapshot and writing the data path's maps",
            sync_duration.clone(),
        );
        let sync_last = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time the data path's maps were successfully written",
            sync_last.clone(),
        );
        let reload_successful = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "nginx_ingress_controller_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            reload_successful.clone(),
        );
        let reload_timestamp = Family::<ControllerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
            "Timestamp of the last successful configuration reload",
            reload_timestamp.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("lb_build_info", "lb's version (the value is always 1)", build);
        Self { registry, sync_duration, sync_last, reload_successful, reload_timestamp, controller }
    }

    /// A sync of the data path's maps that took `took` succeeded.
    pub fn synced(&self, took: Duration) {
        self.sync_duration.observe(took.as_secs_f64());
        self.sync_last.set(unix_now());
    }

    /// The proxy's route table was replaced (`successful`) or a reload
    /// failed.
    pub fn reloaded(&self, successful: bool) {
        self.reload_successful.get_or_create(&self.controller).set(i64::from(successful));
        if successful {
            self.reload_timestamp.get_or_create(&self.controller).set(unix_now());
        }
    }

    /// The families, encoded as `format` asks.
    pub fn encode(&self, format: Format) -> String {
        encode(&self.registry, format)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}
