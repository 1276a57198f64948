//! What the compiler produces for the L4 data path: frontends and service
//! ports with their backends and Maglev rows, by name. Ids and map layout are
//! the applier's business (`crate::dataplane`), so these tables compare
//! equal across runs and nodes for the same input.

use std::collections::BTreeMap;
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendEntry {
    pub service: ServicePortName,
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
    /// Maglev row: slot → index into `backends`. Empty when there are no
    /// backends (new flows are then rejected). Shared with the compiler's
    /// [`MaglevRows`](super::l4::MaglevRows), which hands an unchanged
    /// service the same row again.
    pub maglev: MaglevRow,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DataplaneTables {
    pub frontends: BTreeMap<FrontendAddr, FrontendEntry>,
    pub services: BTreeMap<ServicePortName, ServiceEntry>,
}
