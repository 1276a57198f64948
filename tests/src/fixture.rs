//! A one-node network namespace for `BPF_PROG_TEST_RUN` fixtures: just the
//! routes and neighbours the data path's FIB lookups need, no traffic.
//!
//! ```text
//!   ns "…-fxN-node": up0 192.168.1.11/24 (02:00:00:00:00:11)   pods0 10.244.1.1/24
//!                    route 10.244.2.0/24 via 192.168.1.12, neighbour 192.168.1.12 permanent
//!   ns "…-fxN-peer": the veth peers (peer0 02:00:00:00:00:12, pods0p)
//! ```

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use lb_userspace::dataplane::Attachment;

use crate::netns::{in_netns, ip, ip_in, sysctl};
use crate::{NAMESPACE_SCHEME_PREFIX, require_root};

pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 12);
pub const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
pub const UPLINK: &str = "up0";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The fixture's namespaces; deleted on drop.
pub struct FixtureNet {
    pub node: String,
    pub peer: String,
}

impl FixtureNet {
    pub fn create() -> Result<Self> {
        require_root()?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("{NAMESPACE_SCHEME_PREFIX}{}-fx{n}", std::process::id());
        let net = Self { node: format!("{base}-node"), peer: format!("{base}-peer") };
        ip(&["netns", "add", &net.node])?;
        ip(&["netns", "add", &net.peer])?;
        net.configure().with_context(|| format!("configuring fixture namespace {}", net.node))?;
        Ok(net)
    }

    fn configure(&self) -> Result<()> {
        let (node, peer) = (self.node.as_str(), self.peer.as_str());
        let mac = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        ip_in(
            node,
            &[
                "link",
                "add",
                UPLINK,
                "address",
                &mac(NODE_MAC),
                "type",
                "veth",
                "peer",
                "name",
                "peer0",
                "netns",
                peer,
                "address",
                &mac(PEER_MAC),
            ],
        )?;
        ip_in(node, &["link", "add", "pods0", "type", "veth", "peer", "name", "pods0p", "netns", peer])?;
        for (ns, dev) in [(node, "lo"), (node, UPLINK), (node, "pods0"), (peer, "peer0"), (peer, "pods0p")] {
            ip_in(ns, &["link", "set", dev, "up"])?;
        }
        ip_in(node, &["addr", "add", "192.168.1.11/24", "dev", UPLINK])?;
        ip_in(node, &["addr", "add", "10.244.1.1/24", "dev", "pods0"])?;
        ip_in(node, &["route", "add", "10.244.2.0/24", "via", &PEER_IP.to_string(), "dev", UPLINK])?;
        ip_in(
            node,
            &["neigh", "replace", &PEER_IP.to_string(), "lladdr", &mac(PEER_MAC), "dev", UPLINK, "nud", "permanent"],
        )?;
        sysctl(node, "net.ipv4.ip_forward", "1")?;
        Ok(())
    }

    /// Runs `f` on a thread inside the node namespace (where the programs
    /// must be attached and test-run, so interface indexes resolve there).
    pub fn run<T: Send>(&self, f: impl FnOnce(&Self) -> T + Send) -> T {
        in_netns(&self.node, || f(self)).expect("entering the fixture namespace")
    }

    /// The uplink as the agent would resolve it (call inside [`Self::run`]).
    pub fn uplink(&self) -> Attachment {
        lb_userspace::node::uplink(UPLINK).expect("fixture uplink")
    }
}

impl Drop for FixtureNet {
    fn drop(&mut self) {
        for ns in [&self.node, &self.peer] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
