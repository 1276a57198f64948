//! Command line of the `lb` binary.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::dataplane::{PortRange, XdpAttachMode, XdpTransmit};

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
#[allow(clippy::large_enum_variant, reason = "parsed once, at start")]
pub enum Command {
    /// Run the node agent: attach the data path to the uplinks, keep its
    /// maps in sync with the Services and EndpointSlices, and serve the
    /// Ingress routes on the HTTP and HTTPS listeners.
    Run(RunArgs),
    /// Uninstall the data path: detach every program pinned under the pin
    /// directory and remove the pins (maps included). Run it after the
    /// DaemonSet is deleted; it refuses while an agent runs on the
    /// directory.
    Cleanup(CleanupArgs),
    /// Show what a running agent serves (read-only, through its admin
    /// listener): service ports with frontends, backends and counters,
    /// Maglev shares, live flows, routes, rejected objects.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The agent's --admin-addr.
    #[arg(long, default_value = "127.0.0.1:10254", value_name = "ADDR:PORT", global = true)]
    pub admin_addr: SocketAddr,

    /// `table` for people, `json` for scripts (the admin endpoint's answer
    /// as it came).
    #[arg(short = 'o', long, value_enum, default_value_t = InspectOutput::Table, global = true)]
    pub output: InspectOutput,

