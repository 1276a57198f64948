//! Rate and connection limits per client address (`limit-rps`,
//! `limit-rpm`, `limit-connections`), nginx's `limit_req ... nodelay` and
//! `limit_conn`.
//!
//! The counters live here, in the proxy, not in the route table: a zone
//! is named by its Ingress (`namespace/name`) and its limit, so a new
//! route table with the same Ingress and values keeps counting where the
//! old one was. All paths of an Ingress share its zones (ingress-nginx:
//! one zone per Ingress).
//!
//! Rates use [`governor`]'s GCRA keyed by client address: with `burst` B a
//! client with nothing recent gets B + 1 requests at once, then one per
//! `period / rate` — the same as nginx's leaky bucket with `nodelay`.
//! Connection limits count requests in flight (until the response body
//! is sent), as nginx does for `limit_conn` under HTTP/2 too.
//!
//! Memory is bounded: a zone keeps at most [`MAX_KEYS_PER_ZONE`] client
//! addresses (when full, it first drops the addresses that are back to a
//! fresh state; if that frees nothing, a new address is refused with 503,
//! as nginx does when its zone is full), there are at most [`MAX_ZONES`]
//! zones, and [`Limiters::prune`] (every [`PRUNE_INTERVAL`]) drops idle
//! addresses and zones that hold nothing — a zone of an Ingress that
//! changed or went away disappears once its clients' state is fresh again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota, RateLimiter};
use http::Response;
use http_body_util::BodyExt;
use lb_routes::ObjectName;
use lb_routes::policy::{Limits, RateLimit, RatePeriod};

use crate::body::{ProxyBody, TrackedBody};

/// The most client addresses one zone tracks (nginx's default 5 MB zone
/// holds some 40 000 to 80 000).
pub(crate) const MAX_KEYS_PER_ZONE: usize = 65_536;
/// The most zones (limits × Ingresses) kept at once.
pub(crate) const MAX_ZONES: usize = 4_096;
/// How often idle addresses and empty zones are dropped.
pub(crate) const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// A full zone looks for idle addresses at most this often.
const FULL_ZONE_PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a request was refused (503).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limited {
    /// `limit-rps` / `limit-rpm` (or the zone is full).
    Rate,
    /// `limit-connections`.
    Connections,
}

/// Every zone of the proxy.
#[derive(Debug, Default)]
pub(crate) struct Limiters {
    zones: RwLock<HashMap<ObjectName, Vec<Zone>>>,
    /// A warning that the zone table is full was logged since the last prune.
    full_warned: AtomicBool,
}

/// One Ingress's zone for one limit.
#[derive(Clone, Debug)]
enum Zone {
    Rate(RateLimit, Arc<RateZone>),
    Connections(u32, Arc<ConnectionZone>),
}

impl Zone {
    fn new(kind: ZoneKind) -> Self {
        match kind {
            ZoneKind::Rate(limit) => Zone::Rate(limit, Arc::new(RateZone::new(limit, DefaultClock::default()))),
            ZoneKind::Connections(max) => Zone::Connections(max, Arc::new(ConnectionZone::new(max))),
        }
    }

    fn is(&self, kind: ZoneKind) -> bool {
        match (self, kind) {
            (Zone::Rate(have, _), ZoneKind::Rate(want)) => *have == want,
            (Zone::Connections(have, _), ZoneKind::Connections(want)) => *have == want,
            _ => false,
        }
    }

    /// Drops idle addresses; whether the zone holds nothing now.
    fn prune(&self) -> bool {
        match self {
            Zone::Rate(_, zone) => zone.prune(),
            Zone::Connections(_, zone) => zone.is_idle(),
        }
    }

