//! Hosts: normalising the request's `Host` / `:authority` and Ingress host
//! patterns.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The longest DNS name (RFC 1035), without the trailing dot.
const MAX_NAME_LEN: usize = 253;
/// The longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

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
    ///
    /// As the Kubernetes API validates `spec.rules[].host`: a DNS-1123
    /// subdomain (labels of `a-z`, `0-9` and `-`, not starting or ending
    /// with `-`), optionally preceded by `*.`; not an IP address. Uppercase
    /// letters are accepted and lowercased (hosts compare case-insensitively),
    /// and one trailing dot is ignored.
    pub fn parse(host: &str) -> Option<Self> {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if let Some(suffix) = host.strip_prefix("*.") {
            return is_dns_name(suffix).then(|| HostPattern::Wildcard(suffix.to_string()));
        }
        if host.parse::<Ipv4Addr>().is_ok() {
            return None;
        }
        is_dns_name(&host).then_some(HostPattern::Exact(host))
    }

    /// Whether `host` (already [normalised](normalize_host)) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::Wildcard(suffix) => wildcard_suffix(host) == Some(suffix.as_str()),
        }
    }

    /// The name as stored: `a.com` for `a.com`, `foo.com` for `*.foo.com`.
    pub fn name(&self) -> &str {
        match self {
            HostPattern::Exact(name) | HostPattern::Wildcard(name) => name,
        }
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

/// The suffix a wildcard pattern must have to match `host`: everything
/// after the first label (`foo.com` for `bar.foo.com`). `None` for a
/// single-label host, which no wildcard matches.
pub(crate) fn wildcard_suffix(host: &str) -> Option<&str> {
    let (label, suffix) = host.split_once('.')?;
    (!label.is_empty() && !suffix.is_empty()).then_some(suffix)
}

/// A DNS-1123 subdomain: dot-separated labels of lowercase letters, digits
/// and `-`, each 1 to 63 long and not starting or ending with `-`.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The host part of a `Host` header or `:authority` (or TLS SNI name):
/// without port, without trailing dot, lowercase. IPv6 literals keep their
/// brackets. `None` when the value is not a plausible host. Borrowed from
/// `authority` when only a port or trailing dot goes (the usual request:
/// no copy).
///
/// Plausible: a bracketed IPv6 address (written back in its canonical
/// form, `[::1]`), or dot-separated non-empty labels of letters, digits,
/// `-` and `_` (underscores appear in real-world names). A port, when
/// present, is 0 to 5 digits (`a.com:` is allowed, as RFC 3986 allows).
/// Userinfo (`user@host`), spaces, slashes and percent-encodings are not.
pub fn normalize_host(authority: &str) -> Option<Cow<'_, str>> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (literal, after) = rest.split_once(']')?;
        if !valid_port(after) {
            return None;
        }
        let address: Ipv6Addr = literal.parse().ok()?;
        return Some(Cow::Owned(format!("[{address}]")));
    }
    let (host, port) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
    if !valid_port(port) {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let plausible = !host.is_empty()
        && host.len() <= MAX_NAME_LEN
        && host.split('.').all(|label| {
            !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    plausible.then(|| {
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        }
    })
}

/// What may follow the host: nothing, or `:` and at most five digits.
fn valid_port(rest: &str) -> bool {
    match rest.strip_prefix(':') {
        None => rest.is_empty(),
        Some(port) => port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_and_wildcard_hosts() {
        assert_eq!(HostPattern::parse("a.com"), Some(HostPattern::Exact("a.com".into())));
        assert_eq!(HostPattern::parse("Foo.Bar.COM."), Some(HostPattern::Exact("foo.bar.com".into())));
        assert_eq!(HostPattern::parse("localhost"), Some(HostPattern::Exact("localhost".into())));
        assert_eq!(HostPattern::parse("*.foo.com"), Some(HostPattern::Wildcard("foo.com".into())));
        assert_eq!(HostPattern::parse("*.foo.com").unwrap().to_string(), "*.foo.com");
        assert_eq!(HostPattern::parse("x-1.a-b.io").unwrap().name(), "x-1.a-b.io");
    }

    #[test]
    fn rejects_invalid_hosts() {
        for host in [
            "",
            "*",
            "*.",
            "a.*.com",
            "*foo.com",
            "foo..com",
            ".foo.com",
            "-a.com",
            "a-.com",
            "a_b.com",
            "a.com:80",
            "a com",
            "a/b",
            "user@a.com",
            "10.0.0.1",
            "[::1]",
            &"a".repeat(64),
            &format!("{}.com", vec!["a".repeat(60); 5].join(".")),
        ] {
            assert_eq!(HostPattern::parse(host), None, "{host:?}");
        }
    }

    #[test]
    fn exact_pattern_matches_the_same_name_only() {
        let pattern = HostPattern::parse("a.com").unwrap();
        assert!(pattern.matches("a.com"));
        assert!(!pattern.matches("b.a.com"));
        assert!(!pattern.matches("a.co"));
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let pattern = HostPattern::parse("*.foo.com").unwrap();
        assert!(pattern.matches("bar.foo.com"));
        assert!(pattern.matches("x-1.foo.com"));
        assert!(!pattern.matches("foo.com"));
        assert!(!pattern.matches("a.bar.foo.com"));
        assert!(!pattern.matches(".foo.com"));
        assert!(!pattern.matches("barfoo.com"));
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("A.com").as_deref(), Some("a.com"));
        assert!(matches!(normalize_host("a.com:8080"), Some(Cow::Borrowed("a.com"))));
        assert_eq!(normalize_host("a.com:8080").as_deref(), Some("a.com"));
        assert_eq!(normalize_host("a.com.").as_deref(), Some("a.com"));
        assert_eq!(normalize_host("a.com.:443").as_deref(), Some("a.com"));
        assert_eq!(normalize_host("a.com:").as_deref(), Some("a.com"));
        assert_eq!(normalize_host("my_host.local").as_deref(), Some("my_host.local"));
        assert_eq!(normalize_host("10.0.0.1:80").as_deref(), Some("10.0.0.1"));
        assert_eq!(normalize_host("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("[2001:DB8:0::1]:443").as_deref(), Some("[2001:db8::1]"));
    }

    #[test]
    fn rejects_implausible_hosts() {
        for authority in [
            "",
            ":80",
            ".",
            "a b",
            " a.com",
            "a/b",
            "user@a.com",
            "a..com",
            ".a.com",
            "a.com:http",
            "a.com:123456",
            "a.com:80:80",
            "a%2ecom",
            "[::1",
            "[::1]x",
            "[::1]:x",
            "[nope]",
            "::1",
            "a\0b",
        ] {
            assert_eq!(normalize_host(authority), None, "{authority:?}");
        }
    }
}
