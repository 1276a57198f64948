//! Kubernetes objects as YAML (JSON flow style, which is YAML) and the
//! watched manifests directory, written atomically.
//!
//! ```text
//! let svc = Service::new("web").port("http", 80, 8080).yaml();
//! let eps = EndpointSlice::new("web").port("http", 8080).endpoint(ip, true).yaml();
//! let ing = Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", 80)).yaml();
//! dir.write("web.yaml", &docs(&[svc, eps, ing]))?;
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use super::certs::CertPair;

/// Joins documents into one multi-document YAML file.
pub fn docs(documents: &[String]) -> String {
    documents.join("\n---\n") + "\n"
}

fn to_yaml(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values serialize")
}

fn metadata(name: &str, namespace: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    if let Some(ns) = namespace {
        m.insert("namespace".into(), json!(ns));
    }
    Value::Object(m)
}

/// A `v1` Service.
#[derive(Clone, Debug)]
pub struct Service {
    name: String,
    namespace: Option<String>,
    ports: Vec<Value>,
    external_name: Option<String>,
}

impl Service {
    /// A ClusterIP Service (its endpoints come from [`EndpointSlice`]s).
    pub fn new(name: &str) -> Self {
        Self { name: name.into(), namespace: None, ports: Vec::new(), external_name: None }
    }

    /// An ExternalName Service.
    pub fn external_name(name: &str, external: &str) -> Self {
        Self { external_name: Some(external.into()), ..Self::new(name) }
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// A TCP port `name`/`port` → `target_port`.
    pub fn port(mut self, name: &str, port: u16, target_port: u16) -> Self {
        self.ports.push(json!({"name": name, "port": port, "targetPort": target_port, "protocol": "TCP"}));
        self
    }

    /// A TCP port with a named target port.
    pub fn port_named_target(mut self, name: &str, port: u16, target_port: &str) -> Self {
        self.ports.push(json!({"name": name, "port": port, "targetPort": target_port, "protocol": "TCP"}));
        self
    }

    /// Sets `appProtocol` of the last port (e.g. `kubernetes.io/h2c`).
    pub fn app_protocol(mut self, app_protocol: &str) -> Self {
        if let Some(Value::Object(p)) = self.ports.last_mut() {
            p.insert("appProtocol".into(), json!(app_protocol));
        }
        self
    }

    pub fn value(&self) -> Value {
        let spec = match &self.external_name {
            Some(ext) => json!({"type": "ExternalName", "externalName": ext, "ports": self.ports}),
            None => json!({"type": "ClusterIP", "ports": self.ports}),
        };
        json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata(&self.name, self.namespace.as_deref()), "spec": spec})
    }

    pub fn yaml(&self) -> String {
        to_yaml(&self.value())
    }
}

static SLICE_SEQ: AtomicU32 = AtomicU32::new(0);

/// A `discovery.k8s.io/v1` EndpointSlice of a Service (`addressType: IPv4`).
#[derive(Clone, Debug)]
pub struct EndpointSlice {
    name: String,
    service: String,
    namespace: Option<String>,
    ports: Vec<Value>,
    endpoints: Vec<Value>,
}

impl EndpointSlice {
    /// A slice for Service `service`, named `<service>-<n>`.
    pub fn new(service: &str) -> Self {
        let n = SLICE_SEQ.fetch_add(1, Ordering::Relaxed);
        Self::named(&format!("{service}-{n}"), service)
    }

    pub fn named(name: &str, service: &str) -> Self {
        Self { name: name.into(), service: service.into(), namespace: None, ports: Vec::new(), endpoints: Vec::new() }
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// A TCP port `name` = `port` (the target port).
    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.ports.push(json!({"name": name, "port": port, "protocol": "TCP"}));
        self
    }

    /// An endpoint with one address and condition `ready`.
    pub fn endpoint(mut self, ip: Ipv4Addr, ready: bool) -> Self {
        self.endpoints.push(json!({"addresses": [ip.to_string()], "conditions": {"ready": ready}}));
        self
    }

    pub fn value(&self) -> Value {
        let mut meta = metadata(&self.name, self.namespace.as_deref());
        meta["labels"] = json!({"kubernetes.io/service-name": self.service});
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": meta,
            "addressType": "IPv4",
            "endpoints": self.endpoints,
            "ports": self.ports,
        })
    }

    pub fn yaml(&self) -> String {
        to_yaml(&self.value())
    }
}

/// A backend port: number or name.
#[derive(Clone, Debug)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl From<u16> for PortRef {
    fn from(n: u16) -> Self {
        PortRef::Number(n)
    }
}

impl From<&str> for PortRef {
    fn from(n: &str) -> Self {
        PortRef::Name(n.to_string())
    }
}

fn backend(service: &str, port: PortRef) -> Value {
    let port = match port {
        PortRef::Number(n) => json!({"number": n}),
        PortRef::Name(n) => json!({"name": n}),
    };
    json!({"service": {"name": service, "port": port}})
}

/// One rule of an Ingress: optional host and its paths.
#[derive(Clone, Debug)]
pub struct Rule {
    host: Option<String>,
    paths: Vec<Value>,
}

impl Rule {
    /// A rule for `host` (exact or `*.wildcard`).
    pub fn host(host: &str) -> Self {
        Self { host: Some(host.into()), paths: Vec::new() }
    }

    /// A rule without host (every host).
    pub fn any_host() -> Self {
        Self { host: None, paths: Vec::new() }
    }

