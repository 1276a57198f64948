//! One virtual host: the paths of the Ingress rules for one host pattern,
//! and how a request path picks one of them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use crate::backend::Backend;
use crate::labels::RequestLabels;
use crate::path::{PathType, normalize_path, prefix_candidates, prefix_key};
use crate::route::Route;

/// The routes of one host pattern (or of the rules without host).
#[derive(Clone, Debug, Default)]
pub struct VirtualHost {
    /// `a.com`, `*.foo.com`, or empty for the rules without host.
    pub name: String,
    /// A certificate is configured for this host (`spec.tls`): plain HTTP
    /// requests are redirected to HTTPS with 308, as ingress-nginx does by
    /// default.
    pub tls_redirect: bool,
    /// Requests for this host that match no path go here (the `spec.defaultBackend`
    /// of the Ingress that defines the host); `None`: the table's default.
    pub fallback: Option<Arc<Backend>>,
    /// `app-root`: a request for `/` is redirected (302) here.
    pub app_root: Option<String>,
    /// What its requests that match no route are counted under.
    pub labels: Arc<RequestLabels>,
    /// `Exact` routes, by normalised path.
    exact: HashMap<String, Arc<Route>>,
    /// `Prefix` and `ImplementationSpecific` routes, by prefix key (the
    /// normalised path without its trailing slash): a request path is looked up
    /// once per path element, longest first, instead of scanning every
    /// route.
    prefixes: HashMap<String, PrefixRoutes>,
    /// Regex routes (a host with `use-regex`), in the order they are tried:
    /// as ingress-nginx writes nginx locations, the longest path (as
    /// written) first, then the greater path; the first match wins.
    regex: Vec<Arc<Route>>,
}

impl VirtualHost {
    /// Adds a regex route at its place in the order of [`Self::regex`]; a
    /// route with the same path as written is there already: it stays.
    fn insert_regex(&mut self, route: Route) -> Result<(), Arc<Route>> {
        if let Some(existing) = self.regex.iter().find(|r| r.path == route.path) {
            return Err(Arc::clone(existing));
        }
        let key = |r: &Route| (std::cmp::Reverse(r.path.len()), std::cmp::Reverse(r.path.clone()));
        let at = self.regex.partition_point(|r| key(r) <= key(&route));
        self.regex.insert(at, Arc::new(route));
        Ok(())
    }
}

/// The routes sharing one prefix key, one per path type.
#[derive(Clone, Debug, Default)]
struct PrefixRoutes {
    prefix: Option<Arc<Route>>,
    implementation_specific: Option<Arc<Route>>,
}

impl PrefixRoutes {
    fn get(&self, path_type: PathType) -> &Option<Arc<Route>> {
        match path_type {
            PathType::ImplementationSpecific => &self.implementation_specific,
            PathType::Exact | PathType::Prefix => &self.prefix,
        }
    }

    fn slot(&mut self, path_type: PathType) -> &mut Option<Arc<Route>> {
        match path_type {
            PathType::ImplementationSpecific => &mut self.implementation_specific,
            PathType::Exact | PathType::Prefix => &mut self.prefix,
        }
    }

    /// `Prefix` before `ImplementationSpecific` on the same path: its
    /// meaning is the one the API defines.
    fn best(&self) -> Option<&Arc<Route>> {
        self.prefix.as_ref().or(self.implementation_specific.as_ref())
    }
}

impl VirtualHost {
    pub(crate) fn named(name: String) -> Self {
        Self { labels: Arc::new(RequestLabels::unrouted(&name)), name, ..Self::default() }
    }

    /// The route for a [normalised](crate::path::normalize_path) request
    /// path: the longest matching path, `Exact` beating `Prefix` on the
    /// same path.
    ///
    /// A matching `Exact` path is the whole request path, so it is never
    /// shorter than a matching prefix: it wins whenever there is one.
    /// Among prefixes, the one with the most path elements wins.
    pub fn select(&self, path: &str) -> Option<&Arc<Route>> {
        if let Some(route) = self.exact.get(path) {
            return Some(route);
        }
        if let Some(route) = self.regex.iter().find(|r| r.regex.as_ref().is_some_and(|re| re.is_match(path))) {
            return Some(route);
        }
        prefix_candidates(path).find_map(|key| self.prefixes.get(key).and_then(PrefixRoutes::best))
    }

