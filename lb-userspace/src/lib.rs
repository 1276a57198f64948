//! The `lb` node agent.
//!
//! Sources (a directory of YAML today, the Kubernetes API later) produce a
//! [`snapshot::Snapshot`]; pure compilers turn it into tables
//! ([`compile`]): BPF map contents, written as differences by thin appliers
//! ([`dataplane`]), and the Ingress route table, swapped into the proxy
//! (the `lb-proxy` crate).

pub mod admin;
pub mod cgroup;
pub mod cleanup;
pub mod cli;
pub mod cluster;
pub mod compile;
pub mod config;
pub mod dataplane;
pub mod diagnostics;
pub mod fuzzing;
pub mod health_check;
pub mod inspect;
pub mod logging;
pub mod manifests;
pub mod metallb;
pub mod metrics;
pub mod node;
pub mod run;
pub mod selector;
pub mod snapshot;
pub mod sockets;
pub mod status;