    /// A path of type `path_type` (`Exact`, `Prefix`, `ImplementationSpecific`).
    pub fn path(mut self, path: &str, path_type: &str, service: &str, port: impl Into<PortRef>) -> Self {
        let mut p = json!({"path": path, "pathType": path_type, "backend": backend(service, port.into())});
        if path.is_empty() {
            p.as_object_mut().expect("object").remove("path");
        }
        self.paths.push(p);
        self
    }

    pub fn prefix(self, path: &str, service: &str, port: impl Into<PortRef>) -> Self {
        self.path(path, "Prefix", service, port)
    }

    pub fn exact(self, path: &str, service: &str, port: impl Into<PortRef>) -> Self {
        self.path(path, "Exact", service, port)
    }

    fn value(&self) -> Value {
        let mut r = Map::new();
        if let Some(h) = &self.host {
            r.insert("host".into(), json!(h));
        }
        if !self.paths.is_empty() {
            r.insert("http".into(), json!({"paths": self.paths}));
        }
        Value::Object(r)
    }
}

/// A `networking.k8s.io/v1` Ingress.
#[derive(Clone, Debug)]
pub struct Ingress {
    name: String,
    namespace: Option<String>,
    class: Option<String>,
    annotations: Map<String, Value>,
    default_backend: Option<Value>,
    tls: Vec<Value>,
    rules: Vec<Rule>,
}

impl Ingress {
    /// An Ingress without class (see [`class`](Self::class)).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            namespace: None,
            class: None,
            annotations: Map::new(),
            default_backend: None,
            tls: Vec::new(),
            rules: Vec::new(),
        }
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// `spec.ingressClassName`.
    pub fn class(mut self, class: &str) -> Self {
        self.class = Some(class.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), json!(value));
        self
    }

    pub fn default_backend(mut self, service: &str, port: impl Into<PortRef>) -> Self {
        self.default_backend = Some(backend(service, port.into()));
        self
    }

    /// A `spec.tls` entry.
    pub fn tls(mut self, secret: &str, hosts: &[&str]) -> Self {
        self.tls.push(json!({"secretName": secret, "hosts": hosts}));
        self
    }

    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    pub fn value(&self) -> Value {
        let mut meta = metadata(&self.name, self.namespace.as_deref());
        if !self.annotations.is_empty() {
            meta["annotations"] = Value::Object(self.annotations.clone());
        }
        let mut spec = Map::new();
        if let Some(c) = &self.class {
            spec.insert("ingressClassName".into(), json!(c));
        }
        if let Some(b) = &self.default_backend {
            spec.insert("defaultBackend".into(), b.clone());
        }
        if !self.tls.is_empty() {
            spec.insert("tls".into(), json!(self.tls));
        }
        if !self.rules.is_empty() {
            spec.insert("rules".into(), Value::Array(self.rules.iter().map(Rule::value).collect()));
        }
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec})
    }

    pub fn yaml(&self) -> String {
        to_yaml(&self.value())
    }
}

/// A `networking.k8s.io/v1` IngressClass.
pub fn ingress_class(name: &str, controller: &str, is_default: bool) -> String {
    let mut meta = metadata(name, None);
    if is_default {
        meta["annotations"] = json!({"ingressclass.kubernetes.io/is-default-class": "true"});
    }
    to_yaml(&json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": meta,
        "spec": {"controller": controller},
    }))
}

/// A `kubernetes.io/tls` Secret holding `pair`.
pub fn tls_secret(name: &str, pair: &CertPair) -> String {
    tls_secret_raw(name, &pair.cert_b64(), &pair.key_b64())
}

/// A `kubernetes.io/tls` Secret with the given base64 data (e.g. broken PEM).
pub fn tls_secret_raw(name: &str, crt_b64: &str, key_b64: &str) -> String {
    to_yaml(&json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, None),
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": crt_b64, "tls.key": key_b64},
    }))
}

/// The watched manifests directory.
pub struct ManifestDir {
    path: PathBuf,
}

static TMP_SEQ: AtomicU32 = AtomicU32::new(0);

impl ManifestDir {
    pub fn new(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `file` atomically: a hidden temporary name, then rename.
    pub fn write(&self, file: &str, content: &str) -> Result<()> {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.path.join(format!(".{file}.{}.{n}.tmp", std::process::id()));
        std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
        let dest = self.path.join(file);
        std::fs::rename(&tmp, &dest).with_context(|| format!("renaming to {}", dest.display()))
    }

    /// Removes `file` (no error if absent).
    pub fn remove(&self, file: &str) -> Result<()> {
        match std::fs::remove_file(self.path.join(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_make_the_expected_objects() {
        let ing = Ingress::new("i")
            .class("lb")
            .default_backend("d", 80)
            .tls("s", &["a.com"])
            .rule(Rule::host("a.com").prefix("/a", "svc", "http").exact("/b", "svc", 80))
            .value();
        assert_eq!(ing["spec"]["ingressClassName"], "lb");
        assert_eq!(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["name"], "http");
        assert_eq!(ing["spec"]["rules"][0]["http"]["paths"][1]["pathType"], "Exact");
        assert_eq!(ing["spec"]["defaultBackend"]["service"]["port"]["number"], 80);
        let svc = Service::new("s").port("http", 80, 8080).app_protocol("kubernetes.io/h2c").value();
        assert_eq!(svc["spec"]["ports"][0]["appProtocol"], "kubernetes.io/h2c");
        let eps = EndpointSlice::named("s-1", "s").port("http", 8080).endpoint(Ipv4Addr::LOCALHOST, false).value();
        assert_eq!(eps["metadata"]["labels"]["kubernetes.io/service-name"], "s");
        assert_eq!(eps["endpoints"][0]["conditions"]["ready"], false);
        assert!(docs(&["a".into(), "b".into()]).contains("\n---\n"));
    }
}
