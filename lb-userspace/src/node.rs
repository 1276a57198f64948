//! Facts about this node that the agent finds itself: interface indexes and
//! IPv4 addresses, and the kernel settings the data path relies on.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd};
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

/// The IPv4 networks of `interface`: each address with its prefix length.
pub fn ipv4_networks(interface: &str) -> Result<Vec<(Ipv4Addr, u8)>> {
    let mut out = Vec::new();
    for ifaddr in getifaddrs().context("listing interface addresses")? {
        if ifaddr.interface_name != interface {
            continue;
        }
        let address = ifaddr.address.as_ref().and_then(|a| a.as_sockaddr_in()).map(|sin| sin.ip());
        let mask = ifaddr.netmask.as_ref().and_then(|a| a.as_sockaddr_in()).map(|sin| sin.ip());
        if let (Some(address), Some(mask)) = (address, mask) {
            out.push((address, u32::from(mask).count_ones() as u8));
        }
    }
    Ok(out)
}

/// The Ethernet address of `interface`.
pub fn hardware_address(interface: &str) -> Result<[u8; 6]> {
    for ifaddr in getifaddrs().context("listing interface addresses")? {
        if ifaddr.interface_name != interface {
            continue;
        }
        if let Some(mac) = ifaddr.address.as_ref().and_then(|a| a.as_link_addr()).and_then(|link| link.addr()) {
            return Ok(mac);
        }
    }
    bail!("interface {interface} has no Ethernet address")
}

/// The `--interface` value that asks the agent to find the uplink itself.
pub const AUTO_INTERFACE: &str = "auto";

/// The uplink names: `--interface` values, with `auto` replaced by the
/// interface that holds `host_ip` (when given), else by the interface of
/// the IPv4 default route.
pub fn resolve_interfaces(names: &[String], host_ip: Option<Ipv4Addr>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in names {
        let name = if name == AUTO_INTERFACE { auto_interface(host_ip)? } else { name.clone() };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn auto_interface(host_ip: Option<Ipv4Addr>) -> Result<String> {
    if let Some(ip) = host_ip {
        for ifaddr in getifaddrs().context("listing interface addresses")? {
            if ifaddr.address.as_ref().and_then(|a| a.as_sockaddr_in()).is_some_and(|sin| sin.ip() == ip) {
                tracing::info!(interface = %ifaddr.interface_name, %ip, "--interface auto: the interface holding --host-ip");
                return Ok(ifaddr.interface_name);
            }
        }
        bail!("--interface auto: no interface holds --host-ip {ip}");
    }
    let routes = std::fs::read_to_string("/proc/net/route").context("reading /proc/net/route")?;
    match default_route_interface(&routes) {
        Some(name) => {
            tracing::info!(interface = %name, "--interface auto: the interface of the default route");
            Ok(name)
        }
        None => bail!("--interface auto: there is no IPv4 default route (pass --host-ip or name the interface)"),
    }
}

/// The interface of the IPv4 default route with the lowest metric, from
/// the text of `/proc/net/route`.
fn default_route_interface(routes: &str) -> Option<String> {
    routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            let (iface, destination, metric, mask) = (fields.first()?, fields.get(1)?, fields.get(6)?, fields.get(7)?);
            (*destination == "00000000" && *mask == "00000000").then(|| (metric.parse::<u32>().ok(), iface.to_string()))
        })
        .min_by_key(|(metric, _)| metric.unwrap_or(u32::MAX))
        .map(|(_, iface)| iface)
}

/// Resolves `--interface` names into attachments: index and the address to
/// masquerade to (the interface's primary IPv4 address).
pub fn uplink(interface: &str) -> Result<Attachment> {
    let ifindex = if_nametoindex(interface).with_context(|| format!("--interface {interface}: no such interface"))?;
    let addresses = ipv4_addresses(interface)?;
    let Some(&snat_addr) = addresses.first() else {
        bail!("--interface {interface}: it has no IPv4 address to masquerade to");
    };
    let driver = driver(interface).with_context(|| format!("--interface {interface}: reading its driver"))?;
    Ok(Attachment { name: interface.to_string(), ifindex, snat_addr, driver })
}

/// The name of `interface`'s driver, as `ethtool -i` shows it (`veth`,
/// `mlx5_core`, `virtio_net`, …): the `ETHTOOL_GDRVINFO` ioctl. Empty for
/// devices without ethtool support (`lo`).
pub fn driver(interface: &str) -> Result<String> {
    use nix::libc;

    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    /// `struct ethtool_drvinfo` (linux/ethtool.h).
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    /// `struct ifreq` with the `ifr_data` member.
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut DrvInfo,
        _rest: [u8; 16],
    }

    let bytes = interface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        bail!("{interface:?} is not an interface name");
    }
    // SAFETY: all-zero is a valid DrvInfo (integers and byte arrays).
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: &mut info, _rest: [0; 16] };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: plain socket(2); the descriptor is owned (closed on drop) at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_INET)");
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCETHTOOL reads the ifreq and writes through ifr_data, which
    // points at `info`, alive for the call.
    let ret = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if ret < 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return Ok(String::new());
        }
        return Err(error).context("SIOCETHTOOL ETHTOOL_GDRVINFO");
    }
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(info.driver.len());
    Ok(String::from_utf8_lossy(&info.driver[..len]).into_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_with_the_lowest_metric() {
        let routes = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
            eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
            eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(routes).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn the_loopback_driver_is_named() {
        assert_eq!(driver("lo").unwrap(), "");
        assert!(driver("no-such-if0").is_err());
    }

    #[test]
    fn named_interfaces_pass_through_once() {
        let names = vec!["eth0".to_string(), "eth1".to_string(), "eth0".to_string()];
        assert_eq!(resolve_interfaces(&names, None).unwrap(), ["eth0", "eth1"]);
    }

    #[test]
    fn auto_finds_the_interface_holding_the_host_ip() {
        let names = vec![AUTO_INTERFACE.to_string()];
        assert_eq!(resolve_interfaces(&names, Some(Ipv4Addr::LOCALHOST)).unwrap(), ["lo"]);
        let err = resolve_interfaces(&names, Some(Ipv4Addr::new(203, 0, 113, 77))).unwrap_err();
        assert!(err.to_string().contains("no interface holds --host-ip 203.0.113.77"), "{err}");
    }
}
