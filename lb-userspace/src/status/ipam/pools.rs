//! Address pools: the validated, typed form of the configuration's
//! `addressPools` (see [`crate::config`]), and their address arithmetic.
//!
//! Ranges are kept as their two ends and walked lazily, so a `/8` pool
//! costs two addresses, not sixteen million.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::selector::Selector;

/// A pool of addresses for Services of type LoadBalancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPool {
    /// A DNS-1123 label, unique among the pools; what the
    /// [`POOL_ANNOTATION`](super::POOL_ANNOTATION) names.
    pub name: String,
    /// Disjoint ranges (the configuration checks it).
    pub ranges: Vec<AddressRange>,
    /// Whether Services that neither name a pool nor request an address
    /// get addresses from this pool.
    pub auto_assign: bool,
    /// Never hand out addresses ending in `.0` or `.255`, which some
    /// equipment mistakes for network or broadcast addresses.
    pub avoid_buggy_ips: bool,
    /// MetalLB's `serviceAllocation`: the pool serves only the Services it
    /// admits, before the pools without one. `None`: any Service.
    pub allocation: Option<ServiceAllocation>,
}

/// Which Services may draw from a pool, and its priority among the pools
/// a Service may draw from (MetalLB's `spec.serviceAllocation`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceAllocation {
    /// Lower first; `None` (MetalLB's 0) after every prioritised pool.
    pub priority: Option<u32>,
    /// With `namespace_selectors`: the namespaces admitted (both empty:
    /// every namespace).
    pub namespaces: BTreeSet<String>,
    pub namespace_selectors: Vec<Selector>,
    /// Empty: every Service of an admitted namespace.
    pub service_selectors: Vec<Selector>,
}

impl ServiceAllocation {
    /// Whether a Service in `namespace` (labelled `namespace_labels`) with
    /// `labels` may draw from the pool.
    pub fn admits(
        &self,
        namespace: &str,
        namespace_labels: Option<&BTreeMap<String, String>>,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        let by_namespace = (self.namespaces.is_empty() && self.namespace_selectors.is_empty())
            || self.namespaces.contains(namespace)
            || namespace_labels.is_some_and(|ns| self.namespace_selectors.iter().any(|s| s.matches(ns)));
        by_namespace && (self.service_selectors.is_empty() || self.service_selectors.iter().any(|s| s.matches(labels)))
    }
}

impl AddressPool {
    /// Whether the pool may hand out `ip`: it is in one of the ranges and
    /// not avoided as a buggy address.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.usable(ip) && self.ranges.iter().any(|range| range.contains(ip))
    }

    /// The addresses the pool may hand out, in ascending order, computed as
    /// they are walked.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.addresses_from(Ipv4Addr::UNSPECIFIED)
    }

    /// [`Self::addresses`] from `start` on.
    pub fn addresses_from(&self, start: Ipv4Addr) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let mut ranges: Vec<AddressRange> = self
            .ranges
            .iter()
            .filter(|range| range.last >= start)
            .map(|range| AddressRange { first: range.first.max(start), last: range.last })
            .collect();
        ranges.sort();
        ranges.into_iter().flat_map(|range| range.iter()).filter(|&ip| self.usable(ip))
    }

    /// The lowest address of the pool, from `start` on, for which `taken` is
    /// false.
    pub fn lowest_free(&self, start: Ipv4Addr, taken: impl Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
        self.addresses_from(start).find(|&ip| !taken(ip))
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        !(self.avoid_buggy_ips && is_buggy(ip))
    }
}

/// Whether `ip` ends in `.0` or `.255` (see [`AddressPool::avoid_buggy_ips`]).
pub fn is_buggy(ip: Ipv4Addr) -> bool {
    matches!(ip.octets()[3], 0 | 255)
}

