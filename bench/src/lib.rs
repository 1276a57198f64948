//! `lb-bench`: lb measured against what users run today, in the same run on
//! the same machine.
//!
//! - [`l4`]: the netns bed (client, node, pods) forwarding NodePort traffic
//!   through lb's XDP data path, kube-proxy's iptables rule layout and its
//!   nftables layout.
//! - [`control`]: how long one Service/EndpointSlice change takes to reach
//!   the data path (lb's map diff, `iptables-restore`, `nft`), map memory,
//!   Maglev table builds.
//! - [`l7`]: one Ingress set served by lb, nginx (configured as
//!   ingress-nginx would) and HAProxy, with the same echo backends.
//! - [`soak`]: lb alone under constant L4 and L7 load while its
//!   configuration changes every second and an agent is replaced every
//!   minute: failures, the agents' fds and RSS over time, conntrack fill.
//!
//! Every bench produces a [`report::Report`] (JSON, Markdown tables, SVG
//! charts); every figure is given absolutely and as a ratio to each peer.

pub mod chart;
pub mod cluster;
pub mod control;
pub mod kube_proxy;
pub mod l4;
pub mod l7;
pub mod markdown;
pub mod meta;
pub mod profile;
pub mod report;
pub mod soak;
pub mod stats;

use std::path::PathBuf;

pub use profile::Profile;
pub use report::{Better, Comparison, Measurement, Report};

/// What every bench is given.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub profile: Profile,
    /// Where the report is written (the bench may keep work files under it).
    pub out_dir: PathBuf,
    /// l4: the idle Service counts to measure at, instead of the profile's.
    pub services: Option<Vec<usize>>,
}

/// `bench/results/{profile}` in the repository.
pub fn default_out_dir(profile: Profile) -> PathBuf {
    lb_testbed::repo_root().join("bench").join("results").join(profile.as_str())
}
