//! Facts about this node that the agent finds itself: interface indexes and
//! IPv4 addresses, and the kernel settings the data path relies on.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::ifaddrs::getifaddrs;
use nix::net::if_::if_nametoindex;

use crate::dataplane::Attachment;

/// The IPv4 addresses configured on `interface`, in the kernel's order
/// (primary first).
pub fn ipv4_addresses(interface: &str) -> Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for ifaddr in getifaddrs().context("listing interface addresses")? {
        if ifaddr.interface_name != interface {
            continue;
        }
        if let Some(sin) = ifaddr.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            out.push(sin.ip());
        }
    }
    Ok(out)
}

/// Resolves `--interface` names into attachments: index and the address to
/// masquerade to (the interface's primary IPv4 address).
pub fn uplink(interface: &str) -> Result<Attachment> {
    let ifindex = if_nametoindex(interface).with_context(|| format!("--interface {interface}: no such interface"))?;
    let addresses = ipv4_addresses(interface)?;
    let Some(&snat_addr) = addresses.first() else {
        bail!("--interface {interface}: it has no IPv4 address to masquerade to");
    };
    Ok(Attachment { name: interface.to_string(), ifindex, snat_addr })
}

/// Prepares an uplink's kernel settings:
/// * `accept_local=1`: a masqueraded packet whose next hop is not resolved
///   yet is handed to the kernel with the node's own address as source; the
///   kernel must route it rather than drop it as a martian.
///
/// and warns when IPv4 forwarding is off (local backends are reached
/// through the kernel's forwarding path, as with kube-proxy).
pub fn prepare_uplink(interface: &str) -> Result<()> {
    let accept_local = format!("/proc/sys/net/ipv4/conf/{interface}/accept_local");
    std::fs::write(&accept_local, "1").with_context(|| format!("setting {accept_local}"))?;
    if read_sysctl(Path::new("/proc/sys/net/ipv4/ip_forward")).as_deref() != Some("1") {
        tracing::warn!("net.ipv4.ip_forward is 0: backends on this node will not be reachable");
    }
    Ok(())
}

fn read_sysctl(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The node's name: `--node-name`, else the host name.
pub fn default_node_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}
