//! Which backend of a route with a canary a request goes to (see
//! [`lb_routes::canary`] for the rule). A request whose affinity cookie
//! names an endpoint of one of the two backends stays on that backend, as
//! ingress-nginx keeps an affinitized request on its balancer.

use std::sync::Arc;

use http::HeaderMap;
use lb_routes::{Backend, BackendTarget, Canary, Route};
use rand::Rng;

use crate::{affinity, cookies};

/// The route's backend, or its canary's.
pub(crate) fn backend<'r>(route: &'r Route, headers: &HeaderMap) -> &'r Arc<Backend> {
    match &route.canary {
        Some(canary) if picks_canary(route, canary, headers) => &canary.backend,
        _ => &route.backend,
    }
}

fn picks_canary(route: &Route, canary: &Canary, headers: &HeaderMap) -> bool {
    if let Some(affinity) = &route.policy.affinity {
        let names = |backend: &Backend| match &backend.target {
            BackendTarget::Endpoints(endpoints) => affinity::sticky(affinity, headers, endpoints).is_some(),
            BackendTarget::ExternalName { .. } => false,
        };
        if names(&route.backend) {
            return false;
        }
        if names(&canary.backend) {
            return true;
        }
    }
    let rule = &canary.rule;
    let header = rule.by_header.as_ref().and_then(|h| headers.get(h.name.as_str())).and_then(|v| v.to_str().ok());
    let cookie = rule.by_cookie.as_deref().and_then(|name| cookies::value(headers, name));
    rule.picks_canary(header, cookie.as_deref(), |n| rand::rng().random_range(1..=n.max(1)))
}
