//! Ingress backends: `backend.service.{name, port}` → a [`Backend`].
//!
//! - The Service is looked up in the Ingress's namespace, its port by
//!   `port.number` (the Service's `port`) or `port.name`.
//! - A missing Service or port is diagnosed and still routes, to no
//!   endpoint: the proxy answers 503, as ingress-nginx does.
//! - `ExternalName` Services route to their DNS name and the port (the
//!   number the Ingress names even when the Service does not list it).
//! - Other Services route to the ready endpoints of the port (see
//!   [`endpoints`](crate::compile::endpoints): named target ports and
//!   readiness are resolved as kube-proxy does).
//! - `appProtocol: kubernetes.io/h2c` or `grpc` on the Service port: the
//!   proxy speaks HTTP/2 with prior knowledge to the endpoints.
//! - `backend.resource` is not supported: diagnosed, the path is left out.
//!
//! Each Service port is resolved once per compilation, however many paths
//! use it, and all of them share one [`Backend`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::networking::v1::IngressBackend;
use lb_routes::{Backend, BackendTarget, ObjectName, ServicePortRef, UpstreamProtocol};

use super::IngressRef;
use crate::compile::endpoints::{BackendQuery, Scope, ServiceRef, SliceIndex};
use crate::compile::tables::Protocol;
use crate::diagnostics::Diagnostic;
use crate::snapshot::{ObjectKey, Snapshot};

/// The `appProtocol` values that mean HTTP/2 without TLS.
const H2C_APP_PROTOCOLS: [&str; 2] = ["kubernetes.io/h2c", "grpc"];

/// The port an Ingress backend names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PortRef {
    Number(u16),
    Name(String),
}

