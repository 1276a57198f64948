//! Run-time settings of the data path, validated before anything is loaded.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail, ensure};
use lb_common::{
    Config, DEFAULT_CONNTRACK_ENTRIES, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_FRONTENDS, DEFAULT_MAX_SERVICES, maglev,
};

/// An inclusive port range written `MIN-MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl FromStr for PortRange {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (min, max) = s.split_once('-').context("expected MIN-MAX, e.g. 61000-65535")?;
        let min: u16 = min.trim().parse().context("MIN is not a port number")?;
        let max: u16 = max.trim().parse().context("MAX is not a port number")?;
        ensure!(min >= 1024 && min <= max, "the range must be within 1024-65535 with MIN <= MAX");
        Ok(Self { min, max })
    }
}

impl PortRange {
    /// The widest range of ports 1024–65535 outside `ephemeral` (the node's
    /// `net.ipv4.ip_local_port_range`): masquerade ports there never collide
    /// with the node's own outgoing connections. With Linux's default
    /// 32768–60999 that is 1024–32767. `None` when the ephemeral range
    /// leaves no port free.
    pub fn outside(ephemeral: PortRange) -> Option<PortRange> {
        let below = (ephemeral.min > 1024).then(|| PortRange { min: 1024, max: ephemeral.min - 1 });
        let above = (ephemeral.max < u16::MAX).then(|| PortRange { min: ephemeral.max + 1, max: u16::MAX });
        [below, above].into_iter().flatten().max_by_key(PortRange::port_count)
    }

    /// The number of ports in the range.
    pub fn port_count(&self) -> u32 {
        u32::from(self.max) - u32::from(self.min) + 1
    }

    /// Parses `net.ipv4.ip_local_port_range` as the kernel prints it
    /// (`32768\t60999`).
    pub fn from_sysctl(text: &str) -> anyhow::Result<PortRange> {
        let mut fields = text.split_whitespace().map(str::parse::<u16>);
        match (fields.next(), fields.next(), fields.next()) {
            (Some(Ok(min)), Some(Ok(max)), None) if min <= max => Ok(PortRange { min, max }),
            _ => bail!("unexpected ip_local_port_range {text:?}"),
        }
    }
}

