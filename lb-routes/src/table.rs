//! The route table.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::tls::CertStore;

/// `namespace/name` of a Kubernetes object, for logs and error pages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An Ingress backend's Service and port, as written in the Ingress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServicePortRef {
    pub service: ObjectName,
    /// `80` or `http`.
    pub port: String,
}

impl fmt::Display for ServicePortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.port)
    }
}

/// How the proxy speaks to a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge, for Service ports with `appProtocol:
    /// kubernetes.io/h2c` or `grpc`.
    H2c,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendTarget {
    /// The ready endpoints (pod address and target port), balanced per
    /// request. Empty: the proxy answers 503.
    Endpoints(Vec<SocketAddr>),
    /// An `ExternalName` Service: `host` is resolved through DNS when used;
    /// an unresolvable name answers 502.
    ExternalName { host: String, port: u16 },
}

/// Where matched requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub service: ServicePortRef,
    pub target: BackendTarget,
    pub protocol: UpstreamProtocol,
}

/// One path of an Ingress rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The Ingress the path comes from.
    pub ingress: ObjectName,
    /// The path as written (trailing slash kept), for logs.
    pub path: String,
    pub path_type: crate::path::PathType,
    pub backend: Arc<Backend>,
}

/// The routes of one host pattern (or of the rules without host).
#[derive(Clone, Debug, Default)]
pub struct VirtualHost {
    /// `a.com`, `*.foo.com`, or empty for the rules without host.
    pub name: String,
    /// A certificate is configured for this host (`spec.tls`): plain HTTP
    /// requests are redirected to HTTPS with 308, as ingress-nginx does by
    /// default.
    pub tls_redirect: bool,
    /// Requests for this host that match no path go here (the `spec.defaultBackend`
    /// of the Ingress that defines the host); `None`: the table's default.
    pub fallback: Option<Arc<Backend>>,
    exact: HashMap<String, Arc<Route>>,
    /// Prefix routes, longest (in path elements) first.
    prefixes: Vec<(Vec<String>, Arc<Route>)>,
}

/// The answer of [`RouteTable::select`].
#[derive(Debug)]
pub struct Selected<'a> {
    /// The virtual host the request falls in, if any.
    pub host: Option<&'a VirtualHost>,
    /// The matching path, if any.
    pub route: Option<&'a Arc<Route>>,
    /// Where the request goes: the route's backend, else the host's
    /// fallback, else the table's default backend. `None`: 404 from the
    /// built-in default backend.
    pub backend: Option<&'a Arc<Backend>>,
}

/// All virtual hosts, the default backend and the certificates.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    exact_hosts: HashMap<String, VirtualHost>,
    /// By the suffix after `*.`.
    wildcard_hosts: HashMap<String, VirtualHost>,
    /// The rules without host.
    any_host: Option<VirtualHost>,
    default_backend: Option<Arc<Backend>>,
    certificates: CertStore,
}

impl RouteTable {
    /// A table without routes: every request gets 404.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The virtual host and route for a request. `host` is [normalised](crate::host::normalize_host)
    /// (`None` when the request has none); `path` is [normalised](crate::path::normalize_path).
    ///
    /// Host: an exact host, else a wildcard host, else the rules without
    /// host. Within it: the longest matching path; `Exact` beats `Prefix`
    /// on the same path.
    pub fn select(&self, host: Option<&str>, path: &str) -> Selected<'_> {
        todo!("{host:?} {path}")
    }

    pub fn certificates(&self) -> &CertStore {
        &self.certificates
    }

    pub fn default_backend(&self) -> Option<&Arc<Backend>> {
        self.default_backend.as_ref()
    }
}

/// Builds a [`RouteTable`]; used by the Ingress compiler.
#[derive(Debug, Default)]
pub struct RouteTableBuilder {
    table: RouteTable,
}

impl RouteTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a path route to the virtual host `host` (`None`: the rules
    /// without host). When the host already has a route with the same
    /// normalised path and path type, the first one stays and is returned
    /// as the error.
    pub fn add_route(&mut self, host: Option<&crate::HostPattern>, route: Route) -> Result<(), Arc<Route>> {
        todo!("{host:?} {route:?}")
    }

    /// Sets where requests for `host` that match no path go. The first
    /// call for a host wins (returns false after that).
    pub fn set_fallback(&mut self, host: Option<&crate::HostPattern>, backend: Arc<Backend>) -> bool {
        todo!("{host:?} {backend:?}")
    }

    /// Marks `host` as served over TLS (plain HTTP requests are redirected).
    pub fn set_tls_redirect(&mut self, host: &crate::HostPattern) {
        todo!("{host:?}")
    }

    /// Sets the table's default backend (an Ingress `spec.defaultBackend`).
    /// The first call wins (returns false after that).
    pub fn set_default_backend(&mut self, backend: Arc<Backend>) -> bool {
        todo!("{backend:?}")
    }

    /// Adds the certificate for `host`. The first one for a host wins
    /// (returns false after that).
    pub fn add_certificate(&mut self, host: &crate::HostPattern, key: Arc<rustls::sign::CertifiedKey>) -> bool {
        todo!("{host:?} {}", key.cert.len())
    }

    pub fn build(self) -> RouteTable {
        self.table
    }
}
