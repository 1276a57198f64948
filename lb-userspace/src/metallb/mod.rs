//! MetalLB's layer-2 mode, served by lb: its `IPAddressPool` and
//! `L2Advertisement` resources as input, and the rule that picks the one
//! node answering ARP for each LoadBalancer address.

pub mod announce;
pub mod gratuitous;
pub mod liveness;
pub mod objects;
pub mod owner;
pub mod pools;
pub mod resources;
pub mod speaker;
