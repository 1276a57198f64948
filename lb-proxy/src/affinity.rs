//! Cookie affinity (`affinity: cookie`): the cookie names an endpoint by a
//! token (a hash of its address, the same on every node and run of the
//! same version); a request showing the token of a current endpoint tries
//! that endpoint first. A request without a valid token gets the cookie of
//! the endpoint that answered.

use std::net::SocketAddr;

use cookie::{Cookie, time};
use http::HeaderValue;
use http::header::HeaderMap;
use lb_routes::{CookieAffinity, SameSite};

use crate::upstream::{MAX_ATTEMPTS, Peers};

/// The token of an endpoint in the affinity cookie: its hash as 16
/// lowercase hex digits.
pub(crate) fn token(endpoint: SocketAddr) -> String {
    format!("{:016x}", hash(endpoint))
}

fn hash(endpoint: SocketAddr) -> u64 {
    xxhash_rust::xxh3::xxh3_64(endpoint.to_string().as_bytes())
}

/// The hash a cookie value shows, if it is a [`token`] (exactly 16
/// lowercase hex digits: one value per hash).
fn token_hash(value: &str) -> Option<u64> {
    let hex = value.len() == 16 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| u64::from_str_radix(value, 16).ok()).flatten()
}

/// The endpoint the request's cookie names, if it is one of `endpoints`
/// (the cookie is read once, then each endpoint's hash compared with it).
pub(crate) fn sticky(affinity: &CookieAffinity, headers: &HeaderMap, endpoints: &[SocketAddr]) -> Option<SocketAddr> {
    let value = crate::cookies::value(headers, &affinity.name)?;
    let wanted = token_hash(&value)?;
    endpoints.iter().copied().find(|e| hash(*e) == wanted)
}

/// `peers` with `first` tried first (and the others after it, up to the
/// attempt limit).
pub(crate) fn first(peers: Peers, first: SocketAddr) -> Peers {
    let rest = peers.0.into_iter().filter(|p| *p != first);
    Peers(std::iter::once(first).chain(rest).take(MAX_ATTEMPTS).collect())
}

/// The `Set-Cookie` value naming `endpoint`.
pub(crate) fn set_cookie(affinity: &CookieAffinity, endpoint: SocketAddr) -> Option<HeaderValue> {
    let mut cookie = Cookie::build((affinity.name.clone(), token(endpoint)))
        .path(affinity.path.clone())
        .http_only(true)
        .secure(affinity.secure);
    if let Some(seconds) = affinity.max_age {
        cookie = cookie.max_age(time::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX)));
    }
    if let Some(seconds) = affinity.expires {
        let at = time::OffsetDateTime::now_utc().checked_add(time::Duration::seconds(seconds.min(1 << 40) as i64));
        if let Some(at) = at {
            cookie = cookie.expires(at);
        }
    }
    if let Some(same_site) = affinity.same_site {
        cookie = cookie.same_site(match same_site {
            SameSite::None => cookie::SameSite::None,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::Strict => cookie::SameSite::Strict,
        });
    }
    HeaderValue::try_from(cookie.build().to_string()).ok()
}

#[cfg(test)]
mod tests {
    use http::header::COOKIE;

    use super::*;

    fn affinity() -> CookieAffinity {
        CookieAffinity {
            name: "route".into(),
            path: "/".into(),
            max_age: Some(60),
            expires: None,
            same_site: Some(SameSite::Lax),
            secure: true,
            change_on_failure: false,
        }
    }

    #[test]
    fn the_cookie_names_a_current_endpoint() {
        let endpoints: Vec<SocketAddr> = vec!["10.0.0.1:80".parse().unwrap(), "10.0.0.2:80".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::try_from(format!("a=b; route={}", token(endpoints[1]))).unwrap());
        assert_eq!(sticky(&affinity(), &headers, &endpoints), Some(endpoints[1]));
        // Gone endpoint, other cookie name, no cookie: none.
        assert_eq!(sticky(&affinity(), &headers, &endpoints[..1]), None);
        let other = CookieAffinity { name: "INGRESSCOOKIE".into(), ..affinity() };
        assert_eq!(sticky(&other, &headers, &endpoints), None);
        assert_eq!(sticky(&affinity(), &HeaderMap::new(), &endpoints), None);
    }

    #[test]
    fn only_tokens_show_a_hash() {
        let endpoint: SocketAddr = "[fd00::1]:8080".parse().unwrap();
        assert_eq!(token_hash(&token(endpoint)), Some(hash(endpoint)));
        assert_eq!(token_hash("000000000000000a"), Some(10));
        for other in ["000000000000000A", "a", "0000000000000000a", "+00000000000000a", "", "g000000000000000"] {
            assert_eq!(token_hash(other), None, "{other}");
        }
    }

    #[test]
    fn set_cookie_carries_the_attributes() {
        let value = set_cookie(&affinity(), "10.0.0.1:80".parse().unwrap()).unwrap();
        let value = value.to_str().unwrap();
        assert!(value.starts_with(&format!("route={}", token("10.0.0.1:80".parse().unwrap()))), "{value}");
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=60"] {
            assert!(value.contains(attribute), "{value} lacks {attribute}");
        }
    }

    #[test]
    fn the_sticky_endpoint_is_tried_first() {
        let peers = Peers(vec!["10.0.0.1:80".parse().unwrap(), "10.0.0.2:80".parse().unwrap()]);
        let pinned = first(peers, "10.0.0.9:80".parse().unwrap());
        assert_eq!(pinned.0.len(), 3);
        assert_eq!(pinned.0[0], "10.0.0.9:80".parse::<SocketAddr>().unwrap());
    }
}
