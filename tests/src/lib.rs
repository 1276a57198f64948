//! `lb_testbed`: a network-namespace test bed that looks like a small
//! Kubernetes cluster, for integration tests and the demo.
//!
//! ```text
//!   client (192.168.1.2) ──┐
//!                          │        lan: bridge br0 (L2 segment 192.168.1.0/24)
//!   node1 eth0 .11 ────────┤  node1: cni0 10.244.1.1/24 ── pods 10.244.1.x
//!   node2 eth0 .12 ────────┘  node2: cni0 10.244.2.1/24 ── pods 10.244.2.x
//! ```
//!
//! Pod CIDRs are routed between the nodes host-gw style; the client routes the
//! LoadBalancer IPs 192.168.1.150/32 and .151/32 (the ingress controller's)
//! and the external-IP range 198.51.100.0/24 via node1, as a BGP speaker
//! would have advertised them.
//!
//! Everything the bed creates (namespaces, processes, log directory) is
//! removed when the [`TestBed`] is dropped, also during a panic. Needs root.

pub mod arp;
pub mod bed;
pub mod bins;
pub mod client;
pub mod echo;
pub mod fake_api;
pub mod fixture;
pub mod fuzz;
pub mod handover;
pub mod l7;
pub mod lb_run;
pub mod netns;
pub mod probe;
pub mod process;
mod resources;

pub use bed::{LanPeerXdp, Node, Pod, PodSpec, TestBed, TestBedBuilder, default_pods, wait_for_http};
pub use bins::{copy_example_manifests, example_manifests_dir, lb_bin, lb_echo_bin, lb_run_args, repo_root};
pub use client::{HttpResponse, KeepAliveConn, http_get, http_request, udp_echo, udp_request};
pub use lb_run::LbRun;
pub use netns::in_netns;
pub use process::{Process, ProcessHandle};
pub use resources::{CleanupHandle, cleanup_stale};

use std::net::Ipv4Addr;

/// The client machine on the LAN.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
/// node1's LAN address (its `eth0`).
pub const NODE1_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);
/// node2's LAN address (its `eth0`).
pub const NODE2_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 12);
/// The LoadBalancer IP the client routes via node1 (MetalLB pool 192.168.1.150-200).
pub const LOADBALANCER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 150);
/// The ingress controller's LoadBalancer IP (`lb-system/lb-ingress` in the
/// examples), also routed by the client via node1.
pub const INGRESS_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 151);
/// The external-IP range (198.51.100.0/24) the client routes via node1.
pub const EXTERNAL_NET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);
/// Prefix length of [`EXTERNAL_NET`].
pub const EXTERNAL_NET_PREFIX: u8 = 24;
/// Port the echo pods serve HTTP on.
pub const ECHO_HTTP_PORT: u16 = 80;
/// Second HTTP port of the echo pods (the Ingress examples' target port).
pub const ECHO_HTTP_ALT_PORT: u16 = 8080;
/// Port the echo pods serve UDP on.
pub const ECHO_UDP_PORT: u16 = 5353;
/// Prefix of every namespace name a bed creates: `lbt{pid}-{n}-{role}`.
pub const NAMESPACE_SCHEME_PREFIX: &str = "lbt";

/// Fails clearly (never skips) when not running as root.
pub fn require_root() -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        anyhow::bail!(
            "lb_testbed needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create network namespaces, \
             veths and bridges; CAP_BPF to attach XDP). Run the tests as root, e.g. \
             `sudo -E cargo test -p lb-testbed` or `sudo -E cargo xtask test`."
        )
    }
}