/// The addresses from `first` to `last`, both included. A CIDR is its
/// whole block, network and broadcast addresses included (as in MetalLB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl AddressRange {
    /// The range of one address.
    pub fn single(ip: Ipv4Addr) -> Self {
        Self { first: ip, last: ip }
    }

    /// The block `network/prefix_len`; `None` when the prefix length is
    /// over 32 or `network` has bits set after it.
    pub fn cidr(network: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        let host_mask = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
        let first = u32::from(network);
        (prefix_len <= 32 && first & host_mask == 0).then(|| Self { first: network, last: (first | host_mask).into() })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&ip)
    }

    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// How many addresses the range holds (2³² for `0.0.0.0/0`).
    pub fn size(&self) -> u64 {
        u64::from(u32::from(self.last)) - u64::from(u32::from(self.first)) + 1
    }

    /// The addresses in ascending order, computed as they are walked.
    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }

    /// The prefix length if the range is exactly a CIDR block.
    fn prefix_len(&self) -> Option<u8> {
        let size = self.size();
        let prefix_len = 32 - u8::try_from(size.trailing_zeros()).ok()?;
        (size.is_power_of_two() && Self::cidr(self.first, prefix_len) == Some(*self)).then_some(prefix_len)
    }
}

/// Parses a configuration entry: a CIDR (`192.168.1.240/28`), a range
/// (`192.168.1.250-192.168.1.254`) or a single address (`192.168.1.9`).
impl FromStr for AddressRange {
    type Err = RangeError;

    fn from_str(text: &str) -> Result<Self, RangeError> {
        if text.contains(':') {
            return Err(RangeError::Ipv6);
        }
        let address = |text: &str| text.trim().parse::<Ipv4Addr>().map_err(|_| RangeError::Syntax);
        if let Some((network, prefix_len)) = text.split_once('/') {
            let network = address(network)?;
            let prefix_len: u8 = prefix_len.trim().parse().map_err(|_| RangeError::Syntax)?;
            if prefix_len > 32 {
                return Err(RangeError::PrefixTooLong(prefix_len));
            }
            return Self::cidr(network, prefix_len).ok_or_else(|| {
                let host_mask = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
                RangeError::HostBits(Ipv4Addr::from(u32::from(network) & !host_mask), prefix_len)
            });
        }
        if let Some((first, last)) = text.split_once('-') {
            let (first, last) = (address(first)?, address(last)?);
            return if first <= last { Ok(Self { first, last }) } else { Err(RangeError::Reversed) };
        }
        address(text).map(Self::single)
    }
}

/// Shown the way the configuration writes it: `a/n` for a CIDR block, `a`
/// for one address, `a-b` otherwise.
impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix_len() {
            Some(32) => write!(f, "{}", self.first),
            Some(prefix_len) => write!(f, "{}/{prefix_len}", self.first),
            None => write!(f, "{}-{}", self.first, self.last),
        }
    }
}

