//! `allowlist-source-range` (alias `whitelist-source-range`),
//! `denylist-source-range`, `limit-rps`, `limit-rpm`, `limit-connections`,
//! `limit-burst-multiplier`, `limit-allowlist` (alias `limit-whitelist`),
//! `enable-cors` and `cors-*`.
//!
//! Where ingress-nginx skips a bad item (an origin, a method) and goes on,
//! the Ingress is rejected here: a half-understood access rule is not
//! served.

use std::num::NonZeroU32;

use lb_routes::ClientPolicy;
use lb_routes::policy::{
    AllowedOrigins, Cors, CorsSpec, CorsToken, DEFAULT_BURST_MULTIPLIER, DEFAULT_CORS_MAX_AGE, IpNet, IpRanges, Limits,
    OriginPattern, RateLimit, RatePeriod, SourceRanges,
};

use super::{Rejection, Values, shorten};

/// The annotations parsed here (names without the prefix).
pub(super) const NAMES: &[&str] = &[
    ALLOWLIST,
    WHITELIST,
    DENYLIST,
    "limit-rps",
    "limit-rpm",
    "limit-connections",
    "limit-burst-multiplier",
    LIMIT_ALLOWLIST,
    LIMIT_WHITELIST,
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-allow-credentials",
    "cors-expose-headers",
    "cors-max-age",
];

const ALLOWLIST: &str = "allowlist-source-range";
/// ingress-nginx's older name; `allowlist-source-range` wins when both are set.
const WHITELIST: &str = "whitelist-source-range";
const DENYLIST: &str = "denylist-source-range";
const LIMIT_ALLOWLIST: &str = "limit-allowlist";
/// ingress-nginx's older name; `limit-allowlist` wins when both are set.
const LIMIT_WHITELIST: &str = "limit-whitelist";

/// The largest `limit-rps`, `limit-rpm` and `limit-connections` accepted.
const MAX_LIMIT: u32 = 1_000_000;
/// The largest `limit-burst-multiplier` accepted.
const MAX_BURST_MULTIPLIER: u32 = 1_000;

pub(super) fn parse(values: &Values<'_>) -> Result<ClientPolicy, Rejection> {
    Ok(ClientPolicy { source: source_ranges(values)?, limits: limits(values)?, cors: cors(values)? })
}

fn source_ranges(values: &Values<'_>) -> Result<SourceRanges, Rejection> {
    let allowlist = values.parsed(ALLOWLIST, parse_ranges)?;
    let whitelist = values.parsed(WHITELIST, parse_ranges)?;
    Ok(SourceRanges { allow: allowlist.or(whitelist), deny: values.parsed(DENYLIST, parse_ranges)? })
}

fn limits(values: &Values<'_>) -> Result<Option<Limits>, Rejection> {
    let limit = |name| values.parsed(name, |v| parse_count(v, MAX_LIMIT));
    let (rps, rpm, connections) = (limit("limit-rps")?, limit("limit-rpm")?, limit("limit-connections")?);
    let multiplier = values
        .parsed("limit-burst-multiplier", |v| parse_count(v, MAX_BURST_MULTIPLIER))?
        .unwrap_or(DEFAULT_BURST_MULTIPLIER);
    let allowlist = values.parsed(LIMIT_ALLOWLIST, parse_ranges)?;
    let whitelist = values.parsed(LIMIT_WHITELIST, parse_ranges)?;
    // 0 means no limit (ingress-nginx).
    let rate =
        |count: Option<u32>, period| count.and_then(NonZeroU32::new).map(|n| RateLimit::new(n, period, multiplier));
    let limits = Limits {
        rps: rate(rps, RatePeriod::Second),
        rpm: rate(rpm, RatePeriod::Minute),
        connections: connections.and_then(NonZeroU32::new),
        exempt: allowlist.or(whitelist).unwrap_or_default(),
    };
    let any = limits.rps.is_some() || limits.rpm.is_some() || limits.connections.is_some();
    Ok(any.then_some(limits))
}

fn cors(values: &Values<'_>) -> Result<Option<Cors>, Rejection> {
    let enabled = values.boolean("enable-cors")?.unwrap_or(false);
    // The cors-* values are checked even without enable-cors.
    let defaults = CorsSpec::default();
    let spec = CorsSpec {
        origins: values.parsed("cors-allow-origin", parse_origins)?.unwrap_or(defaults.origins),
        methods: values.parsed("cors-allow-methods", |v| tokens(v, CorsToken::method))?.unwrap_or(defaults.methods),
        headers: values.parsed("cors-allow-headers", |v| tokens(v, CorsToken::header))?.unwrap_or(defaults.headers),
        expose: values.parsed("cors-expose-headers", |v| tokens(v, CorsToken::exposed))?.unwrap_or_default(),
        credentials: values.boolean("cors-allow-credentials")?.unwrap_or(true),
        max_age: values.seconds("cors-max-age")?.unwrap_or(DEFAULT_CORS_MAX_AGE),
    };
    Ok(enabled.then(|| Cors::new(spec)))
}

