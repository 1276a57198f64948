//! What the agent writes back to the API server: addresses for Services of
//! type LoadBalancer (IPAM), Ingress status, and Events on rejected objects.
//! Only the leader writes (see `cluster::leader`).

pub mod events;
pub mod in_memory;
pub mod ingress;
pub mod ipam;
pub mod services;
mod writer;

pub use writer::{RESYNC, StatusInputs, StatusSettings, write_status};