/// Why a configuration entry is not an [`AddressRange`]. Each message
/// reads after the entry itself: `"10.0.0.0/33" has a prefix length over 32`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("is not an IPv4 address, CIDR or range")]
    Syntax,
    #[error("is IPv6: IPv6 is not supported yet")]
    Ipv6,
    #[error("has a prefix length of {0}, more than 32")]
    PrefixTooLong(u8),
    #[error("has bits set after the prefix length (the block is {0}/{1})")]
    HostBits(Ipv4Addr, u8),
    #[error("starts after it ends")]
    Reversed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> AddressRange {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn pool(ranges: &[&str], avoid_buggy_ips: bool) -> AddressPool {
        let ranges = ranges.iter().map(|r| range(r)).collect();
        AddressPool { name: "lan".into(), ranges, auto_assign: true, avoid_buggy_ips, allocation: None }
    }

    #[test]
    fn parses_cidrs_ranges_and_single_addresses() {
        let r = range("192.168.1.240/28");
        assert_eq!((r.first, r.last, r.size()), (ip("192.168.1.240"), ip("192.168.1.255"), 16));
        let r = range("192.168.1.250-192.168.1.254");
        assert_eq!((r.first, r.last, r.size()), (ip("192.168.1.250"), ip("192.168.1.254"), 5));
        assert_eq!(range("10.0.0.1 - 10.0.0.3"), range("10.0.0.1-10.0.0.3"));
        assert_eq!(range("192.168.1.9"), AddressRange::single(ip("192.168.1.9")));
        assert_eq!(range("192.168.1.9/32"), AddressRange::single(ip("192.168.1.9")));
        assert_eq!(range("0.0.0.0/0").size(), 1 << 32);
    }

    #[test]
    fn rejects_bad_entries() {
        let error = |text: &str| text.parse::<AddressRange>().unwrap_err();
        assert_eq!(error("192.168.1.300/24"), RangeError::Syntax);
        assert_eq!(error("192.168.1.0/x"), RangeError::Syntax);
        assert_eq!(error("lan"), RangeError::Syntax);
        assert_eq!(error(""), RangeError::Syntax);
        assert_eq!(error("fd00::/64"), RangeError::Ipv6);
        assert_eq!(error("10.0.0.0/33"), RangeError::PrefixTooLong(33));
        assert_eq!(error("10.0.0.5/24"), RangeError::HostBits(ip("10.0.0.0"), 24));
        assert_eq!(error("10.0.0.9-10.0.0.1"), RangeError::Reversed);
        assert_eq!(error("10.0.0.0/33").to_string(), "has a prefix length of 33, more than 32");
    }

    #[test]
    fn displays_as_written() {
        for text in ["10.0.0.0/8", "192.168.1.240/28", "192.168.1.9", "10.0.0.1-10.0.0.3", "0.0.0.0/0"] {
            assert_eq!(range(text).to_string(), text);
        }
        assert_eq!(range("10.0.0.0-10.0.0.255").to_string(), "10.0.0.0/24");
        assert_eq!(range("10.0.0.1-10.0.0.2").to_string(), "10.0.0.1-10.0.0.2");
    }

    #[test]
    fn contains_and_overlaps() {
        let r = range("10.0.0.0/30");
        assert!(r.contains(ip("10.0.0.0")) && r.contains(ip("10.0.0.3")));
        assert!(!r.contains(ip("10.0.0.4")) && !r.contains(ip("9.255.255.255")));
        assert!(r.overlaps(&range("10.0.0.3-10.0.0.9")));
        assert!(range("10.0.0.3-10.0.0.9").overlaps(&r));
        assert!(!r.overlaps(&range("10.0.0.4/30")));
    }

    #[test]
    fn walks_the_ranges_in_ascending_order() {
        let p = pool(&["10.0.0.9", "10.0.0.1-10.0.0.2"], false);
        assert_eq!(p.addresses().collect::<Vec<_>>(), [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.9")]);
        assert_eq!(p.addresses_from(ip("10.0.0.2")).collect::<Vec<_>>(), [ip("10.0.0.2"), ip("10.0.0.9")]);
        assert_eq!(p.addresses_from(ip("10.0.0.10")).count(), 0);
        assert_eq!(range("255.255.255.254/31").iter().count(), 2);
    }

    #[test]
    fn avoids_buggy_addresses_when_asked() {
        let p = pool(&["10.0.0.255-10.0.1.1"], true);
        assert_eq!(p.addresses().collect::<Vec<_>>(), [ip("10.0.1.1")]);
        assert!(!p.contains(ip("10.0.1.0")) && p.contains(ip("10.0.1.1")));
        let p = pool(&["10.0.0.255-10.0.1.1"], false);
        assert_eq!(p.addresses().count(), 3);
        assert!(p.contains(ip("10.0.1.0")));
    }

    #[test]
    fn a_slash_8_is_walked_lazily() {
        let p = pool(&["10.0.0.0/8"], false);
        let start = std::time::Instant::now();
        assert_eq!(p.addresses().nth(1_000), Some(ip("10.0.3.232")));
        assert_eq!(p.lowest_free(Ipv4Addr::UNSPECIFIED, |ip| ip < Ipv4Addr::new(10, 0, 2, 0)), Some(ip("10.0.2.0")));
        assert_eq!(p.lowest_free(ip("10.200.0.0"), |_| false), Some(ip("10.200.0.0")));
        assert!(p.contains(ip("10.255.255.255")));
        assert!(start.elapsed().as_millis() < 100);
    }
}
