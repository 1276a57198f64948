//! A route's client policy (`lb_routes::ClientPolicy`), applied after the
//! redirects (nginx's rewrite phase) and before the upstream, in this
//! order: source ranges (403), CORS (an allowed preflight is answered
//! 204, the headers of other responses noted), then the rate and
//! connection limits (503). Preflights are not counted by the limits (in
//! nginx they are answered before `limit_req`); the source ranges come
//! first so a refused client neither learns the CORS policy nor takes
//! room in the limiters.

use std::net::IpAddr;

use http::{HeaderMap, Method, Response};
use lb_routes::{ClientPolicy, ObjectName};

use crate::body::ProxyBody;
use crate::cors::{self, CorsHeaders};
use crate::errors::ProxyError;
use crate::limits::{ConnectionSlot, Limited, Limiters};

/// What the client policy decided.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Answered here (a CORS preflight).
    Answer(Response<ProxyBody>),
    /// On to the upstream, holding the `limit-connections` slot (if any)
    /// until the response is sent.
    Proceed(Option<ConnectionSlot>),
}

/// Applies `policy` to a request of `client` (the TCP peer) to a route of
/// `ingress` (needed when the policy has limits); `cors` receives the
/// CORS headers for the response.
pub(crate) fn admit(
    limiters: &Limiters,
    policy: &ClientPolicy,
    ingress: Option<&ObjectName>,
    client: IpAddr,
    (method, headers): (&Method, &HeaderMap),
    cors: &mut Option<CorsHeaders>,
) -> Result<Admission, ProxyError> {
    if !policy.source.admits(client) {
        return Err(ProxyError::Forbidden);
    }
    if let Some(policy) = &policy.cors {
        let answer = CorsHeaders::for_request(policy, headers);
        let preflight = answer.is_allowed() && cors::is_preflight(method, headers);
        *cors = Some(answer);
        if preflight {
            return Ok(Admission::Answer(cors::preflight_response()));
        }
    }
    let slot = match (&policy.limits, ingress) {
        (Some(limits), Some(ingress)) => limiters.admit(ingress, limits, client).map_err(|limited| match limited {
            Limited::Rate => ProxyError::RateLimited,
            Limited::Connections => ProxyError::ConnectionLimited,
        })?,
        _ => None,
    };
    Ok(Admission::Proceed(slot))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use http::StatusCode;
    use lb_routes::policy::{Cors, CorsSpec, IpNet, IpRanges, Limits, SourceRanges};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ranges(s: &str) -> Option<IpRanges> {
        Some(IpRanges::new([s.parse::<IpNet>().unwrap()]))
    }

    fn preflight() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("origin", "https://a.com".parse().unwrap());
        headers.insert("access-control-request-method", "PUT".parse().unwrap());
        headers
    }

    #[test]
    fn order_is_source_ranges_then_cors_then_limits() {
        let limiters = Limiters::default();
        let web = ObjectName { namespace: "default".into(), name: "web".into() };
        let policy = ClientPolicy {
            source: SourceRanges { allow: ranges("10.0.0.0/8"), deny: None },
            limits: Some(Limits { rps: None, rpm: None, connections: NonZeroU32::new(1), exempt: IpRanges::default() }),
            cors: Some(Cors::new(CorsSpec::default())),
        };
        let headers = preflight();
        let mut cors = None;
        let outside = admit(&limiters, &policy, Some(&web), ip("11.0.0.1"), (&Method::OPTIONS, &headers), &mut cors);
        assert!(matches!(outside, Err(ProxyError::Forbidden)) && cors.is_none());
        // A preflight is answered even while the client is at its limit.
        let held = admit(&limiters, &policy, Some(&web), ip("10.0.0.1"), (&Method::GET, &headers), &mut cors);
        let Ok(Admission::Proceed(Some(_slot))) = held else { panic!("{held:?}") };
        let answer = admit(&limiters, &policy, Some(&web), ip("10.0.0.1"), (&Method::OPTIONS, &headers), &mut cors);
        let Ok(Admission::Answer(response)) = answer else { panic!("{answer:?}") };
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(cors.as_ref().is_some_and(CorsHeaders::is_allowed));
        let limited = admit(&limiters, &policy, Some(&web), ip("10.0.0.1"), (&Method::GET, &headers), &mut cors);
        assert!(matches!(limited, Err(ProxyError::ConnectionLimited)), "{limited:?}");
    }
}
