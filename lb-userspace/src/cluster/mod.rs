//! The Kubernetes API source: reflectors that keep the objects the agent
//! needs, and the calls it makes back (status, Events, the leader Lease).

mod access;
mod client;
mod leader;
mod metallb;
mod source;

pub use access::{API_ACCESS, AccessScope, ApiAccess};
pub use client::connect;
pub use leader::{LeaseSettings, elect};
pub use metallb::{
    METALLB_GROUP_VERSION, RECHECK as METALLB_RECHECK, Served as MetalLbServed, discover as discover_metallb,
};
pub use source::{TLS_SECRETS, watch_cluster};
