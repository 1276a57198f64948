//! What a route lets clients do: source ranges, rate and connection
//! limits per client address, CORS.
//!
//! The client is the TCP peer of the proxy's connection (an IPv4-mapped
//! IPv6 peer counts as its IPv4 address); `X-Forwarded-For` is never
//! trusted for these decisions.

mod cors;
mod limits;
mod source;

pub use cors::{
    AllowedOrigins, Cors, CorsSpec, CorsToken, DEFAULT_CORS_HEADERS, DEFAULT_CORS_MAX_AGE, DEFAULT_CORS_METHODS,
    OriginPattern,
};
pub use limits::{DEFAULT_BURST_MULTIPLIER, Limits, RateLimit, RatePeriod};
pub use source::{IpNet, IpRanges, SourceRanges};

/// The client side of a route's policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientPolicy {
    /// `allowlist-source-range` and `denylist-source-range` (403).
    pub source: SourceRanges,
    /// `limit-rps`, `limit-rpm`, `limit-connections` (503); `None` when
    /// none is set.
    pub limits: Option<Limits>,
    /// `enable-cors` and the `cors-*` annotations.
    pub cors: Option<Cors>,
}
