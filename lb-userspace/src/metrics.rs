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
mod process;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    reload_successful: Family<ControllerLabels, Gauge>,
    reload_timestamp: Family<ControllerLabels, Gauge<f64, AtomicU64>>,
    ssl_expire: Family<CertificateLabels, Gauge>,
    controller: ControllerLabels,
    /// ingress-nginx's request families, which the proxy updates.
    requests: Arc<RequestMetrics>,
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
            reload_successful,
            reload_timestamp,
            ssl_expire,
            controller,
            requests,
        }
    }

    /// A sync of the data path's maps that took `took` succeeded.
    pub fn synced(&self, took: Duration) {
        self.sync_duration.observe(took.as_secs_f64());
        self.sync_last.set(unix_now());
    }

    /// The proxy's route table was replaced. A swap cannot fail (what
    /// does not compile is left out and diagnosed), so a reload is always
    /// successful.
    pub fn reloaded(&self) {
        self.reload_successful.get_or_create(&self.controller).set(1);
        self.reload_timestamp.get_or_create(&self.controller).set(unix_now());
    }

    /// The hosts served with a certificate are now `certificates` (hosts
    /// no longer served with one leave the family).
    pub fn certificates(&self, certificates: &[HostCertificate]) {
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

    /// The families, encoded as `format` asks.
    pub fn encode(&self, format: Format) -> String {
        let mut out = encode(&self.registry, format);
        match format {
            Format::Text => self.requests.encode(&mut out, false),
            Format::OpenMetrics => {
                let eof = out.strip_suffix("# EOF\n").map(str::len).unwrap_or(out.len());
                out.truncate(eof);
                self.requests.encode(&mut out, true);
                out.push_str("# EOF\n");
            }
        }
        out
    }
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
        assert!(metrics.encode(Format::Text).lines().any(|l| l == line), "{}", metrics.encode(Format::Text));
        metrics.certificates(&[]);
        assert!(!metrics.encode(Format::Text).contains("host=\"a.com\""));
    }

    #[test]
    fn a_reload_sets_success_and_its_time_a_sync_its_histogram() {
        let metrics = metrics();
        metrics.reloaded();
        metrics.synced(Duration::from_millis(3));
        let text = metrics.encode(Format::Text);
        let labels = "controller_namespace=\"lb-system\",controller_class=\"lb.dev/ingress-controller\",\
                      controller_pod=\"lb-abcde\"";
        assert!(text.contains(&format!("nginx_ingress_controller_config_last_reload_successful{{{labels}}} 1\n")));
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.002\"} 0\n"), "{text}");
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1\n"), "{text}");
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 1\n"), "{text}");
    }
}
