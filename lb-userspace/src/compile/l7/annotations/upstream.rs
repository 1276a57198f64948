//! `backend-protocol`, `upstream-vhost`, `proxy-body-size`, the
//! `proxy-*-timeout`s, `proxy-next-upstream` (+ `-tries`, `-timeout`).

use std::time::Duration;

use lb_routes::UpstreamPolicy;
use lb_routes::policy::{BackendProtocol, BodySize, DEFAULT_NEXT_UPSTREAM_TRIES, NextUpstream};

use super::{Rejection, Values, shorten};

/// The annotations parsed here (names without the prefix).
pub(super) const NAMES: &[&str] = &[
    "backend-protocol",
    "upstream-vhost",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "proxy-next-upstream-timeout",
];

/// The longest timeout accepted (a week: WebSocket routes often say a day).
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most `proxy-next-upstream-tries` accepted.
const MAX_TRIES: u32 = 1000;

pub(super) fn parse(values: &Values<'_>) -> Result<UpstreamPolicy, Rejection> {
    let timeout = |name| values.parsed(name, |v| parse_timeout(v, false)).map(Option::flatten);
    Ok(UpstreamPolicy {
        protocol: values.parsed("backend-protocol", parse_protocol)?,
        vhost: values.parsed("upstream-vhost", parse_vhost)?,
        body_size: values.parsed("proxy-body-size", parse_size)?,
        connect_timeout: timeout("proxy-connect-timeout")?,
        read_timeout: timeout("proxy-read-timeout")?,
        send_timeout: timeout("proxy-send-timeout")?,
        next_upstream: values.parsed("proxy-next-upstream", parse_next_upstream)?.unwrap_or_default(),
        next_upstream_tries: values
            .parsed("proxy-next-upstream-tries", parse_tries)?
            .unwrap_or(DEFAULT_NEXT_UPSTREAM_TRIES),
        next_upstream_timeout: values.parsed("proxy-next-upstream-timeout", |v| parse_timeout(v, true))?.flatten(),
    })
}

/// `HTTP`, `HTTPS`, `GRPC`, `GRPCS`, any case (ingress-nginx upper-cases it).
fn parse_protocol(value: &str) -> Result<BackendProtocol, String> {
    match value.trim().to_ascii_uppercase().as_str() {
        "HTTP" => Ok(BackendProtocol::Http),
        "HTTPS" => Ok(BackendProtocol::Https),
        "GRPC" => Ok(BackendProtocol::Grpc),
        "GRPCS" => Ok(BackendProtocol::Grpcs),
        known @ ("AUTO_HTTP" | "FCGI" | "AJP") => Err(format!("{known} is not supported (HTTP, HTTPS, GRPC or GRPCS)")),
        _ => Err(format!("{:?} is not one of HTTP, HTTPS, GRPC, GRPCS", shorten(value))),
    }
}

/// `host[:port]`: a DNS name or IPv4 address (letters, digits, `-`, `.`,
/// `_`) or a bracketed IPv6 address, and an optional port.
fn parse_vhost(value: &str) -> Result<String, String> {
    let bad = || format!("{:?} is not a host[:port]", shorten(value));
    if value.contains('$') {
        return Err(format!("{:?}: nginx variables are not supported, only a host[:port]", shorten(value)));
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match value.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let host_ok = value.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    });
    if host_ok && port_ok { Ok(value.to_string()) } else { Err(bad()) }
}

/// nginx's size syntax (see [`BodySize::parse`]).
fn parse_size(value: &str) -> Result<BodySize, String> {
    BodySize::parse(value).map_err(|reason| format!("{:?} is {reason}", shorten(value)))
}

