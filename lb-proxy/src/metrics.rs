//! ingress-nginx's request families, under its names, labels and buckets:
//! `nginx_ingress_controller_requests` (a counter, named without `_total`
//! as ingress-nginx names it), `…_request_duration_seconds`,
//! `…_response_duration_seconds`, `…_request_size` and `…_response_size`
//! (histograms).
//!
//! A request is counted when its response is done (sent, or dropped when
//! the client left), in the series of its route's interned
//! [`RequestLabels`], its status and its method: one hash of a precomputed
//! value and a few atomic adds, nothing formatted. What a series counts:
//! - `request_duration_seconds`: from the request head to the end of the
//!   response body;
//! - `response_duration_seconds`: from sending the request upstream to the
//!   end of the response body (requests that went upstream only);
//! - `request_size`: the request head as HTTP/1.1 writes it, plus the
//!   declared body length (a chunked body counts its head only);
//! - `response_size`: the response head as HTTP/1.1 writes it, plus the
//!   body bytes sent.
//!
//! Methods outside the standard ones are counted as `OTHER`, so a client
//! cannot add series at will; every other label comes from the Ingresses.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method};
use lb_routes::{RequestLabels, RouteTable};

use histogram::Histogram;
use method::MethodLabel;

/// ingress-nginx's `--time-buckets` default (Prometheus's default buckets).
pub const TIME_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// ingress-nginx's `--length-buckets` default (10 to 100 by 10).
pub const LENGTH_BUCKETS: [f64; 10] = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0];

pub(crate) const PREFIX: &str = "nginx_ingress_controller_";

/// The request families of one proxy.
#[derive(Debug)]
pub struct RequestMetrics {
    /// `controller_class`, `controller_namespace`, `controller_pod`.
    controller: [(&'static str, String); 3],
    series: RwLock<HashMap<SeriesKey, Arc<Series>>>,
    /// Client connections open now, and accepted since the start.
    active: AtomicU64,
    accepted: AtomicU64,
}

/// An open client connection, counted until dropped.
pub(crate) struct OpenConnection(Arc<RequestMetrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a request is counted: its route's labels, status and method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    labels: Arc<RequestLabels>,
    status: u16,
    method: MethodLabel,
}

/// One series of each family.
#[derive(Debug, Default)]
struct Series {
    requests: AtomicU64,
    request_duration: Histogram<11>,
    response_duration: Histogram<11>,
    request_size: Histogram<10>,
    response_size: Histogram<10>,
}

/// A request being answered, counted when its response is done
/// ([`Observation::finish`]).
#[derive(Debug)]
pub(crate) struct Observation {
    series: Arc<Series>,
    start: Instant,
    /// When the request was sent upstream, if it was.
    upstream_start: Option<Instant>,
    request_bytes: u64,
    /// The response head's size.
    head_bytes: u64,
}

impl Observation {
    /// Counts the request: its response's body was `body_bytes` long.
    pub(crate) fn finish(self, body_bytes: u64) {
        let Observation { series, start, upstream_start, request_bytes, head_bytes } = self;
        let now = Instant::now();
        series.requests.fetch_add(1, Ordering::Relaxed);
        series.request_duration.observe(&TIME_BUCKETS, seconds(now - start));
        if let Some(upstream_start) = upstream_start {
            series.response_duration.observe(&TIME_BUCKETS, seconds(now.saturating_duration_since(upstream_start)));
        }
        series.request_size.observe(&LENGTH_BUCKETS, request_bytes as f64);
        series.response_size.observe(&LENGTH_BUCKETS, (head_bytes + body_bytes) as f64);
    }
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// What is known of a request when its response head is ready.
pub(crate) struct Answered<'a> {
    pub labels: Arc<RequestLabels>,
    pub method: &'a Method,
    pub status: u16,
    pub start: Instant,
    pub upstream_start: Option<Instant>,
    pub request_bytes: u64,
    pub response_headers: &'a HeaderMap,
}

impl RequestMetrics {
    /// Empty families, with ingress-nginx's controller labels.
    pub fn new(controller_class: &str, controller_namespace: &str, controller_pod: &str) -> Self {
        Self {
            controller: [
                ("controller_class", controller_class.into()),
                ("controller_namespace", controller_namespace.into()),
                ("controller_pod", controller_pod.into()),
            ],
            series: RwLock::default(),
            active: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        }
    }

    /// A client connection was accepted; it counts as active until the
    /// guard is dropped.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(self))
    }

    /// The request's observation, to finish when its response is done.
    pub(crate) fn observe(&self, answered: &Answered<'_>) -> Observation {
        let key = SeriesKey {
            labels: Arc::clone(&answered.labels),
            status: answered.status,
            method: MethodLabel::of(answered.method),
        };
        let found = self.series.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&key).cloned();
        let series = match found {
            Some(series) => series,
            None => {
                let mut all = self.series.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                Arc::clone(all.entry(key).or_default())
            }
        };
        Observation {
            series,
            start: answered.start,
            upstream_start: answered.upstream_start,
            request_bytes: answered.request_bytes,
            head_bytes: response_head_bytes(answered.status, answered.response_headers),
        }
    }

    /// Drops the series of routes `table` no longer has (ingress-nginx
    /// removes the metrics of deleted Ingresses too).
    pub fn retain(&self, table: &RouteTable) {
        let nowhere = RequestLabels::nowhere();
        let mut kept: HashSet<&RequestLabels> = HashSet::new();
        kept.insert(&nowhere);
        for vhost in table.virtual_hosts() {
            kept.insert(&vhost.labels);
            for route in vhost.routes() {
                kept.insert(&route.labels);
                kept.extend(route.canary_labels.as_deref());
            }
        }
        let mut all = self.series.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        all.retain(|key, _| kept.contains(&*key.labels));
    }

