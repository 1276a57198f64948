//! The agent's settings, built once from the command line and the
//! configuration file: every part of `lb run` reads them from here.

use anyhow::Result;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::config::AgentConfig;
use crate::dataplane::{DataplaneSettings, PinDir, XdpAttachMode, XdpTransmit, default_snat_ports};
use crate::node;

pub struct AgentSettings {
    /// `--node-name`, else the host name.
    pub node_name: String,
    /// `--config`, else the defaults.
    pub config: AgentConfig,
    /// The eBPF data path's; `None` with `--no-xdp`.
    pub data_path: Option<DataPathSettings>,
}

pub struct DataPathSettings {
    pub pin_dir: PinDir,
    pub maps: DataplaneSettings,
    pub xdp_mode: XdpAttachMode,
    pub xdp_transmit: XdpTransmit,
}

impl AgentSettings {
    pub fn from_args(args: &RunArgs) -> Result<Self> {
        let config = match &args.cluster.config {
            Some(path) => AgentConfig::load(path)?,
            None => AgentConfig::default(),
        };
        let data_path = (!args.no_xdp).then(|| DataPathSettings::from_args(args));
        Ok(Self { node_name: args.node_name.clone().unwrap_or_else(node::default_node_name), config, data_path })
    }
}

impl DataPathSettings {
    fn from_args(args: &RunArgs) -> Self {
        let snat_ports = args.snat_port_range.unwrap_or_else(|| {
            let (range, problem) = default_snat_ports();
            if let Some(problem) = problem {
                warn!(%range, "{problem}; masquerading with the fallback range (set --snat-port-range)");
            }
            range
        });
        info!(%snat_ports, "masquerade ports");
        Self {
            pin_dir: PinDir::new(&args.bpf_pin_dir),
            maps: DataplaneSettings {
                maglev_table_size: args.maglev_table_size,
                max_services: args.max_services,
                max_frontends: args.max_frontends,
                max_backends: args.max_backends,
                conntrack_entries: args.conntrack_entries,
                snat_ports,
                ..DataplaneSettings::default()
            },
            xdp_mode: args.xdp_mode.unwrap_or_default(),
            xdp_transmit: args.xdp_transmit.unwrap_or_default(),
        }
    }
}
