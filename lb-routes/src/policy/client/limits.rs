//! Rate and connection limits per client address (`limit-rps`,
//! `limit-rpm`, `limit-burst-multiplier`, `limit-connections`,
//! `limit-allowlist`), as nginx's `limit_req ... burst=N nodelay` and
//! `limit_conn`. The counters live in the proxy, one zone per Ingress.

use std::num::NonZeroU32;

use super::source::IpRanges;

/// ingress-nginx's default `limit-burst-multiplier`.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;

/// The limits of one Ingress's routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `limit-rps`.
    pub rps: Option<RateLimit>,
    /// `limit-rpm`.
    pub rpm: Option<RateLimit>,
    /// `limit-connections`: requests in flight per client address.
    pub connections: Option<NonZeroU32>,
    /// `limit-allowlist`: clients the limits do not apply to.
    pub exempt: IpRanges,
}

impl Limits {
    /// The rate limits that are set.
    pub fn rates(&self) -> impl Iterator<Item = &RateLimit> {
        self.rps.iter().chain(self.rpm.iter())
    }
}

/// The period of a [`RateLimit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RatePeriod {
    Second,
    Minute,
}

/// `rate` requests per period, with `burst` more let through at once
/// (nginx's `limit_req zone=... burst=N nodelay`: a client with nothing
/// recent may send `burst + 1` requests at once, then one per
/// `period / rate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub rate: NonZeroU32,
    pub period: RatePeriod,
    /// `rate × limit-burst-multiplier`.
    pub burst: u32,
}

impl RateLimit {
    /// `rate` per `period` with a burst of `rate × multiplier` (saturating).
    pub fn new(rate: NonZeroU32, period: RatePeriod, multiplier: u32) -> Self {
        Self { rate, period, burst: rate.get().saturating_mul(multiplier) }
    }

    /// How many requests a fresh client may send at once: `burst + 1`.
    pub fn capacity(&self) -> NonZeroU32 {
        NonZeroU32::MIN.saturating_add(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_rate_times_multiplier_plus_the_first_request() {
        let one = NonZeroU32::new(1).unwrap();
        let limit = RateLimit::new(one, RatePeriod::Second, DEFAULT_BURST_MULTIPLIER);
        assert_eq!((limit.burst, limit.capacity().get()), (5, 6));
        assert_eq!(RateLimit::new(one, RatePeriod::Minute, 0).capacity().get(), 1);
        let huge = RateLimit::new(NonZeroU32::new(u32::MAX).unwrap(), RatePeriod::Second, 2);
        assert_eq!(huge.capacity().get(), u32::MAX);
    }
}
