//! Hosts: normalising the request's `Host` / `:authority` and Ingress host
//! patterns.

use std::fmt;

/// An Ingress rule's `host`: an exact name, or `*.` and a suffix, where the
/// `*` stands for exactly one DNS label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// `a.com` (lowercase, no trailing dot).
    Exact(String),
    /// `*.foo.com`, stored as `foo.com`.
    Wildcard(String),
}

impl HostPattern {
    /// Parses an Ingress rule host. `None` when it is not a valid DNS name
    /// or wildcard (the compiler diagnoses it).
    pub fn parse(host: &str) -> Option<Self> {
        todo!("{host}")
    }

    /// Whether `host` (already [normalised](normalize_host)) matches.
    pub fn matches(&self, host: &str) -> bool {
        todo!("{host}")
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(host) => f.write_str(host),
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// The host part of a `Host` header or `:authority` (or TLS SNI name):
/// without port, without trailing dot, lowercase. IPv6 literals keep their
/// brackets. `None` when the value is not a plausible host.
pub fn normalize_host(authority: &str) -> Option<String> {
    todo!("{authority}")
}
