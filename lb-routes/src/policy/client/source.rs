//! Client address ranges: `allowlist-source-range` (alias
//! `whitelist-source-range`), `denylist-source-range`, and the exemptions
//! of `limit-allowlist`.

use std::net::IpAddr;

pub use ipnet::IpNet;

/// A set of address ranges (IPv4 and IPv6 CIDRs; a single address is a
/// /32 or /128).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpRanges(Vec<IpNet>);

impl IpRanges {
    /// The ranges, host bits cleared (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn new(ranges: impl IntoIterator<Item = IpNet>) -> Self {
        Self(ranges.into_iter().map(|net| net.trunc()).collect())
    }

    /// Whether `ip` is in one of the ranges; an IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`) is taken as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ranges(&self) -> &[IpNet] {
        &self.0
    }
}

/// Which client addresses reach a route (ingress-nginx's `deny` lines,
/// then `allow` lines and `deny all`: the deny list wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceRanges {
    /// When set, only these addresses get through.
    pub allow: Option<IpRanges>,
    /// These addresses never get through.
    pub deny: Option<IpRanges>,
}

impl SourceRanges {
    /// Whether a request from `client` may proceed (else 403).
    pub fn admits(&self, client: IpAddr) -> bool {
        if self.deny.as_ref().is_some_and(|deny| deny.contains(client)) {
            return false;
        }
        self.allow.as_ref().is_none_or(|allow| allow.contains(client))
    }

    /// Whether either list is set.
    pub fn is_set(&self) -> bool {
        self.allow.is_some() || self.deny.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> IpRanges {
        IpRanges::new(list.iter().map(|s| s.parse::<IpNet>().unwrap_or_else(|_| IpNet::from(ip(s)))))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_v4_v6_and_mapped_addresses() {
        let r = ranges(&["10.1.2.3/8", "192.168.1.7/32", "2001:db8::/32"]);
        assert_eq!(r.ranges()[0].to_string(), "10.0.0.0/8");
        assert!(r.contains(ip("10.255.0.1")));
        assert!(r.contains(ip("192.168.1.7")));
        assert!(!r.contains(ip("192.168.1.8")));
        assert!(r.contains(ip("2001:db8::1")));
        assert!(!r.contains(ip("2001:db9::1")));
        // IPv4-mapped IPv6 peers are their IPv4 address.
        assert!(r.contains(ip("::ffff:10.0.0.9")));
        assert!(!r.contains(ip("::ffff:11.0.0.9")));
        // A v4 range does not match a v6 address that merely has the same bits.
        assert!(!ranges(&["0.0.0.0/0"]).contains(ip("::1")));
    }

    #[test]
    fn deny_wins_over_allow() {
        let both = SourceRanges { allow: Some(ranges(&["10.0.0.0/8"])), deny: Some(ranges(&["10.0.0.1/32"])) };
        assert!(both.admits(ip("10.0.0.2")));
        assert!(!both.admits(ip("10.0.0.1")));
        assert!(!both.admits(ip("11.0.0.1")));
        let deny_only = SourceRanges { allow: None, deny: Some(ranges(&["10.0.0.1"])) };
        assert!(deny_only.admits(ip("11.0.0.1")) && !deny_only.admits(ip("10.0.0.1")));
        assert!(SourceRanges::default().admits(ip("1.2.3.4")));
        assert!(!SourceRanges::default().is_set() && both.is_set());
    }
}
