//! Where routed requests go: a Service port's endpoints or an
//! `ExternalName`, and how the proxy speaks to them.

use std::fmt;
use std::net::SocketAddr;

use crate::object::ObjectName;

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
