//! The Kubernetes API source: reflectors that keep the objects the agent
//! needs, and the calls it makes back (status, Events, the leader Lease,
//! the node's liveness Lease).

mod access;
mod client;
mod leader;
mod lease;
mod metallb;
mod node_lease;
mod source;

pub use access::{API_ACCESS, AccessScope, ApiAccess};
pub use client::connect;
pub use leader::elect;
pub use lease::LeaseSettings;
pub use metallb::{
    METALLB_GROUP_VERSION, RECHECK as METALLB_RECHECK, Served as MetalLbServed, discover as discover_metallb,
};
pub use node_lease::{log_liveness, node_lease_settings, renew_node_lease, watch_node_leases};
pub use source::{TLS_SECRETS, watch_cluster};