/// The items of a comma-separated list, trimmed of spaces and tabs; a
/// trailing comma is allowed, an empty item is not.
fn items(value: &str) -> Result<Vec<&str>, String> {
    let trimmed = value.trim_matches([' ', '\t']);
    let list = trimmed.strip_suffix(',').unwrap_or(trimmed);
    let items: Vec<&str> = list.split(',').map(|item| item.trim_matches([' ', '\t'])).collect();
    if items.iter().any(|item| item.is_empty()) {
        return Err(format!("{:?} has an empty item (a comma-separated list is expected)", shorten(value)));
    }
    Ok(items)
}

/// Comma-separated CIDRs or single addresses, IPv4 or IPv6.
fn parse_ranges(value: &str) -> Result<IpRanges, String> {
    let ranges = items(value)?
        .into_iter()
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{:?} is not an IP address or CIDR", shorten(item)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IpRanges::new(ranges))
}

/// A non-negative integer up to `max`.
fn parse_count(value: &str, max: u32) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("{:?} is not a whole number from 0 to {max}", shorten(value))),
    }
}

/// `*`, or comma-separated origins (`*` among them means any origin, as in
/// ingress-nginx).
fn parse_origins(value: &str) -> Result<AllowedOrigins, String> {
    let items = items(value)?;
    if items.contains(&"*") {
        return Ok(AllowedOrigins::Any);
    }
    let patterns = items
        .into_iter()
        .map(|item| OriginPattern::parse(item).map_err(|e| format!("{:?}: {e}", shorten(item))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AllowedOrigins::List(patterns))
}

fn tokens(value: &str, token: impl Fn(&str) -> Result<CorsToken, String>) -> Result<Vec<CorsToken>, String> {
    items(value)?.into_iter().map(|item| token(item).map_err(|e| format!("{:?}: {e}", shorten(item)))).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use lb_routes::policy::DEFAULT_CORS_METHODS;

    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<ClientPolicy, String> {
        let values = Values(pairs.iter().copied().collect::<BTreeMap<_, _>>());
        parse(&values).map_err(|r| format!("{}: {}", r.field, r.reason))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nothing_set_is_the_default() {
        assert_eq!(policy(&[]).unwrap(), ClientPolicy::default());
    }

    #[test]
    fn source_ranges_and_aliases() {
        let p =
            policy(&[(WHITELIST, " 10.0.0.0/8 ,192.168.1.1, 2001:db8::/32,\t::1 "), (DENYLIST, "10.0.0.1")]).unwrap();
        let allow = p.source.allow.as_ref().unwrap();
        assert_eq!(allow.ranges().len(), 4);
        assert!(p.source.admits(ip("10.2.3.4")) && p.source.admits(ip("::1")) && p.source.admits(ip("2001:db8::5")));
        assert!(!p.source.admits(ip("10.0.0.1")), "the deny list wins");
        assert!(!p.source.admits(ip("11.0.0.1")));
        // The current name wins over the old one.
        let p = policy(&[(ALLOWLIST, "1.1.1.1"), (WHITELIST, "2.2.2.2")]).unwrap();
        assert!(p.source.admits(ip("1.1.1.1")) && !p.source.admits(ip("2.2.2.2")));
        // A trailing comma is fine.
        assert!(policy(&[(DENYLIST, "1.1.1.1,")]).is_ok());
    }

    #[test]
    fn bad_ranges_reject_naming_the_annotation() {
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0",
            "a.com",
            "10.0.0.1,,10.0.0.2",
            "10.0.0.1\n",
            "10.0.0.1;",
            "{10.0.0.1}",
            "\"1.1.1.1\"",
        ] {
            for name in [ALLOWLIST, WHITELIST, DENYLIST, LIMIT_ALLOWLIST, LIMIT_WHITELIST] {
                let e = policy(&[(name, bad)]).unwrap_err();
                assert!(e.contains(&format!("nginx.ingress.kubernetes.io/{name}]")), "{name} {bad:?}: {e}");
            }
        }
        // Even the alias that would lose is checked.
        assert!(policy(&[(ALLOWLIST, "1.1.1.1"), (WHITELIST, "x")]).is_err());
    }

    #[test]
    fn limits_as_ingress_nginx() {
        assert_eq!(policy(&[("limit-rps", "0"), ("limit-burst-multiplier", "3")]).unwrap().limits, None);
        let p = policy(&[("limit-rps", "2"), ("limit-rpm", "30"), (LIMIT_WHITELIST, "10.0.0.0/8")]).unwrap();
        let limits = p.limits.unwrap();
        let rps = limits.rps.unwrap();
        assert_eq!((rps.rate.get(), rps.period, rps.burst), (2, RatePeriod::Second, 10));
        let rpm = limits.rpm.unwrap();
        assert_eq!((rpm.rate.get(), rpm.period, rpm.burst), (30, RatePeriod::Minute, 150));
        assert!(limits.connections.is_none());
        assert!(limits.exempt.contains(ip("10.9.9.9")));
        let p = policy(&[("limit-connections", "3"), ("limit-burst-multiplier", "1")]).unwrap();
        assert_eq!(p.limits.unwrap().connections.unwrap().get(), 3);
        let p = policy(&[("limit-rps", "4"), ("limit-burst-multiplier", "0")]).unwrap();
        assert_eq!(p.limits.unwrap().rps.unwrap().capacity().get(), 1);
    }

    #[test]
    fn bad_limits_reject() {
        for name in ["limit-rps", "limit-rpm", "limit-connections", "limit-burst-multiplier"] {
            for bad in ["-1", "1.5", "x", "", "1000001", "99999999999", "1;", "{1}"] {
                let e = policy(&[(name, bad)]).unwrap_err();
                assert!(e.contains(name) && e.contains("whole number"), "{name} {bad:?}: {e}");
            }
        }
        assert!(policy(&[("limit-burst-multiplier", "1001")]).is_err());
    }

    #[test]
    fn cors_defaults_are_ingress_nginx_s() {
        assert!(policy(&[("cors-allow-origin", "https://a.com")]).unwrap().cors.is_none(), "needs enable-cors");
        let cors = policy(&[("enable-cors", "true")]).unwrap().cors.unwrap();
        assert_eq!(cors.origins(), &AllowedOrigins::Any);
        assert_eq!(cors.allow_methods(), &DEFAULT_CORS_METHODS.join(", "));
        assert!(cors.credentials());
        assert_eq!(cors.max_age(), "1728000");
        assert!(cors.expose_headers().is_none());
    }

    #[test]
    fn cors_values() {
        let cors = policy(&[
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://a.com, https://*.b.com:8443"),
            ("cors-allow-methods", "GET,POST"),
            ("cors-allow-headers", "X-Custom, Content-Type"),
            ("cors-expose-headers", "X-Total, *"),
            ("cors-allow-credentials", "false"),
            ("cors-max-age", "600"),
        ])
        .unwrap()
        .cors
        .unwrap();
        assert!(cors.origins().allows(Some("https://a.com")));
        assert!(cors.origins().allows(Some("https://x.b.com:8443")));
        assert!(!cors.origins().allows(Some("https://x.b.com")));
        assert_eq!(cors.allow_methods(), "GET, POST");
        assert_eq!(cors.allow_headers(), "X-Custom,Content-Type");
        assert_eq!(cors.expose_headers().unwrap(), "X-Total,*");
        assert!(!cors.credentials());
        assert_eq!(cors.max_age(), "600");
        // `*` among origins is any origin.
        let any = policy(&[("enable-cors", "true"), ("cors-allow-origin", "https://a.com,*")]).unwrap().cors.unwrap();
        assert_eq!(any.origins(), &AllowedOrigins::Any);
    }

    #[test]
    fn bad_cors_values_reject() {
        let cases: &[(&str, &str)] = &[
            ("enable-cors", "yes"),
            ("cors-allow-origin", "https://a.com\nX-Evil: 1"),
            ("cors-allow-origin", "https://a.com/path"),
            ("cors-allow-origin", "'https://a.com'"),
            ("cors-allow-origin", "https://a.com;"),
            ("cors-allow-origin", "a.com"),
            ("cors-allow-origin", ""),
            ("cors-allow-methods", "GET;POST"),
            ("cors-allow-methods", "GET\r\nX: y"),
            ("cors-allow-methods", "{GET}"),
            ("cors-allow-methods", "\"GET\""),
            ("cors-allow-headers", "X-A,X:B"),
            ("cors-allow-headers", "$http_cookie"),
            ("cors-allow-headers", "*"),
            ("cors-expose-headers", "X-A;"),
            ("cors-allow-credentials", "maybe"),
            ("cors-max-age", "-1"),
            ("cors-max-age", "1d"),
        ];
        for (name, bad) in cases {
            let e = policy(&[("enable-cors", "true"), (name, bad)]).unwrap_err();
            assert!(e.contains(&format!("nginx.ingress.kubernetes.io/{name}]")), "{name} {bad:?}: {e}");
        }
        let huge = format!("https://{}.com", "a".repeat(300));
        assert!(policy(&[("cors-allow-origin", &huge)]).is_err());
    }
}