    /// Every route of this host, by path as written, then path type.
    pub fn routes(&self) -> Vec<&Arc<Route>> {
        let prefixes = self.prefixes.values().flat_map(|p| [&p.prefix, &p.implementation_specific]).flatten();
        let mut routes: Vec<&Arc<Route>> = self.exact.values().chain(prefixes).chain(&self.regex).collect();
        routes.sort_by(|a, b| (&a.path, a.path_type, &a.ingress).cmp(&(&b.path, b.path_type, &b.ingress)));
        routes
    }

    /// The route with exactly this path (as written) and path type.
    pub fn route(&self, path: &str, path_type: PathType) -> Option<&Arc<Route>> {
        let normalized = normalize_path(path).map_or_else(|_| path.to_string(), |p| p.into_owned());
        let regex = self.regex.iter().find(|r| r.path == path && r.path_type == path_type);
        let route = match (regex, path_type) {
            (Some(route), _) => route,
            (None, PathType::Exact) => self.exact.get(&normalized)?,
            (None, path_type) => self.prefixes.get(prefix_key(&normalized))?.get(path_type).as_ref()?,
        };
        (route.path == path && route.path_type == path_type).then_some(route)
    }

    /// [`Self::route`], for changing it while the table is built.
    fn route_mut(&mut self, path: &str, path_type: PathType) -> Option<&mut Route> {
        let normalized = normalize_path(path).map_or_else(|_| path.to_string(), |p| p.into_owned());
        let regex = self.regex.iter_mut().find(|r| r.path == path && r.path_type == path_type);
        let route = match (regex, path_type) {
            (Some(route), _) => route,
            (None, PathType::Exact) => self.exact.get_mut(&normalized)?,
            (None, path_type) => self.prefixes.get_mut(prefix_key(&normalized))?.slot(path_type).as_mut()?,
        };
        (route.path == path && route.path_type == path_type).then(|| Arc::make_mut(route))
    }

    /// Gives the route with this path and path type `canary` (see
    /// [`crate::RouteTableBuilder::set_canary`]).
    pub(crate) fn set_canary(
        &mut self,
        path: &str,
        path_type: PathType,
        canary: Arc<crate::canary::Canary>,
    ) -> Result<(), Arc<crate::canary::Canary>> {
        let name = self.name.clone();
        let Some(route) = self.route_mut(path, path_type) else { return Ok(()) };
        match &route.canary {
            Some(existing) => Err(Arc::clone(existing)),
            None => {
                route.canary = Some(canary);
                route.label(&name);
                Ok(())
            }
        }
    }

    /// Whether the host has no path (its requests all go to the fallback).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty() && self.regex.is_empty()
    }

    /// Adds `route` unless a route with the same normalised path and path
    /// type exists; that one is returned then.
    ///
    /// A path that does not normalise (the compiler diagnoses those first)
    /// is kept as written: no normalised request path equals it.
    pub(crate) fn insert(&mut self, mut route: Route) -> Result<(), Arc<Route>> {
        route.label(&self.name);
        if route.regex.is_some() && route.path_type != PathType::Exact {
            return self.insert_regex(route);
        }
        let normalized = normalize_path(&route.path).map_or_else(|_| route.path.clone(), |p| p.into_owned());
        let slot = match route.path_type {
            PathType::Exact => match self.exact.entry(normalized) {
                Entry::Occupied(existing) => return Err(Arc::clone(existing.get())),
                Entry::Vacant(entry) => {
                    entry.insert(Arc::new(route));
                    return Ok(());
                }
            },
            path_type => self.prefixes.entry(prefix_key(&normalized).to_string()).or_default().slot(path_type),
        };
        match slot {
            Some(existing) => Err(Arc::clone(existing)),
            None => {
                *slot = Some(Arc::new(route));
                Ok(())
            }
        }
    }
}