    #[command(subcommand)]
    pub what: InspectWhat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectOutput {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum InspectWhat {
    /// Each service port with its frontends, backends (ready, serving,
    /// terminating, local) and packet and byte counters.
    Services,
    /// The backends of one Service (`namespace/name`) with their share of
    /// its Maglev row.
    Backends {
        #[arg(value_name = "NAMESPACE/NAME")]
        service: String,
    },
    /// Live flows in the conntrack table.
    Conntrack {
        /// Only the flows of this Service (`namespace/name`).
        #[arg(long, value_name = "NAMESPACE/NAME")]
        service: Option<String>,
        /// At most this many flows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Hosts → paths → backends, the annotations in effect, and each host's
    /// certificate with its expiry.
    Routes,
    /// Every object left out (or partly out), with the reason.
    Diagnostics,
}

/// How the agent writes its log (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The agent's --bpf-pin-dir.
    #[arg(long, default_value = crate::dataplane::pins::DEFAULT_PIN_DIR, value_name = "DIR")]
    pub bpf_pin_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Directory of Kubernetes YAML (Services, EndpointSlices, Ingresses,
    /// IngressClasses, Secrets; multi-document files) to serve instead of a
    /// cluster's objects. It is watched: changes are applied within a
    /// second. Without it, the agent follows the Kubernetes API.
    #[arg(long, value_name = "DIR", conflicts_with = "kubeconfig")]
    pub manifests: Option<PathBuf>,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Uplink to attach XDP (ingress) and TC (egress) to; repeat for several.
    /// All uplinks that carry service traffic must be listed. `auto`: the
    /// interface that holds --host-ip, else the one of the IPv4 default
    /// route.
    #[arg(long = "interface", value_name = "IFACE", required_unless_present = "no_xdp")]
    pub interfaces: Vec<String>,

    /// The node's primary address (the DaemonSet passes `status.hostIP`):
    /// with `--interface auto`, the uplink is the interface that holds it.
    #[arg(long, env = "HOST_IP", value_name = "IP")]
    pub host_ip: Option<Ipv4Addr>,

    /// Run without the eBPF data path (no root or BPF needed): only the
    /// Ingress proxy, on --http-addr and --https-addr.
    #[arg(long, conflicts_with_all = ["interfaces", "node_ips", "xdp_mode", "xdp_transmit", "cgroup_root", "bpf_pin_dir"])]
    pub no_xdp: bool,

    /// Directory on bpffs where the data path's maps and program links are
    /// pinned, so that it keeps serving when the agent stops or restarts;
    /// an agent starting on it adopts what is there. lb mounts bpffs at
    /// /sys/fs/bpf when nothing is mounted there. One agent at a time
    /// writes to a directory: another waits for it ("standby").
    #[arg(long, default_value = crate::dataplane::pins::DEFAULT_PIN_DIR, value_name = "DIR")]
    pub bpf_pin_dir: PathBuf,

    /// The cgroup v2 directory whose processes (pods, and the node's
    /// host-network processes) get socket-level load balancing: their
    /// connects and sends to cluster IPs, and to every other frontend, go
    /// straight to an endpoint. Default: the first cgroup2 mount in
    /// /proc/mounts (the whole machine), else one lb mounts at
    /// /run/lb/cgroupv2.
    #[arg(long, value_name = "PATH")]
    pub cgroup_root: Option<PathBuf>,

    #[command(flatten)]
    pub ingress: IngressArgs,

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
    /// port costs 8 bytes per slot (the kernel rounds array values up to 8).
    #[arg(long, default_value_t = lb_common::maglev::DEFAULT_TABLE_SIZE, value_name = "PRIME")]
    pub maglev_table_size: u32,

    /// Maximum number of service ports in the data path (sizes the Maglev and
    /// service maps: max-services × maglev-table-size × 4 bytes).
    #[arg(long, default_value_t = lb_common::DEFAULT_MAX_SERVICES, value_name = "N")]
    pub max_services: u32,

    /// Maximum number of frontends (address, port, protocol on which a
    /// service port is offered): cluster IPs, external and load balancer
    /// addresses, and node ports on each of this node's addresses (for
    /// traffic from outside) and on every node's addresses (for the
    /// node's and pods' own sockets). About 100 bytes each.
    #[arg(long, default_value_t = lb_common::DEFAULT_MAX_FRONTENDS, value_name = "N")]
    pub max_frontends: u32,

    /// Maximum number of backends in the data path: each service port's
    /// endpoints (address, port), one entry per service port and endpoint.
    /// About 80 bytes each.
    #[arg(long, default_value_t = lb_common::DEFAULT_MAX_BACKENDS, value_name = "N")]
    pub max_backends: u32,

    /// Conntrack capacity (LRU: the least recently used flows are evicted
    /// when it is full).
    #[arg(long, default_value_t = lb_common::DEFAULT_CONNTRACK_ENTRIES, value_name = "N")]
    pub conntrack_entries: u32,

    /// Source ports used to masquerade flows to backends on other nodes.
    /// Keep it outside net.ipv4.ip_local_port_range so masqueraded flows
    /// never collide with the node's own connections. Default: the widest
    /// range of 1024-65535 outside ip_local_port_range (1024-32767 with
    /// Linux's default 32768-60999).
    #[arg(long, value_name = "MIN-MAX")]
    pub snat_port_range: Option<PortRange>,

    /// How to attach XDP: auto (native, else generic), driver, or skb.
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpAttachMode>,

    /// How translated frames leave the uplinks: xdp (XDP_TX, redirects
    /// and XDP_PASS from the XDP program), tc (handed to a TC ingress
    /// program, which fixes the L4 checksum and sends the skb), or auto: tc
    /// on veth uplinks, whose XDP frames reach the far side only if it runs
    /// an XDP program too and whose frames may carry partial checksums; xdp
    /// elsewhere.
    #[arg(long, value_enum)]
    pub xdp_transmit: Option<XdpTransmit>,

    /// Address of the admin listener: `/healthz` (the process is up) and
    /// `/readyz` (the first snapshot is applied).
    #[arg(long, default_value = "0.0.0.0:10254", value_name = "ADDR:PORT")]
    pub admin_addr: SocketAddr,

    /// A file the agent creates when it is ready (when `/readyz` turns 200)
    /// and removes when it stops, for an exec readiness probe (`test -e
    /// FILE`). Unlike an HTTP probe of the admin port, which is shared with
    /// an agent started beside this one during an upgrade, it always asks
    /// this agent. Default: none.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,

    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. `info`,
    /// `lb_userspace=debug`. Overridden by RUST_LOG.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub log_level: String,

    /// `text`: one human-readable line per event; `json`: one JSON object
    /// per line with stable field names (the access log included).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Threads of the async runtime (the proxy, the sources, the appliers):
    /// nginx's `worker_processes`. The XDP data path does not use them.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,
}

/// Following a cluster: how to reach the API server, and what the agent
/// writes back.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file of the cluster. Default: the in-cluster service
    /// account, else $KUBECONFIG, else ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The agent's configuration file (address pools for Services of type
    /// LoadBalancer, where Ingress status addresses come from); the
    /// DaemonSet mounts it from ConfigMap lb-system/lb-config. Default: no
    /// pools, Ingress status from --ingress-service.
    #[arg(long, env = "LB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Write no status and no Events (another controller does): only serve.
    #[arg(long)]
    pub no_status: bool,

    /// Namespace of the leader-election Lease (only the leader writes
    /// status and Events).
    #[arg(long, env = "POD_NAMESPACE", default_value = "lb-system", value_name = "NAMESPACE")]
    pub leader_election_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "lb-leader", value_name = "NAME")]
    pub leader_election_lease: String,