impl PortRef {
    /// The field of the Ingress backend that names this port.
    fn field(&self) -> &'static str {
        match self {
            PortRef::Number(_) => "service.port.number",
            PortRef::Name(_) => "service.port.name",
        }
    }

    fn matches(&self, port: &ServicePort) -> bool {
        match self {
            PortRef::Number(number) => port.port == i32::from(*number),
            PortRef::Name(name) => port.name.as_deref() == Some(name.as_str()),
        }
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(number) => write!(f, "{number}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

/// A Service port resolved once: the backend and, when the Service or its
/// port is missing, the problem to report on every Ingress field using it.
#[derive(Clone)]
struct Resolved {
    backend: Arc<Backend>,
    /// (field below `backend`, message).
    problem: Option<(&'static str, String)>,
}

/// Resolves Ingress backends against the snapshot's Services and
/// EndpointSlices, caching each Service port.
pub(super) struct BackendResolver<'a> {
    snapshot: &'a Snapshot,
    slices: SliceIndex<'a>,
    cache: HashMap<(String, String, PortRef), Resolved>,
}

impl<'a> BackendResolver<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        Self { snapshot, slices: SliceIndex::new(&snapshot.endpoint_slices), cache: HashMap::new() }
    }

    /// The Services (namespace, name) looked up so far, found or not: what
    /// the routes depend on besides the Ingresses and Secrets.
    pub fn services_looked_up(&self) -> BTreeSet<ObjectKey> {
        self.cache.keys().map(|(namespace, name, _)| (namespace.clone(), name.clone())).collect()
    }

    fn service(&self, namespace: &str, name: &str) -> Option<&'a Service> {
        self.snapshot.service_in(namespace, name).map(|s| &**s)
    }

    /// The backend of `backend` (at `field` in the Ingress `ing`). `None`
    /// when the path must be left out (diagnosed); a backend without
    /// endpoints when the Service or port is missing (diagnosed too).
    pub fn resolve(
        &mut self,
        ing: &IngressRef<'_>,
        backend: &IngressBackend,
        field: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Arc<Backend>> {
        let Some(service) = &backend.service else {
            let (field, message) = match backend.resource {
                Some(_) => (format!("{field}.resource"), "resource backends are not supported; ignored"),
                None => (field.to_string(), "neither a service nor a resource is set; ignored"),
            };
            diagnostics.push(ing.diagnostic(field, message));
            return None;
        };
        if service.name.is_empty() {
            diagnostics.push(ing.diagnostic(format!("{field}.service.name"), "the service name is empty; ignored"));
            return None;
        }
        let port = port_ref(ing, service.port.as_ref(), field, diagnostics)?;
        let key = (ing.namespace.to_string(), service.name.clone(), port);
        let resolved = match self.cache.get(&key) {
            Some(resolved) => resolved.clone(),
            None => {
                let resolved = self.resolve_service_port(ing.namespace, &key.1, &key.2, diagnostics);
                self.cache.insert(key, resolved.clone());
                resolved
            }
        };
        if let Some((suffix, message)) = resolved.problem {
            diagnostics.push(ing.diagnostic(format!("{field}.{suffix}"), message));
        }
        Some(resolved.backend)
    }

    fn resolve_service_port(
        &self,
        namespace: &str,
        name: &str,
        port: &PortRef,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Resolved {
        let service_port = ServicePortRef {
            service: ObjectName { namespace: namespace.into(), name: name.into() },
            port: port.to_string(),
        };
        let unavailable = |suffix: &'static str, message: String| Resolved {
            backend: Arc::new(Backend {
                service: service_port.clone(),
                target: BackendTarget::Endpoints(Vec::new()),
                protocol: UpstreamProtocol::Http1,
            }),
            problem: Some((suffix, message)),
        };
        let Some(service) = self.service(namespace, name) else {
            return unavailable("service.name", format!("Service {namespace}/{name} not found; requests get 503"));
        };
        let spec = service.spec.as_ref();
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let found = ports.iter().enumerate().find(|(_, p)| port.matches(p));
        let protocol = found.map_or(UpstreamProtocol::Http1, |(_, p)| upstream_protocol(p));
        let backend = |target| Resolved {
            backend: Arc::new(Backend { service: service_port.clone(), target, protocol }),
            problem: None,
        };
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            let external_name = spec.and_then(|s| s.external_name.as_deref()).filter(|n| !n.is_empty());
            let Some(host) = external_name else {
                let message =
                    format!("ExternalName Service {namespace}/{name} has no spec.externalName; requests get 503");
                return unavailable("service.name", message);
            };
            let number = match (found, port) {
                (Some((_, p)), _) => u16::try_from(p.port).ok(),
                (None, PortRef::Number(number)) => Some(*number),
                (None, PortRef::Name(_)) => None,
            };
            let Some(number) = number.filter(|&n| n != 0) else {
                let message = format!("Service {namespace}/{name} has no port {}; requests get 503", describe(port));
                return unavailable(port.field(), message);
            };
            return backend(BackendTarget::ExternalName { host: host.to_string(), port: number });
        }
        let Some((index, service_port_spec)) = found else {
            let message = format!("Service {namespace}/{name} has no port {}; requests get 503", describe(port));
            return unavailable(port.field(), message);
        };
        let transport = service_port_spec.protocol.as_deref().unwrap_or("TCP");
        if transport != "TCP" {
            let message =
                format!("port {port} of Service {namespace}/{name} is {transport}, not TCP; requests get 503");
            return unavailable(port.field(), message);
        }
        let svc = ServiceRef { namespace, name };
        let query = BackendQuery {
            svc: &svc,
            index,
            port: service_port_spec,
            protocol: Protocol::Tcp,
            scope: Scope::Cluster(None),
        };
        let addresses = query.resolve(self.slices.for_service(namespace, name), diagnostics);
        let endpoints = addresses.into_iter().map(|a| SocketAddr::from((a.ip, a.port))).collect();
        backend(BackendTarget::Endpoints(endpoints))
    }
}

/// The port an Ingress backend names (`number` wins over `name` when both
/// are set, which the API refuses). `None` (diagnosed) when it names none.
fn port_ref(
    ing: &IngressRef<'_>,
    port: Option<&k8s_openapi::api::networking::v1::ServiceBackendPort>,
    field: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<PortRef> {
    let number = port.and_then(|p| p.number);
    let name = port.and_then(|p| p.name.as_deref()).filter(|n| !n.is_empty());
    match (number, name) {
        (Some(number), _) => match u16::try_from(number).ok().filter(|&n| n != 0) {
            Some(number) => Some(PortRef::Number(number)),
            None => {
                let message = format!("{number} is not a port number (1-65535); ignored");
                diagnostics.push(ing.diagnostic(format!("{field}.service.port.number"), message));
                None
            }
        },
        (None, Some(name)) => Some(PortRef::Name(name.to_string())),
        (None, None) => {
            let message = "neither a port number nor a port name is set; ignored";
            diagnostics.push(ing.diagnostic(format!("{field}.service.port"), message));
            None
        }
    }
}

/// `80` or `named "http"`, for messages.
fn describe(port: &PortRef) -> String {
    match port {
        PortRef::Number(number) => number.to_string(),
        PortRef::Name(name) => format!("named {name:?}"),
    }
}

fn upstream_protocol(port: &ServicePort) -> UpstreamProtocol {
    match port.app_protocol.as_deref() {
        Some(app) if H2C_APP_PROTOCOLS.contains(&app) => UpstreamProtocol::H2c,
        _ => UpstreamProtocol::Http1,
    }
}