    fn is_idle(&self) -> bool {
        match self {
            Zone::Rate(_, zone) => zone.limiter.is_empty(),
            Zone::Connections(_, zone) => zone.is_idle(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ZoneKind {
    Rate(RateLimit),
    Connections(u32),
}

impl Limiters {
    /// Counts a request of `client` to a route of `ingress`: `Ok` with the
    /// connection slot to hold until the response is sent (when
    /// `limit-connections` is set), or why it must be refused.
    pub(crate) fn admit(
        &self,
        ingress: &ObjectName,
        limits: &Limits,
        client: IpAddr,
    ) -> Result<Option<ConnectionSlot>, Limited> {
        let client = client.to_canonical();
        if limits.exempt.contains(client) {
            return Ok(None);
        }
        for limit in limits.rates() {
            let allowed = self.with_zone(ingress, ZoneKind::Rate(*limit), |zone| match zone {
                Zone::Rate(_, zone) => zone.check(client),
                Zone::Connections(..) => true,
            });
            if allowed == Some(false) {
                return Err(Limited::Rate);
            }
        }
        let Some(max) = limits.connections else { return Ok(None) };
        let slot = self.with_zone(ingress, ZoneKind::Connections(max.get()), |zone| match zone {
            Zone::Connections(_, zone) => zone.acquire(client),
            Zone::Rate(..) => None,
        });
        match slot {
            Some(Some(slot)) => Ok(Some(slot)),
            Some(None) => Err(Limited::Connections),
            // No room for the zone: not limited (logged).
            None => Ok(None),
        }
    }

    /// Runs `f` on the zone (created if needed) under the read lock, so
    /// [`prune`](Self::prune) never drops a zone a request is using.
    /// `None`: there is no room for another zone.
    fn with_zone<T>(&self, ingress: &ObjectName, kind: ZoneKind, f: impl Fn(&Zone) -> T) -> Option<T> {
        {
            let zones = self.zones.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(zone) = zones.get(ingress).and_then(|list| list.iter().find(|zone| zone.is(kind))) {
                return Some(f(zone));
            }
        }
        let mut zones = self.zones.write().unwrap_or_else(PoisonError::into_inner);
        let count: usize = zones.values().map(Vec::len).sum();
        let list = zones.entry(ingress.clone()).or_default();
        if let Some(zone) = list.iter().find(|zone| zone.is(kind)) {
            return Some(f(zone));
        }
        if count >= MAX_ZONES {
            if !self.full_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(%ingress, zones = count, "too many rate-limit zones: this Ingress is not limited until some are idle");
            }
            if list.is_empty() {
                zones.remove(ingress);
            }
            return None;
        }
        let zone = Zone::new(kind);
        let result = f(&zone);
        list.push(zone);
        Some(result)
    }

    /// Drops addresses whose state is fresh again, and zones left empty.
    pub(crate) fn prune(&self) {
        let all: Vec<Zone> = {
            let zones = self.zones.read().unwrap_or_else(PoisonError::into_inner);
            zones.values().flatten().cloned().collect()
        };
        // The slow part, outside the lock.
        let mut any_idle = false;
        for zone in &all {
            any_idle |= zone.prune();
        }
        if any_idle {
            let mut zones = self.zones.write().unwrap_or_else(PoisonError::into_inner);
            zones.retain(|_, list| {
                list.retain(|zone| !zone.is_idle());
                !list.is_empty()
            });
        }
        self.full_warned.store(false, Ordering::Relaxed);
    }

    /// How many zones there are.
    #[cfg(test)]
    fn zone_count(&self) -> usize {
        self.zones.read().unwrap().values().map(Vec::len).sum()
    }
}

/// Prunes `limiters` every [`PRUNE_INTERVAL`] while they exist.
pub(crate) async fn prune_periodically(limiters: Weak<Limiters>) {
    let mut interval = tokio::time::interval(PRUNE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(limiters) = limiters.upgrade() else { return };
        limiters.prune();
    }
}

/// The GCRA state of one rate limit: client address → theoretical arrival
/// time, with a bound on the number of addresses.
struct RateZone<C: Clock = DefaultClock> {
    limiter: RateLimiter<IpAddr, Keys, C, NoOpMiddleware<C::Instant>>,
    /// The same map the limiter uses, to tell a known address from a new one.
    keys: Keys,
    last_full_prune: Mutex<Option<Instant>>,
}

impl<C: Clock> std::fmt::Debug for RateZone<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateZone").field("keys", &self.keys.0.len()).finish_non_exhaustive()
    }
}

impl<C: Clock> RateZone<C> {
    fn new(limit: RateLimit, clock: C) -> Self {
        let quota = match limit.period {
            RatePeriod::Second => Quota::per_second(limit.rate),
            RatePeriod::Minute => Quota::per_minute(limit.rate),
        }
        .allow_burst(limit.capacity());
        let keys = Keys::default();
        Self { limiter: RateLimiter::new(quota, keys.clone(), clock), keys, last_full_prune: Mutex::new(None) }
    }