    /// This agent's identity in the Lease. Default: the pod name ($POD_NAME),
    /// else the node name.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub identity: Option<String>,

    /// Manage only Services of type LoadBalancer with this
    /// `spec.loadBalancerClass`. Default: only those without a class.
    #[arg(long, value_name = "CLASS")]
    pub load_balancer_class: Option<String>,

    /// How often API discovery is asked whether MetalLB's CRDs are
    /// installed (hidden: tests shorten it).
    #[arg(long, hide = true, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub metallb_recheck: Duration,
}

/// The Ingress controller: which Ingresses are ours, where the proxy
/// listens, and how it talks to clients and backends.
#[derive(Debug, Args)]
pub struct IngressArgs {
    /// Plain HTTP listener (HTTP/1.1 and h2c).
    #[arg(long, default_value = "0.0.0.0:80", value_name = "ADDR:PORT")]
    pub http_addr: SocketAddr,

    /// TLS listener (HTTP/1.1 and HTTP/2 by ALPN; certificates by SNI).
    #[arg(long, default_value = "0.0.0.0:443", value_name = "ADDR:PORT")]
    pub https_addr: SocketAddr,

    /// IngressClass `spec.controller` value that selects this controller.
    #[arg(long, default_value = "lb.dev/ingress-controller", value_name = "NAME")]
    pub controller_name: String,

    /// Ingress class name served even without an IngressClass object
    /// (`spec.ingressClassName` or the `kubernetes.io/ingress.class`
    /// annotation).
    #[arg(long, default_value = "lb", value_name = "NAME")]
    pub ingress_class: String,

    /// The Service through which clients reach this controller
    /// (NAMESPACE/NAME). With XDP, its `http` (or 80) and `https` (or 443)
    /// ports are handed to this node's proxy instead of its endpoints.
    #[arg(long, default_value = "lb-system/lb-ingress", value_name = "NAMESPACE/NAME")]
    pub ingress_service: ServiceName,

    /// DNS server for ExternalName backends (repeatable). Default: the
    /// name servers of /etc/resolv.conf.
    #[arg(long = "dns-server", value_name = "IP:PORT")]
    pub dns_servers: Vec<SocketAddr>,

    /// Time a client has to send a request head (slow clients are cut off).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub client_header_timeout: Duration,

    /// Idle time after which a client keep-alive connection is closed.
    #[arg(long, default_value = "75s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub client_idle_timeout: Duration,

    /// Time to connect to an endpoint before trying another one.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub upstream_connect_timeout: Duration,

    /// Time a backend has to send its response head (then 504); also the
    /// longest silence while it sends its body or takes the request body.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub upstream_timeout: Duration,

    /// Largest request body passed to backends (nginx size: 100, 8k, 1m,
    /// 1g; 0: unlimited); bigger ones get 413. The `proxy-body-size`
    /// annotation overrides it per Ingress.
    #[arg(long, default_value = "1m", value_parser = lb_routes::policy::BodySize::parse, value_name = "SIZE")]
    pub proxy_body_size: lb_routes::policy::BodySize,

    /// On SIGTERM the proxy closes its listeners and finishes the requests
    /// in flight (kept-alive connections close after their next answer);
    /// upgraded connections (WebSockets) and whatever else is still open
    /// after this long are closed. Keep it below the pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,

    /// Count every proxied request in `nginx_ingress_controller_requests`
    /// and its histograms (`--request-metrics=false`: those families stay
    /// empty; the others are kept).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub request_metrics: bool,
}

/// `namespace/name` of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for ServiceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self { namespace: namespace.into(), name: name.into() })
            }
            _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
        }
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