    /// The families in the Prometheus text format (`open_metrics: false`)
    /// or as OpenMetrics text without its `# EOF`. OpenMetrics names a
    /// counter's samples `_total`: there `requests` is typed `unknown`,
    /// which keeps ingress-nginx's name.
    pub fn encode(&self, out: &mut String, open_metrics: bool) {
        let all = self.series.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut series: Vec<(&SeriesKey, &Arc<Series>)> = all.iter().collect();
        series.sort_by(|(a, _), (b, _)| {
            (label_values(&a.labels), a.status, a.method).cmp(&(label_values(&b.labels), b.status, b.method))
        });
        let labels: Vec<String> = series.iter().map(|(key, _)| self.label_text(key)).collect();
        let requests_type = if open_metrics { "unknown" } else { "counter" };
        header(out, "requests", "The total number of client requests", requests_type);
        for ((_, s), labels) in series.iter().zip(&labels) {
            let _ = writeln!(out, "{PREFIX}requests{{{labels}}} {}", s.requests.load(Ordering::Relaxed));
        }
        type Pick = fn(&Series) -> &Histogram<11>;
        let times: [(&str, &str, Pick); 2] = [
            ("request_duration_seconds", "The request processing time in seconds", |s| &s.request_duration),
            ("response_duration_seconds", "The time spent on receiving the response from the upstream server", |s| {
                &s.response_duration
            }),
        ];
        for (name, help, pick) in times {
            header(out, name, help, "histogram");
            for ((_, s), labels) in series.iter().zip(&labels) {
                pick(s).encode(out, name, labels, &TIME_BUCKETS);
            }
        }
        type PickSize = fn(&Series) -> &Histogram<10>;
        let sizes: [(&str, &str, PickSize); 2] = [
            ("request_size", "The request length (including request line, header, and request body)", |s| {
                &s.request_size
            }),
            ("response_size", "The response length (including request line, header, and request body)", |s| {
                &s.response_size
            }),
        ];
        for (name, help, pick) in sizes {
            header(out, name, help, "histogram");
            for ((_, s), labels) in series.iter().zip(&labels) {
                pick(s).encode(out, name, labels, &LENGTH_BUCKETS);
            }
        }
        self.encode_connections(out, open_metrics);
    }

    /// ingress-nginx's nginx connection families: client connections open
    /// now (`state="active"`), and accepted and handled since the start
    /// (the same count: lb refuses none it accepted).
    fn encode_connections(&self, out: &mut String, open_metrics: bool) {
        let controller = label_pairs(&self.controller.each_ref().map(|(name, value)| (*name, value.as_str())));
        header(
            out,
            "nginx_process_connections",
            "current number of client connections with state {active, reading, writing, waiting}",
            "gauge",
        );
        let _ = writeln!(
            out,
            "{PREFIX}nginx_process_connections{{{controller},state=\"active\"}} {}",
            self.active.load(Ordering::Relaxed)
        );
        let total_type = if open_metrics { "unknown" } else { "counter" };
        header(
            out,
            "nginx_process_connections_total",
            "total number of connections with state {accepted, handled}",
            total_type,
        );
        let accepted = self.accepted.load(Ordering::Relaxed);
        for state in ["accepted", "handled"] {
            let _ =
                writeln!(out, "{PREFIX}nginx_process_connections_total{{{controller},state=\"{state}\"}} {accepted}");
        }
    }

    /// `name="value",…` in label name order (as ingress-nginx's Go client
    /// writes them).
    fn label_text(&self, key: &SeriesKey) -> String {
        let l = &key.labels;
        let [class, namespace, pod] = &self.controller;
        let status = key.status.to_string();
        let pairs: [(&str, &str); 11] = [
            ("canary", &l.canary),
            (class.0, &class.1),
            (namespace.0, &namespace.1),
            (pod.0, &pod.1),
            ("host", &l.host),
            ("ingress", &l.ingress),
            ("method", key.method.as_str()),
            ("namespace", &l.namespace),
            ("path", &l.path),
            ("service", &l.service),
            ("status", &status),
        ];
        label_pairs(&pairs)
    }
}

fn label_values(labels: &RequestLabels) -> [&str; 6] {
    [&labels.host, &labels.namespace, &labels.ingress, &labels.service, &labels.path, &labels.canary]
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
}

/// `name="value",…`, each value escaped as both text formats escape it
/// (`\`, `"` and newline).
pub fn label_pairs(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"");
        escape_label_value(&mut out, value);
        out.push('"');
    }
    out
}

fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `HTTP/1.1 200 OK\r\n`, each header line and the blank line.
fn response_head_bytes(status: u16, headers: &HeaderMap) -> u64 {
    let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let status_line = "HTTP/1.1 200 \r\n".len() + reason.len();
    let header_lines: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    (status_line + header_lines + 2) as u64
}

/// The request head as HTTP/1.1 writes it (`GET /path HTTP/1.1\r\n`, the
/// header lines, the blank line) plus its declared body length.
pub(crate) fn request_bytes(method: &Method, uri: &http::Uri, headers: &HeaderMap, declared_body: Option<u64>) -> u64 {
    let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    let request_line = method.as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let header_lines: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    (request_line + header_lines + 2) as u64 + declared_body.unwrap_or(0)
}

mod histogram;
mod method;
#[cfg(test)]
mod tests;