    /// Whether a request of `client` conforms (and counts it if so).
    fn check(&self, client: IpAddr) -> bool {
        if self.keys.0.len() >= MAX_KEYS_PER_ZONE && !self.keys.0.contains_key(&client) {
            self.prune_when_full();
            if self.keys.0.len() >= MAX_KEYS_PER_ZONE {
                return false;
            }
        }
        self.limiter.check_key(&client).is_ok()
    }

    /// [`prune`](Self::prune), at most every [`FULL_ZONE_PRUNE_INTERVAL`]
    /// (it walks every address).
    fn prune_when_full(&self) {
        let mut last = self.last_full_prune.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= FULL_ZONE_PRUNE_INTERVAL) {
            *last = Some(Instant::now());
            drop(last);
            self.prune();
        }
    }

    /// Drops the addresses whose state is fresh again; whether none is left.
    fn prune(&self) -> bool {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.is_empty()
    }
}

/// governor's DashMap store, shared with [`RateZone::keys`].
#[derive(Clone, Default)]
struct Keys(Arc<DashMapStateStore<IpAddr>>);

impl StateStore for Keys {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for Keys {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Requests in flight per client address (only addresses with some).
#[derive(Debug)]
struct ConnectionZone {
    max: u32,
    in_flight: Mutex<HashMap<IpAddr, u32>>,
}

impl ConnectionZone {
    fn new(max: u32) -> Self {
        Self { max, in_flight: Mutex::new(HashMap::new()) }
    }

    /// A slot for `client`, unless it has `max` requests in flight.
    fn acquire(self: &Arc<Self>, client: IpAddr) -> Option<ConnectionSlot> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        let count = in_flight.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot { zone: Arc::clone(self), client })
    }

    fn release(&self, client: IpAddr) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = in_flight.get_mut(&client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&client);
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }
}

/// One request in flight under `limit-connections`; released on drop.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    zone: Arc<ConnectionZone>,
    client: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.zone.release(self.client);
    }
}

