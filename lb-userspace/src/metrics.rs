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

pub mod data_path;
mod exposition;
mod ingress_nginx;
mod process;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use lb_proxy::metrics::RequestMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use exposition::{Format, encode};

use crate::compile::l7::HostCertificate;

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
    network_programming: Histogram,
    reload_successful: Family<ControllerLabels, Gauge>,
    reload_timestamp: Family<ControllerLabels, Gauge<f64, AtomicU64>>,
    ssl_expire: Family<CertificateLabels, Gauge>,
    controller: ControllerLabels,
    /// ingress-nginx's request families, which the proxy updates.
    requests: Arc<RequestMetrics>,
    /// The hosts served with a certificate, as last reported.
    served: ArcSwap<Vec<HostCertificate>>,
    /// Route tables swapped in (ingress-nginx's reloads).
    reloads: AtomicU64,
}

/// The labels of ingress-nginx's `ssl_expire_time_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    /// The Secret's namespace.
    namespace: String,
    /// The controller class.
    class: String,
    host: String,
    secret_name: String,
    identifier: String,
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
        let network_programming = Histogram::new(network_programming_buckets());
        registry.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Network Programming Latency in seconds: from an EndpointSlice change \
             (its endpoints.kubernetes.io/last-change-trigger-time) to the data path serving it",
            network_programming.clone(),
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
        let ssl_expire = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "nginx_ingress_controller_ssl_expire_time_seconds",
            "Number of seconds since 1970 to the SSL Certificate expire, per host served with a certificate. \
             Expiring within 10 days: nginx_ingress_controller_ssl_expire_time_seconds < (time() + (10 * 24 * 3600))",
            ssl_expire.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("lb_build_info", "lb's version (the value is always 1)", build);
        registry.register_collector(Box::new(process::ProcessCollector));
        let requests = Arc::new(RequestMetrics::new(
            &controller.controller_class,
            &controller.controller_namespace,
            &controller.controller_pod,
        ));
        Self {
            registry,
            sync_duration,
            sync_last,
            network_programming,
            reload_successful,
            reload_timestamp,
            ssl_expire,
            controller,
            requests,
            served: ArcSwap::default(),
            reloads: AtomicU64::new(0),
        }
    }

    /// A sync of the data path's maps that took `took` succeeded.
    pub fn synced(&self, took: Duration) {
        self.sync_duration.observe(took.as_secs_f64());
        self.sync_last.set(unix_now());
    }

    /// A change triggered at `trigger` (an EndpointSlice's
    /// `endpoints.kubernetes.io/last-change-trigger-time`) is now served.
    pub fn programmed(&self, trigger: SystemTime) {
        let took = SystemTime::now().duration_since(trigger).unwrap_or_default();
        self.network_programming.observe(took.as_secs_f64());
    }

    /// The proxy's route table was replaced. A swap cannot fail (what
    /// does not compile is left out and diagnosed), so a reload is always
    /// successful.
    pub fn reloaded(&self) {
        self.reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.reload_successful.get_or_create(&self.controller).set(1);
        self.reload_timestamp.get_or_create(&self.controller).set(unix_now());
    }

    /// The hosts served with a certificate are now `certificates` (hosts
    /// no longer served with one leave the family).
    pub fn certificates(&self, certificates: &[HostCertificate]) {
        self.served.store(Arc::new(certificates.to_vec()));
        self.ssl_expire.clear();
        for certificate in certificates {
            let labels = CertificateLabels {
                namespace: certificate.secret.namespace.clone(),
                class: self.controller.controller_class.clone(),
                host: certificate.host.clone(),
                secret_name: certificate.secret.name.clone(),
                identifier: certificate.identifier.clone(),
            };
            self.ssl_expire.get_or_create(&labels).set(certificate.expires);
        }
    }

    /// The request families, for the proxy to count in.
    pub fn requests(&self) -> &Arc<RequestMetrics> {
        &self.requests
    }

    /// The hosts served with a certificate (for `lb inspect routes`).
    pub fn served_certificates(&self) -> Arc<Vec<HostCertificate>> {
        self.served.load_full()
    }

    /// The families, encoded as `format` asks, with the data path's when
    /// it was read; `config_hash` identifies the route table in use.
    pub fn encode(&self, format: Format, config_hash: u64, data_path: Option<&data_path::DataPathReading>) -> String {
        let mut out = encode(&self.registry, format);
        let open_metrics = format == Format::OpenMetrics;
        if open_metrics {
            let eof = out.strip_suffix("# EOF\n").map(str::len).unwrap_or(out.len());
            out.truncate(eof);
        }
        self.requests.encode(&mut out, open_metrics);
        let reloads = self.reloads.load(std::sync::atomic::Ordering::Relaxed);
        ingress_nginx::encode(&mut out, &self.controller, config_hash, reloads, open_metrics);
        if let Some(reading) = data_path {
            data_path::encode(&mut out, reading, open_metrics);
        }
        if open_metrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

/// kube-proxy's: 0.25 s and 0.5 s, each second to 59 s, every 5 s to
/// 115 s, every 30 s to 300 s.
fn network_programming_buckets() -> Vec<f64> {
    let mut buckets = vec![0.25, 0.5];
    buckets.extend((1..=59).map(f64::from));
    buckets.extend((0..12).map(|i| 60.0 + 5.0 * f64::from(i)));
    buckets.extend((0..7).map(|i| 120.0 + 30.0 * f64::from(i)));
    buckets
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_routes::ObjectName;

    fn metrics() -> Metrics {
        Metrics::new(ControllerLabels {
            controller_namespace: "lb-system".into(),
            controller_class: "lb.dev/ingress-controller".into(),
            controller_pod: "lb-abcde".into(),
        })
    }

    #[test]
    fn certificates_are_reported_per_host_until_they_are_no_longer_served() {
        let metrics = metrics();
        let secret = ObjectName { namespace: "shop".into(), name: "tls".into() };
        let served = HostCertificate { host: "a.com".into(), secret, expires: 2_560_000_000, identifier: "-1".into() };
        metrics.certificates(std::slice::from_ref(&served));
        let line = "nginx_ingress_controller_ssl_expire_time_seconds{namespace=\"shop\",\
                    class=\"lb.dev/ingress-controller\",host=\"a.com\",secret_name=\"tls\",identifier=\"-1\"} 2560000000";
        assert!(
            metrics.encode(Format::Text, 0, None).lines().any(|l| l == line),
            "{}",
            metrics.encode(Format::Text, 0, None)
        );
        metrics.certificates(&[]);
        assert!(!metrics.encode(Format::Text, 0, None).contains("host=\"a.com\""));
    }

    #[test]
    fn a_reload_sets_success_and_its_time_a_sync_its_histogram() {
        let metrics = metrics();
        metrics.reloaded();
        metrics.synced(Duration::from_millis(3));
        let text = metrics.encode(Format::Text, 0, None);
        let labels = "controller_namespace=\"lb-system\",controller_class=\"lb.dev/ingress-controller\",\
                      controller_pod=\"lb-abcde\"";
        assert!(text.contains(&format!("nginx_ingress_controller_config_last_reload_successful{{{labels}}} 1\n")));
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.002\"} 0\n"), "{text}");
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1\n"), "{text}");
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 1\n"), "{text}");
        metrics.programmed(SystemTime::now() - Duration::from_millis(1500));
        let text = metrics.encode(Format::Text, 0, None);
        assert!(text.contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"1.0\"} 0\n"), "{text}");
        assert!(text.contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"2.0\"} 1\n"), "{text}");
        assert_eq!(network_programming_buckets().len(), 2 + 59 + 12 + 7);
    }
}
