//! The Kubernetes API source: reflectors that keep the objects the agent
//! needs, and the calls it makes back (status, Events, the leader Lease).

mod access;
mod client;
mod leader;
mod source;

pub use access::{API_ACCESS, AccessScope, ApiAccess};
pub use client::connect;
pub use leader::{LeaseSettings, elect};
pub use source::{TLS_SECRETS, watch_cluster};
