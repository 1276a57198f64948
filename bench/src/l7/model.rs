//! The Ingress set every subject serves, as typed values: hosts, their
//! paths (Exact, Prefix, regex under `use-regex`), the Services with their
//! endpoints, and the certificates. lb gets it as Kubernetes YAML, nginx and
//! HAProxy as the configuration their ingress controllers would generate;
//! each renderer builds its text from these values only.

use std::net::Ipv4Addr;

use anyhow::Result;
use lb_testbed::l7::{CertPair, TestCa};

/// Port the echo backends listen on (the Services' target port).
pub const BACKEND_PORT: u16 = 8080;
/// The Services' port.
pub const SERVICE_PORT: u16 = 80;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    Exact,
    Prefix,
    /// A regex (`use-regex`), anchored at the start, case-insensitive.
    Regex,
}

#[derive(Clone, Debug)]
pub struct PathRule {
    pub path: String,
    pub kind: PathKind,
    /// Index into [`IngressSet::services`].
    pub service: usize,
}

/// One host: one Ingress of its own (`ing-<index>`).
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    /// Index into [`IngressSet::certs`] when the host has `spec.tls`.
    pub cert: Option<usize>,
    pub paths: Vec<PathRule>,
}

impl Host {
    /// Whether the host's Ingress says `use-regex` (then ingress-nginx
    /// makes every non-Exact path of the host a regex location).
    pub fn regex(&self) -> bool {
        self.paths.iter().any(|p| p.kind == PathKind::Regex)
    }
}

#[derive(Clone, Debug)]
pub struct Svc {
    pub name: String,
    pub endpoints: Vec<Ipv4Addr>,
}

/// A certificate and the host names it was issued for.
#[derive(Clone, Debug)]
pub struct Cert {
    /// File-name and Secret-name safe.
    pub name: String,
    pub pair: CertPair,
}

/// What the load generators request: one host, several paths.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub paths: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct IngressSet {
    /// `few` or `N hosts`.
    pub label: String,
    pub hosts: Vec<Host>,
    pub services: Vec<Svc>,
    pub certs: Vec<Cert>,
    /// Plaintext requests.
    pub plain: Target,
    /// TLS requests (a host with a certificate).
    pub tls: Target,
    /// The host whose paths the reload test changes.
    pub churn_host: usize,
}

/// Services spread over the pods: service `i` gets pods `i` and `i + 1`.
fn services(names: impl Iterator<Item = String>, pods: &[Ipv4Addr]) -> Vec<Svc> {
    names
        .enumerate()
        .map(|(i, name)| {
            let mut endpoints = vec![pods[i % pods.len()]];
            if pods.len() > 1 {
                endpoints.push(pods[(i + 1) % pods.len()]);
            }
            Svc { name, endpoints }
        })
        .collect()
}

fn prefix(path: &str, service: usize) -> PathRule {
    PathRule { path: path.into(), kind: PathKind::Prefix, service }
}

impl IngressSet {
    /// The seeds' shape: `a.com` (`/a`, `/b`), `b.com` (`/`), and a TLS
    /// host `https-example.foo.com` (`/`).
    pub fn few(pods: &[Ipv4Addr], ca: &TestCa) -> Result<Self> {
        let services = services(["svc-a", "svc-b"].into_iter().map(String::from), pods);
        let cert = Cert { name: "https-example".into(), pair: ca.issue(&["https-example.foo.com"])? };
        let hosts = vec![
            Host { name: "a.com".into(), cert: None, paths: vec![prefix("/a", 0), prefix("/b", 1)] },
            Host { name: "b.com".into(), cert: None, paths: vec![prefix("/", 1)] },
            Host { name: "https-example.foo.com".into(), cert: Some(0), paths: vec![prefix("/", 0)] },
        ];
        Ok(Self {
            label: "few".into(),
            hosts,
            services,
            certs: vec![cert],
            plain: Target { host: "a.com".into(), paths: vec!["/a/x".into(), "/b/y".into()] },
            tls: Target { host: "https-example.foo.com".into(), paths: vec!["/x".into(), "/y/z".into()] },
            churn_host: 0,
        })
    }

    /// `n` hosts `hNNNNN.bench.test`, each its own Ingress with `use-regex`
    /// and its own Service: Prefix `/app`, Prefix `/static`, Exact
    /// `/healthz`, regex `/api/v[0-9]+/items`. Every `n/16`-th host has TLS
    /// (one wildcard certificate); the requests go to the middle one of
    /// those, so list scans (HAProxy's regex map) pay an average cost.
    pub fn many(n: usize, pods: &[Ipv4Addr], ca: &TestCa) -> Result<Self> {
        let name = |i: usize| format!("h{i:05}.bench.test");
        let services = services((0..n).map(|i| format!("svc-{i:05}")), pods);
        let cert = Cert { name: "bench-wildcard".into(), pair: ca.issue(&["*.bench.test"])? };
        let stride = (n / 16).max(1);
        let hosts = (0..n)
            .map(|i| Host {
                name: name(i),
                cert: (i % stride == 0).then_some(0),
                paths: vec![
                    prefix("/app", i),
                    prefix("/static", i),
                    PathRule { path: "/healthz".into(), kind: PathKind::Exact, service: i },
                    PathRule { path: "/api/v[0-9]+/items".into(), kind: PathKind::Regex, service: i },
                ],
            })
            .collect();
        let tls_hosts = n.div_ceil(stride);
        let target = name(stride * (tls_hosts / 2));
        let paths = ["/app/page", "/static/app.css", "/api/v1/items/42", "/healthz"];
        let target = Target { host: target, paths: paths.iter().map(|p| p.to_string()).collect() };
        Ok(Self {
            label: format!("{n} hosts"),
            hosts,
            services,
            certs: vec![cert],
            plain: target.clone(),
            tls: target,
            churn_host: n / 3,
        })
    }

    /// Version `k` of the reload test: the churn host gains Prefix
    /// `/churn-k` (and loses the previous one).
    pub fn with_churn(&self, k: usize) -> Self {
        let mut set = self.clone();
        let host = &mut set.hosts[self.churn_host];
        let service = host.paths[0].service;
        host.paths.push(prefix(&churn_path(k), service));
        set
    }

    pub fn target(&self, tls: bool) -> &Target {
        if tls { &self.tls } else { &self.plain }
    }
}

/// The path version `k` of the reload test adds.
pub fn churn_path(k: usize) -> String {
    format!("/churn-{k}")
}

/// `a.b-c` → `a-b-c`: host names as parts of object and file names.
pub fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_hosts_have_tls_on_the_target() {
        let ca = TestCa::new().unwrap();
        let pods = [Ipv4Addr::new(127, 9, 9, 2), Ipv4Addr::new(127, 9, 9, 3)];
        for n in [3, 20, 1000] {
            let set = IngressSet::many(n, &pods, &ca).unwrap();
            let t = set.hosts.iter().find(|h| h.name == set.tls.host).unwrap();
            assert!(t.cert.is_some() && t.regex(), "{n}");
            assert_eq!(set.services.len(), n);
        }
        let set = IngressSet::few(&pods, &ca).unwrap().with_churn(4);
        assert_eq!(set.hosts[0].paths.last().unwrap().path, "/churn-4");
        assert_eq!(slug("https-example.foo.com"), "https-example-foo-com");
    }
}
