//! The `lb` node agent.
//!
//! Sources (a directory of YAML today, the Kubernetes API later) produce a
//! [`snapshot::Snapshot`]; pure compilers turn it into tables
//! ([`compile`]); thin appliers write the tables' differences to the BPF maps
//! ([`dataplane`]).

pub mod cli;
pub mod compile;
pub mod dataplane;
pub mod diagnostics;
pub mod manifests;
pub mod node;
pub mod run;
pub mod snapshot;
