//! Endpoint choice: a random starting endpoint per request, then the
//! following ones in order for retries (random rather than round-robin:
//! backends are shared by many routes and tables, and a random start needs
//! no per-backend state that would have to survive table swaps).

use std::net::SocketAddr;

use lb_routes::{Backend, BackendTarget};
use rand::Rng;

use crate::errors::ProxyError;
use crate::resolve::Resolver;

/// The most endpoints one request tries (`proxy-next-upstream-tries: 0`
/// means every endpoint, up to this many).
pub(crate) const MAX_ATTEMPTS: usize = 100;

/// The endpoints of one request, in attempt order.
#[derive(Debug)]
pub(crate) struct Peers(pub Vec<SocketAddr>);

impl Peers {
    /// The endpoints to try for `backend`: up to `tries`, from a random
    /// start; an `ExternalName` is resolved with `resolver`. No endpoints:
    /// 503; an `ExternalName` that does not resolve: 502.
    pub(super) async fn for_backend(backend: &Backend, tries: usize, resolver: &Resolver) -> Result<Self, ProxyError> {
        match &backend.target {
            BackendTarget::Endpoints(endpoints) if endpoints.is_empty() => {
                Err(ProxyError::NoEndpoints(backend.service.to_string()))
            }
            BackendTarget::Endpoints(endpoints) => {
                Ok(Peers(attempt_order(endpoints, random_start(endpoints.len()), tries)))
            }
            BackendTarget::ExternalName { host, port } => {
                // Boxed: a lookup's future would otherwise size every request's.
                let ips =
                    Box::pin(resolver.resolve(host)).await.ok_or_else(|| ProxyError::Unresolvable(host.clone()))?;
                let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, *port)).collect();
                Ok(Peers(attempt_order(&addrs, random_start(addrs.len()), tries)))
            }
        }
    }
}

fn random_start(len: usize) -> usize {
    if len <= 1 { 0 } else { rand::rng().random_range(0..len) }
}

/// Up to `tries` distinct endpoints, starting at `start` and wrapping
/// around.
fn attempt_order(endpoints: &[SocketAddr], start: usize, tries: usize) -> Vec<SocketAddr> {
    let len = endpoints.len();
    (0..len.min(tries)).map(|i| endpoints[(start + i) % len]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n).map(|i| SocketAddr::from(([10, 0, 0, 1], 8000 + i))).collect()
    }

    #[test]
    fn attempt_order_wraps_and_caps() {
        let endpoints = addrs(5);
        assert_eq!(attempt_order(&endpoints, 3, 3), vec![endpoints[3], endpoints[4], endpoints[0]]);
        assert_eq!(attempt_order(&endpoints, 3, 1), vec![endpoints[3]]);
        assert_eq!(attempt_order(&endpoints, 0, MAX_ATTEMPTS), endpoints);
        let two = addrs(2);
        assert_eq!(attempt_order(&two, 1, 3), vec![two[1], two[0]]);
        assert_eq!(attempt_order(&addrs(1), 0, 3).len(), 1);
    }

    #[test]
    fn random_start_in_range() {
        assert_eq!(random_start(0), 0);
        assert_eq!(random_start(1), 0);
        for _ in 0..100 {
            assert!(random_start(3) < 3);
        }
    }
}
