//! Entry points for fuzzing what the agent reads from users: each takes
//! arbitrary bytes and must return — bad input becomes diagnostics, never
//! a panic. The `cargo fuzz` targets (`fuzz/`, run by `cargo xtask fuzz`)
//! call them, and `tests/untrusted_input.rs` runs them on the examples and
//! seeded mutations of them in every `cargo xtask test`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::compile::l7::{L7Options, compile_l7};
use crate::compile::{CompileOptions, L4Compiler, NodeContext};
use crate::config::AgentConfig;
use crate::metallb::speaker::{L2Uplink, Speaker};
use crate::status::in_memory;
use crate::status::ipam::IpamOptions;

/// A manifests file: its YAML documents into the snapshot, then everything
/// that reads the snapshot — Ingress rules, ingress-nginx annotations,
/// regexes and TLS Secrets (the route compiler); Services, EndpointSlices
/// and Nodes (the map compiler); MetalLB's pools (IPAM) and
/// advertisements (the layer-2 decision).
pub fn manifests_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (snapshot, _) = crate::manifests::load_text("input.yaml", &text);
    let _ = compile_l7(&snapshot, &L7Options::default());
    let node = NodeContext { name: "node1".into(), addresses: vec![Ipv4Addr::new(192, 168, 1, 11)], ingress: None };
    let mut compiler = L4Compiler::new(node, CompileOptions { maglev_table_size: 251 });
    let _ = compiler.compile_changes(&Arc::new(snapshot.clone()), None);
    let (with_addresses, _) = in_memory::with_addresses(&snapshot, &[], &IpamOptions::default());
    let uplink = L2Uplink {
        name: "eth0".into(),
        ifindex: 2,
        mac: [2, 0, 0, 0, 0, 0x11],
        networks: vec![(Ipv4Addr::new(192, 168, 1, 11), 24)],
    };
    let _ = Speaker::new("node1".into(), vec![uplink], Vec::new()).update(&with_addresses, |_| true);
}

/// The agent's `--config` file (address pools, Ingress status source).
pub fn config_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = AgentConfig::parse(&text, "input.yaml");
}