/// Where the kernel shows this network namespace's ephemeral port range.
pub const EPHEMERAL_RANGE_SYSCTL: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The masquerade ports used when `--snat-port-range` is not given: the
/// widest range outside this network namespace's ephemeral ports, else
/// (unreadable, or no port left) `lb_common`'s 61000–65535 with the reason.
pub fn default_snat_ports() -> (PortRange, Option<String>) {
    let config = Config::default();
    let fallback = PortRange { min: config.snat_port_min, max: config.snat_port_max };
    let ephemeral = std::fs::read_to_string(EPHEMERAL_RANGE_SYSCTL)
        .map_err(anyhow::Error::from)
        .and_then(|text| PortRange::from_sysctl(&text));
    match ephemeral {
        Ok(ephemeral) => match PortRange::outside(ephemeral) {
            Some(range) => (range, None),
            None => (fallback, Some(format!("ip_local_port_range {ephemeral} leaves no port for masquerading"))),
        },
        Err(e) => (fallback, Some(format!("cannot read {EPHEMERAL_RANGE_SYSCTL}: {e:#}"))),
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneSettings {
    pub maglev_table_size: u32,
    pub max_services: u32,
    /// `FRONTENDS` capacity: every (address, port, protocol) on which a
    /// service port is offered, for XDP and for the sockets.
    pub max_frontends: u32,
    /// `BACKENDS` capacity: one entry per service port and endpoint.
    pub max_backends: u32,
    pub conntrack_entries: u32,
    pub snat_ports: PortRange,
    pub tcp_timeout_s: u32,
    pub tcp_closing_timeout_s: u32,
    pub udp_timeout_s: u32,
    /// Where XDP leaves its notes for TC on uplinks finished by TC.
    pub handoff: HandoffTransport,
}

/// Where `lb_xdp` leaves the note for `lb_tc_ingress` on a frame it hands
/// over (see `lb-ebpf/src/transmit.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HandoffTransport {
    /// In the frame's XDP metadata when the kernel allows
    /// `bpf_xdp_adjust_meta`, else in the `HANDOFFS` map.
    #[default]
    Auto,
    Metadata,
    Map,
}

impl Default for DataplaneSettings {
    fn default() -> Self {
        let config = Config::default();
        Self {
            maglev_table_size: maglev::DEFAULT_TABLE_SIZE,
            max_services: DEFAULT_MAX_SERVICES,
            max_frontends: DEFAULT_MAX_FRONTENDS,
            max_backends: DEFAULT_MAX_BACKENDS,
            conntrack_entries: DEFAULT_CONNTRACK_ENTRIES,
            snat_ports: PortRange { min: config.snat_port_min, max: config.snat_port_max },
            tcp_timeout_s: config.tcp_timeout_s,
            tcp_closing_timeout_s: config.tcp_closing_timeout_s,
            udp_timeout_s: config.udp_timeout_s,
            handoff: HandoffTransport::Auto,
        }
    }
}

impl DataplaneSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !maglev::is_prime(self.maglev_table_size) {
            bail!("--maglev-table-size {} is not a prime number", self.maglev_table_size);
        }
        ensure!(self.max_services >= 1, "--max-services must be at least 1");
        let slots = u64::from(self.maglev_table_size) * u64::from(self.max_services);
        ensure!(
            slots <= u64::from(u32::MAX),
            "--max-services × --maglev-table-size ({slots}) exceeds the 2^32 Maglev slots a map can index"
        );
        ensure!(self.max_frontends >= 1, "--max-frontends must be at least 1");
        ensure!(self.max_backends >= 1, "--max-backends must be at least 1");
        ensure!(self.conntrack_entries >= 1024, "--conntrack-entries must be at least 1024");
        Ok(())
    }

    /// Total Maglev slots (`MAGLEV` array size).
    pub fn maglev_slots(&self) -> u32 {
        self.maglev_table_size * self.max_services
    }

    /// The kernel-side view (`CONFIG[0]`).
    pub fn kernel_config(&self) -> Config {
        Config {
            maglev_size: self.maglev_table_size,
            max_services: self.max_services,
            snat_port_min: self.snat_ports.min,
            snat_port_max: self.snat_ports.max,
            tcp_timeout_s: self.tcp_timeout_s,
            tcp_closing_timeout_s: self.tcp_closing_timeout_s,
            udp_timeout_s: self.udp_timeout_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_parses_and_rejects() {
        assert_eq!("61000-65535".parse::<PortRange>().unwrap(), PortRange { min: 61000, max: 65535 });
        for bad in ["", "61000", "a-b", "65535-61000", "80-90", "61000-70000"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn the_default_masquerade_range_is_the_widest_gap_around_the_ephemeral_ports() {
        let range = |min, max| PortRange { min, max };
        // Linux's default ephemeral range leaves 1024-32767 and 61000-65535.
        assert_eq!(PortRange::outside(range(32768, 60999)), Some(range(1024, 32767)));
        assert_eq!(PortRange::outside(range(1024, 49999)), Some(range(50000, 65535)));
        assert_eq!(PortRange::outside(range(5000, 65535)), Some(range(1024, 4999)));
        assert_eq!(PortRange::outside(range(1024, 65535)), None);
        assert_eq!(PortRange::outside(range(1, 65535)), None);
        assert_eq!(range(1024, 32767).port_count(), 31_744);
    }

    #[test]
    fn the_ephemeral_range_is_read_as_the_kernel_prints_it() {
        assert_eq!(PortRange::from_sysctl("32768\t60999\n").unwrap(), PortRange { min: 32768, max: 60999 });
        for bad in ["", "32768", "a\tb", "60999\t32768", "1 2 3"] {
            assert!(PortRange::from_sysctl(bad).is_err(), "{bad:?} should be rejected");
        }
        // This machine's own value parses and leaves a range to use.
        let (range, problem) = default_snat_ports();
        assert_eq!(problem, None, "{range}");
    }

    #[test]
    fn settings_are_validated() {
        assert!(DataplaneSettings::default().validate().is_ok());
        let not_prime = DataplaneSettings { maglev_table_size: 16380, ..Default::default() };
        assert!(not_prime.validate().unwrap_err().to_string().contains("not a prime"));
        let too_many = DataplaneSettings { max_services: 1 << 20, ..Default::default() };
        assert!(too_many.validate().is_err());
        let no_backends = DataplaneSettings { max_backends: 0, ..Default::default() };
        assert!(no_backends.validate().unwrap_err().to_string().contains("--max-backends"));
    }
}
