//! What the compiler produces for the L4 data path: frontends and service
//! ports with their backends and Maglev rows, by name. Ids and map layout are
//! the applier's business (`crate::dataplane`), so these tables compare
//! equal across runs and nodes for the same input.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// IANA protocol number, as in the IPv4 header.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lb_common::PROTO_TCP,
            Protocol::Udp => lb_common::PROTO_UDP,
        }
    }
}

impl Protocol {
    /// The name Kubernetes uses (`TCP`, `UDP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kubernetes' ServicePortName: one port of one Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    /// The Service port's `name` (empty for a single unnamed port).
    pub port: String,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        write!(f, "/{}", self.protocol)
    }
}

/// An address, port and protocol on which a service port is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrontendAddr {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for FrontendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.ip, self.port, self.protocol)
    }
}

/// Which endpoints of a service port a view uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointScope {
    /// Every endpoint of the cluster, narrowed by topology hints (traffic
    /// policy `Cluster`).
    Cluster,
    /// Only this node's endpoints (traffic policy `Local`).
    Node,
}

/// A service port as one kind of traffic sees it: the unit that owns a set
/// of backends and a Maglev row in the data path. A service port has one
/// view per endpoint scope its frontends use: with `externalTrafficPolicy:
/// Local`, traffic from outside sees the node's endpoints while the
/// cluster's own sockets see them all.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceView {
    pub port: ServicePortName,
    pub scope: EndpointScope,
}

impl ServiceView {
    pub fn cluster(port: ServicePortName) -> Self {
        Self { port, scope: EndpointScope::Cluster }
    }

    pub fn node(port: ServicePortName) -> Self {
        Self { port, scope: EndpointScope::Node }
    }
}

impl fmt::Display for ServiceView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            EndpointScope::Cluster => write!(f, "{}", self.port),
            EndpointScope::Node => write!(f, "{} (node-local)", self.port),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendEntry {
    pub service: ServiceView,
    /// Masquerade flows to backends on other nodes (`externalTrafficPolicy:
    /// Cluster`).
    pub snat: bool,
}

/// One endpoint address and target port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendAddr {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// A Maglev row: slot → index into a service port's backends. Shared, so
/// that a row reused from the last compile costs no copy.
pub type MaglevRow = Arc<[u32]>;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServiceEntry {
    /// Backends in a canonical order (sorted, no duplicates).
    pub backends: Vec<BackendAddr>,
    /// Terminating endpoints while ready ones exist (sorted, no
    /// duplicates, none of `backends`): kept in the maps, marked draining,
    /// so that flows already open to them go on; in no Maglev row.
    pub draining: Vec<BackendAddr>,
    /// Maglev row: slot → index into `backends`. Empty when there are no
    /// backends (new flows are then rejected). Shared with the compiler's
    /// [`MaglevRows`](super::l4::MaglevRows), which hands an unchanged
    /// service the same row again.
    pub maglev: MaglevRow,
    /// `sessionAffinity: ClientIP`: seconds a client keeps its backend; 0
    /// without affinity.
    pub affinity_timeout_s: u32,
    /// No backends here while the Service has endpoints elsewhere (a
    /// `Local` policy): new flows are dropped rather than rejected.
    pub drop_when_empty: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DataplaneTables {
    /// Frontends of traffic arriving on the uplinks (the XDP program).
    pub frontends: BTreeMap<FrontendAddr, FrontendEntry>,
    /// Frontends of connects and sends of the cgroup's processes (the
    /// socket programs): cluster IPs, and the frontends above again with
    /// the cluster's endpoints.
    pub socket_frontends: BTreeMap<FrontendAddr, FrontendEntry>,
    pub services: BTreeMap<ServiceView, ServiceEntry>,
}

/// The entries of [`DataplaneTables`] one compile added, changed or removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TablesDelta {
    pub frontends: BTreeSet<FrontendAddr>,
    pub socket_frontends: BTreeSet<FrontendAddr>,
    pub services: BTreeSet<ServiceView>,
}

impl TablesDelta {
    pub fn is_empty(&self) -> bool {
        self.frontends.is_empty() && self.socket_frontends.is_empty() && self.services.is_empty()
    }
}