/// The response, holding `slot` until its body is sent (or dropped).
pub(crate) fn hold(response: Response<ProxyBody>, slot: Option<ConnectionSlot>) -> Response<ProxyBody> {
    match slot {
        Some(slot) => response.map(|inner| TrackedBody::new(inner, slot).boxed_unsync()),
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::clock::FakeRelativeClock;
    use lb_routes::policy::{DEFAULT_BURST_MULTIPLIER, IpNet, IpRanges};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ingress(name: &str) -> ObjectName {
        ObjectName { namespace: "default".into(), name: name.into() }
    }

    fn rate(n: u32, period: RatePeriod, multiplier: u32) -> RateLimit {
        RateLimit::new(NonZeroU32::new(n).unwrap(), period, multiplier)
    }

    fn limits(rps: Option<RateLimit>, rpm: Option<RateLimit>, connections: u32) -> Limits {
        Limits { rps, rpm, connections: NonZeroU32::new(connections), exempt: IpRanges::default() }
    }

    /// How many of `n` requests at the same instant pass.
    fn burst(zone: &RateZone<FakeRelativeClock>, client: IpAddr, n: u32) -> u32 {
        (0..n).filter(|_| zone.check(client)).count() as u32
    }

    #[test]
    fn rate_is_nginx_burst_plus_one_then_the_rate() {
        let clock = FakeRelativeClock::default();
        let zone = RateZone::new(rate(1, RatePeriod::Second, DEFAULT_BURST_MULTIPLIER), clock.clone());
        let a = ip("10.0.0.1");
        assert_eq!(burst(&zone, a, 20), 6, "burst 5 + 1");
        // Another client has its own state.
        assert_eq!(burst(&zone, ip("10.0.0.2"), 20), 6);
        clock.advance(Duration::from_millis(999));
        assert_eq!(burst(&zone, a, 5), 0);
        clock.advance(Duration::from_millis(1));
        assert_eq!(burst(&zone, a, 5), 1, "one per second");
        clock.advance(Duration::from_secs(3));
        assert_eq!(burst(&zone, a, 5), 3);
        // After burst / rate seconds of quiet the client is fresh again.
        clock.advance(Duration::from_secs(6));
        assert_eq!(burst(&zone, a, 20), 6);
    }

    #[test]
    fn rate_per_minute_and_no_burst() {
        let clock = FakeRelativeClock::default();
        let zone = RateZone::new(rate(2, RatePeriod::Minute, 0), clock.clone());
        let a = ip("10.0.0.1");
        assert_eq!(burst(&zone, a, 3), 1);
        clock.advance(Duration::from_secs(29));
        assert_eq!(burst(&zone, a, 3), 0);
        clock.advance(Duration::from_secs(1));
        assert_eq!(burst(&zone, a, 3), 1);
    }

    #[test]
    fn idle_addresses_are_pruned() {
        let clock = FakeRelativeClock::default();
        let zone = RateZone::new(rate(10, RatePeriod::Second, 1), clock.clone());
        for i in 0..100u8 {
            assert!(zone.check(IpAddr::from([10, 0, 0, i])));
        }
        assert_eq!(zone.keys.0.len(), 100);
        assert!(!zone.prune(), "recent addresses stay");
        assert_eq!(zone.keys.0.len(), 100);
        clock.advance(Duration::from_secs(1));
        assert!(zone.prune(), "fresh again: dropped");
        assert_eq!(zone.keys.0.len(), 0);
    }

    #[test]
    fn a_full_zone_refuses_new_addresses_but_not_known_ones() {
        let clock = FakeRelativeClock::default();
        let zone = RateZone::new(rate(1, RatePeriod::Minute, 5), clock.clone());
        for i in 0..MAX_KEYS_PER_ZONE as u32 {
            assert!(zone.check(IpAddr::from((0x0a00_0000 + i).to_be_bytes())));
        }
        let known = ip("10.0.0.1");
        assert!(zone.check(known), "known address, within its burst");
        assert!(!zone.check(ip("11.0.0.1")), "no room for a new address");
        assert_eq!(zone.keys.0.len(), MAX_KEYS_PER_ZONE);
        // Once the others are fresh again, pruning makes room.
        clock.advance(Duration::from_secs(6 * 60));
        *zone.last_full_prune.lock().unwrap() = None;
        assert!(zone.check(ip("11.0.0.1")));
        assert_eq!(zone.keys.0.len(), 1);
    }

    #[test]
    fn connections_count_requests_in_flight() {
        let limiters = Limiters::default();
        let web = ingress("web");
        let l = limits(None, None, 2);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let first = limiters.admit(&web, &l, a).unwrap().unwrap();
        let second = limiters.admit(&web, &l, a).unwrap().unwrap();
        assert_eq!(limiters.admit(&web, &l, a).unwrap_err(), Limited::Connections);
        assert!(limiters.admit(&web, &l, b).unwrap().is_some(), "another client");
        // An IPv4-mapped peer is the same client.
        assert_eq!(limiters.admit(&web, &l, ip("::ffff:10.0.0.1")).unwrap_err(), Limited::Connections);
        drop(first);
        let third = limiters.admit(&web, &l, a).unwrap().unwrap();
        drop((second, third));
        limiters.prune();
        assert_eq!(limiters.zone_count(), 0, "idle connection zones go");
    }

    #[test]
    fn zones_are_per_ingress_and_limit_and_survive_a_new_table() {
        let limiters = Limiters::default();
        let a = ip("10.0.0.1");
        let l = limits(None, Some(rate(1, RatePeriod::Minute, 1)), 0);
        assert!(limiters.admit(&ingress("one"), &l, a).is_ok());
        assert!(limiters.admit(&ingress("one"), &l, a).is_ok());
        assert_eq!(limiters.admit(&ingress("one"), &l, a).unwrap_err(), Limited::Rate);
        // The same values in a new route table (a clone): the same zone.
        let reloaded = l.clone();
        assert_eq!(limiters.admit(&ingress("one"), &reloaded, a).unwrap_err(), Limited::Rate);
        limiters.prune();
        assert_eq!(limiters.admit(&ingress("one"), &reloaded, a).unwrap_err(), Limited::Rate, "pruning keeps state");
        // Another Ingress, or other values: another zone.
        assert!(limiters.admit(&ingress("two"), &l, a).is_ok());
        let other = limits(None, Some(rate(2, RatePeriod::Minute, 1)), 0);
        assert!(limiters.admit(&ingress("one"), &other, a).is_ok());
        assert_eq!(limiters.zone_count(), 3);
    }

    #[test]
    fn rps_and_rpm_both_apply_and_exempt_clients_skip_them() {
        let limiters = Limiters::default();
        let mut l = limits(Some(rate(100, RatePeriod::Second, 1)), Some(rate(1, RatePeriod::Minute, 2)), 1);
        l.exempt = IpRanges::new(["10.9.0.0/16".parse::<IpNet>().unwrap()]);
        let web = ingress("web");
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            drop(limiters.admit(&web, &l, a).unwrap());
        }
        assert_eq!(limiters.admit(&web, &l, a).unwrap_err(), Limited::Rate, "rpm: burst 2 + 1");
        let exempt = ip("10.9.1.1");
        let held: Vec<_> = (0..10).map(|_| limiters.admit(&web, &l, exempt).unwrap()).collect();
        assert!(held.iter().all(Option::is_none), "no slot, no count");
    }

    #[test]
    fn the_zone_table_is_bounded() {
        let limiters = Limiters::default();
        let l = limits(None, Some(rate(1, RatePeriod::Minute, 0)), 0);
        let a = ip("10.0.0.1");
        for i in 0..MAX_ZONES {
            assert_eq!(limiters.admit(&ingress(&format!("i{i}")), &l, a).map(|s| s.is_none()), Ok(true));
        }
        // No room: served, not limited.
        for _ in 0..3 {
            assert!(limiters.admit(&ingress("late"), &l, a).is_ok());
        }
        assert_eq!(limiters.zone_count(), MAX_ZONES);
    }

    #[tokio::test]
    async fn slots_are_held_until_the_body_is_done() {
        let limiters = Limiters::default();
        let l = limits(None, None, 1);
        let web = ingress("web");
        let a = ip("10.0.0.1");
        let slot = limiters.admit(&web, &l, a).unwrap();
        let response = hold(crate::errors::status_response(http::StatusCode::OK), slot);
        assert_eq!(limiters.admit(&web, &l, a).unwrap_err(), Limited::Connections);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"200 OK\n");
        assert!(limiters.admit(&web, &l, a).unwrap().is_some(), "released with the body");
    }
}