/// Seconds (`60`, as ingress-nginx takes them), or with a unit: `500ms`,
/// `60s`, `2m`, `1h`. `0` only where it means "no limit" (`None`).
fn parse_timeout(value: &str, zero_means_none: bool) -> Result<Option<Duration>, String> {
    let bad = || format!("{:?} is not a timeout (seconds, e.g. 60, or 500ms, 60s, 2m, 1h)", shorten(value));
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    if digits.is_empty() || digits.len() > 12 {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let timeout = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if timeout > MAX_TIMEOUT {
        return Err(format!("{:?} is longer than {} s", shorten(value), MAX_TIMEOUT.as_secs()));
    }
    match (timeout.is_zero(), zero_means_none) {
        (true, true) => Ok(None),
        (true, false) => Err(format!("{:?}: the timeout must be more than 0", shorten(value))),
        (false, _) => Ok(Some(timeout)),
    }
}

/// Space-separated conditions (nginx's `proxy_next_upstream`); `off`
/// alone disables retries.
fn parse_next_upstream(value: &str) -> Result<NextUpstream, String> {
    let mut next = NextUpstream::off();
    let words: Vec<&str> = value.split_ascii_whitespace().collect();
    if words.is_empty() {
        return Err("empty: a list of conditions (error timeout http_502 …) or off".into());
    }
    if words.contains(&"off") {
        return if words.len() == 1 { Ok(next) } else { Err("off cannot be combined with other conditions".into()) };
    }
    for word in words {
        match word {
            "error" => next.error = true,
            "timeout" => next.timeout = true,
            "invalid_header" => next.invalid_header = true,
            "non_idempotent" => next.non_idempotent = true,
            "http_500" | "http_502" | "http_503" | "http_504" | "http_403" | "http_404" | "http_429" => {
                let code = word["http_".len()..].parse().expect("three digits");
                if !next.statuses.contains(&code) {
                    next.statuses.push(code);
                }
            }
            other => {
                return Err(format!(
                    "{:?} is not one of error, timeout, invalid_header, http_500, http_502, http_503, http_504, \
                     http_403, http_404, http_429, non_idempotent, off",
                    shorten(other)
                ));
            }
        }
    }
    Ok(next)
}

/// `0` (every endpoint) up to [`MAX_TRIES`].
fn parse_tries(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if n <= MAX_TRIES && value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("{:?} is not a number of tries from 0 (every endpoint) to {MAX_TRIES}", shorten(value))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn parse_all(pairs: &[(&'static str, &'static str)]) -> Result<UpstreamPolicy, String> {
        let values = Values(pairs.iter().copied().collect::<BTreeMap<_, _>>());
        parse(&values).map_err(|Rejection { field, reason }| format!("{field}: {reason}"))
    }

    #[test]
    fn nothing_set_is_the_default() {
        assert_eq!(parse_all(&[]).unwrap(), UpstreamPolicy::default());
    }

    #[test]
    fn backend_protocols() {
        for (value, want) in [
            ("HTTP", BackendProtocol::Http),
            ("https", BackendProtocol::Https),
            ("GRPC", BackendProtocol::Grpc),
            ("grpcs", BackendProtocol::Grpcs),
        ] {
            assert_eq!(parse_protocol(value), Ok(want), "{value}");
        }
        for unsupported in ["FCGI", "AJP", "AUTO_HTTP"] {
            assert!(parse_protocol(unsupported).unwrap_err().contains("not supported"), "{unsupported}");
        }
        for bad in ["", "HTTP2", "http;", "HTTPS\nX: 1", "{HTTP}"] {
            assert!(parse_protocol(bad).unwrap_err().contains("not one of"), "{bad:?}");
        }
    }

    #[test]
    fn vhosts() {
        for good in ["a.com", "a.com:8080", "svc.ns.svc.cluster.local", "10.0.0.1:80", "[fd00::1]", "[::1]:443", "x_y"]
        {
            assert_eq!(parse_vhost(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "a b",
            "a.com/x",
            "a.com:",
            "a.com:99999",
            "a.com:8x",
            "$host",
            "a\r\nX-Evil: 1",
            "a;b",
            "a\"b",
            "{a}",
            "user@a.com",
            "[::1",
            "[zz]",
            "[::1]x",
            "é.com",
        ] {
            assert!(parse_vhost(bad).is_err(), "{bad:?}");
        }
        assert!(parse_vhost("$host").unwrap_err().contains("variables"));
        assert!(parse_vhost(&"a".repeat(300)).is_err());
    }

    #[test]
    fn sizes() {
        for (value, want) in [
            ("0", BodySize::Unlimited),
            ("100", BodySize::AtMost(100)),
            ("1k", BodySize::AtMost(1024)),
            ("8m", BodySize::AtMost(8 << 20)),
            ("8M", BodySize::AtMost(8 << 20)),
            ("1g", BodySize::AtMost(1 << 30)),
            ("0m", BodySize::Unlimited),
        ] {
            assert_eq!(parse_size(value), Ok(want), "{value}");
        }
        for bad in ["", "m", "-1", "1.5m", "1 m", " 1m", "1t", "1mb", "8m;", "999999999999999g", "1\n"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timeouts() {
        for (value, want) in [("5", 5_000), ("60s", 60_000), ("500ms", 500), ("2m", 120_000), ("1h", 3_600_000)] {
            assert_eq!(parse_timeout(value, false), Ok(Some(Duration::from_millis(want))), "{value}");
        }
        assert!(parse_timeout("0", false).is_err());
        assert_eq!(parse_timeout("0", true), Ok(None));
        for bad in ["", "s", "-5", "5.5", "5 s", "5sec", "5d", "99999999999", "700000", "5;", "5\n"] {
            assert!(parse_timeout(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn next_upstream() {
        let next = parse_next_upstream("error timeout http_503  http_503 non_idempotent").unwrap();
        assert!(next.error && next.timeout && !next.invalid_header && next.non_idempotent);
        assert_eq!(next.statuses, vec![503]);
        assert_eq!(parse_next_upstream("off"), Ok(NextUpstream::off()));
        assert_eq!(
            parse_next_upstream("http_500 http_502 http_504 http_403 http_404 http_429").unwrap().statuses,
            vec![500, 502, 504, 403, 404, 429]
        );
        for bad in ["", "off error", "http_501", "error;", "Error", "timeout\n{x}", "http_5xx"] {
            assert!(parse_next_upstream(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tries() {
        assert_eq!(parse_tries("0"), Ok(0));
        assert_eq!(parse_tries("5"), Ok(5));
        for bad in ["", "-1", "+1", "1001", "3 ", "x", "4294967296"] {
            assert!(parse_tries(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_value_names_its_annotation() {
        let error = parse_all(&[("proxy-read-timeout", "5"), ("proxy-body-size", "1x")]).unwrap_err();
        assert!(error.contains("nginx.ingress.kubernetes.io/proxy-body-size") && error.contains("\"1x\""), "{error}");
        let policy = parse_all(&[
            ("backend-protocol", "GRPCS"),
            ("upstream-vhost", "internal.svc"),
            ("proxy-body-size", "8m"),
            ("proxy-connect-timeout", "2"),
            ("proxy-read-timeout", "30s"),
            ("proxy-send-timeout", "10"),
            ("proxy-next-upstream", "http_502"),
            ("proxy-next-upstream-tries", "0"),
            ("proxy-next-upstream-timeout", "0"),
        ])
        .unwrap();
        assert_eq!(policy.protocol, Some(BackendProtocol::Grpcs));
        assert_eq!(policy.vhost.as_deref(), Some("internal.svc"));
        assert_eq!(policy.body_size, Some(BodySize::AtMost(8 << 20)));
        assert_eq!(policy.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(policy.read_timeout, Some(Duration::from_secs(30)));
        assert_eq!(policy.send_timeout, Some(Duration::from_secs(10)));
        assert_eq!(policy.next_upstream.statuses, vec![502]);
        assert!(!policy.next_upstream.error);
        assert_eq!((policy.next_upstream_tries, policy.next_upstream_timeout), (0, None));
    }
}
