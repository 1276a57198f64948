//! Command line of the `lb` binary.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::dataplane::{PortRange, XdpAttachMode};

#[derive(Debug, Parser)]
#[command(
    name = "lb",
    version,
    about = "eBPF/XDP load balancer for Kubernetes nodes: replaces kube-proxy for NodePort, LoadBalancer and external-IP traffic"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent: attach the data path to the uplinks and keep its
    /// maps in sync with the Services and EndpointSlices.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Directory of Kubernetes YAML (Services, EndpointSlices; multi-document
    /// files). It is watched: changes are applied within a second.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,

    /// Uplink to attach XDP (ingress) and TC (egress) to; repeat for several.
    /// All uplinks that carry service traffic must be listed.
    #[arg(long = "interface", value_name = "IFACE", required = true)]
    pub interfaces: Vec<String>,

    /// Node address on which NodePorts answer; repeat for several. Default:
    /// every IPv4 address of the --interface uplinks.
    #[arg(long = "node-ip", value_name = "IP")]
    pub node_ips: Vec<Ipv4Addr>,

    /// This node's name, matched against EndpointSlice `nodeName` for
    /// `externalTrafficPolicy: Local`. Default: the host name.
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Maglev table size per service port (a prime). Larger tables balance
    /// more evenly and move fewer flows when backends change; each service
    /// port costs 4 bytes per slot.
    #[arg(long, default_value_t = lb_common::maglev::DEFAULT_TABLE_SIZE, value_name = "PRIME")]
    pub maglev_table_size: u32,

    /// Maximum number of service ports in the data path (sizes the Maglev and
    /// service maps: max-services × maglev-table-size × 4 bytes).
    #[arg(long, default_value_t = lb_common::DEFAULT_MAX_SERVICES, value_name = "N")]
    pub max_services: u32,

    /// Conntrack capacity (LRU: the least recently used flows are evicted
    /// when it is full).
    #[arg(long, default_value_t = lb_common::DEFAULT_CONNTRACK_ENTRIES, value_name = "N")]
    pub conntrack_entries: u32,

    /// Source ports used to masquerade flows to backends on other nodes.
    /// Keep it outside net.ipv4.ip_local_port_range so masqueraded flows
    /// never collide with the node's own connections.
    #[arg(long, default_value = "61000-65535", value_name = "MIN-MAX")]
    pub snat_port_range: PortRange,

    /// How to attach XDP: auto (native, else generic), driver, or skb.
    #[arg(long, value_enum, default_value_t = XdpAttachMode::Auto)]
    pub xdp_mode: XdpAttachMode,

    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. `info`,
    /// `lb_userspace=debug`. Overridden by RUST_LOG.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub log_level: String,
}
