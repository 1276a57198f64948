//! The route table.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

pub use crate::backend::{Backend, BackendTarget, ServicePortRef, UpstreamProtocol};
use crate::canary::Canary;
use crate::host::{HostPattern, wildcard_suffix};
pub use crate::object::ObjectName;
pub use crate::route::Route;
use crate::tls::CertStore;
pub use crate::vhost::VirtualHost;

/// The answer of [`RouteTable::select`].
#[derive(Debug)]
pub struct Selected<'a> {
    /// The virtual host the request falls in, if any.
    pub host: Option<&'a VirtualHost>,
    /// The matching path, if any.
    pub route: Option<&'a Arc<Route>>,
    /// Where the request goes: the route's backend, else the host's
    /// fallback, else the table's default backend. `None`: 404 from the
    /// built-in default backend.
    pub backend: Option<&'a Arc<Backend>>,
}

/// All virtual hosts, the default backend and the certificates.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    exact_hosts: HashMap<String, VirtualHost>,
    /// By the suffix after `*.`.
    wildcard_hosts: HashMap<String, VirtualHost>,
    /// The rules without host.
    any_host: Option<VirtualHost>,
    default_backend: Option<Arc<Backend>>,
    certificates: CertStore,
}

impl RouteTable {
    /// A table without routes: every request gets 404.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The virtual host and route for a request. `host` is [normalised](crate::host::normalize_host)
    /// (`None` when the request has none); `path` is [normalised](crate::path::normalize_path).
    ///
    /// Host: an exact host, else a wildcard host, else the rules without
    /// host. Within it: the longest matching path; `Exact` beats `Prefix`
    /// on the same path.
    ///
    /// Every host is a server of its own, as in ingress-nginx: when the
    /// request's host has a virtual host but none of its paths matches, the
    /// request goes to that host's fallback (else the table's default
    /// backend), never to the rules without host.
    pub fn select(&self, host: Option<&str>, path: &str) -> Selected<'_> {
        let vhost = host.and_then(|host| self.host(host)).or(self.any_host.as_ref());
        let route = vhost.and_then(|v| v.select(path));
        let backend = route
            .map(|r| &r.backend)
            .or_else(|| vhost.and_then(|v| v.fallback.as_ref()))
            .or(self.default_backend.as_ref());
        Selected { host: vhost, route, backend }
    }

    /// The virtual host of a normalised host name: exact, else wildcard.
    fn host(&self, host: &str) -> Option<&VirtualHost> {
        self.exact_hosts.get(host).or_else(|| wildcard_suffix(host).and_then(|suffix| self.wildcard_hosts.get(suffix)))
    }

    /// The virtual host of exactly this pattern (`None`: the rules without
    /// host), not of a pattern that would match it.
    pub fn virtual_host(&self, host: Option<&HostPattern>) -> Option<&VirtualHost> {
        match host {
            None => self.any_host.as_ref(),
            Some(HostPattern::Exact(name)) => self.exact_hosts.get(name),
            Some(HostPattern::Wildcard(suffix)) => self.wildcard_hosts.get(suffix),
        }
    }

    /// Every virtual host, by name (the rules without host, named `""`,
    /// first).
    pub fn virtual_hosts(&self) -> Vec<&VirtualHost> {
        let all = self.any_host.iter().chain(self.exact_hosts.values()).chain(self.wildcard_hosts.values());
        let mut hosts: Vec<&VirtualHost> = all.collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        hosts
    }

    pub fn certificates(&self) -> &CertStore {
        &self.certificates
    }

    pub fn default_backend(&self) -> Option<&Arc<Backend>> {
        self.default_backend.as_ref()
    }
}

/// Builds a [`RouteTable`]; used by the Ingress compiler.
#[derive(Debug, Default)]
pub struct RouteTableBuilder {
    table: RouteTable,
    /// The hosts given to [`set_tls_redirect`](Self::set_tls_redirect).
    tls_hosts: BTreeSet<HostPattern>,
}

impl RouteTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The virtual host of `host`, created empty if needed.
    fn vhost(&mut self, host: Option<&HostPattern>) -> &mut VirtualHost {
        let table = &mut self.table;
        match host {
            None => table.any_host.get_or_insert_with(|| VirtualHost::named(String::new())),
            Some(pattern @ HostPattern::Exact(name)) => {
                table.exact_hosts.entry(name.clone()).or_insert_with(|| VirtualHost::named(pattern.to_string()))
            }
            Some(pattern @ HostPattern::Wildcard(suffix)) => {
                table.wildcard_hosts.entry(suffix.clone()).or_insert_with(|| VirtualHost::named(pattern.to_string()))
            }
        }
    }

    /// Declares the virtual host `host` (an Ingress rule without paths):
    /// its requests then get its fallback or the default backend, not the
    /// rules without host.
    pub fn add_host(&mut self, host: Option<&HostPattern>) {
        self.vhost(host);
    }

    /// Adds a path route to the virtual host `host` (`None`: the rules
    /// without host). When the host already has a route with the same
    /// normalised path and path type, the first one stays and is returned
    /// as the error.
    pub fn add_route(&mut self, host: Option<&HostPattern>, route: Route) -> Result<(), Arc<Route>> {
        self.vhost(host).insert(route)
    }

    /// The route of `host` with exactly this path (as written) and path
    /// type, if one was added.
    pub fn route(&self, host: Option<&HostPattern>, path: &str, path_type: crate::path::PathType) -> Option<&Route> {
        self.table.virtual_host(host)?.route(path, path_type).map(|r| &**r)
    }

    /// Gives the [route](Self::route) its canary. Its existing canary, if
    /// any, stays and is returned as the error; a missing route is left
    /// alone.
    pub fn set_canary(
        &mut self,
        host: Option<&HostPattern>,
        path: &str,
        path_type: crate::path::PathType,
        canary: Arc<Canary>,
    ) -> Result<(), Arc<Canary>> {
        self.vhost(host).set_canary(path, path_type, canary)
    }

    /// Sets where requests for `host` that match no path go. The first
    /// call for a host wins (returns false after that).
    pub fn set_fallback(&mut self, host: Option<&HostPattern>, backend: Arc<Backend>) -> bool {
        let vhost = self.vhost(host);
        if vhost.fallback.is_some() {
            return false;
        }
        vhost.fallback = Some(backend);
        true
    }

    /// Sets `app-root` of `host` (`None`: the rules without host); the
    /// first call for a host wins.
    pub fn set_app_root(&mut self, host: Option<&HostPattern>, root: &str) {
        let vhost = self.vhost(host);
        if vhost.app_root.is_none() {
            vhost.app_root = Some(root.to_string());
        }
    }

    /// Marks `host` as served over TLS (plain HTTP requests are redirected).
    ///
    /// Applied when the table is built, to the virtual hosts that exist
    /// then: `host`'s own and, for a wildcard, the exact hosts it covers
    /// (as ingress-nginx gives a rule host the certificate of a TLS section
    /// whose wildcard covers it). A TLS host without rules gets no virtual
    /// host: its requests keep going to the rules without host.
    pub fn set_tls_redirect(&mut self, host: &HostPattern) {
        self.tls_hosts.insert(host.clone());
    }

    /// Sets the table's default backend (an Ingress `spec.defaultBackend`).
    /// The first call wins (returns false after that).
    pub fn set_default_backend(&mut self, backend: Arc<Backend>) -> bool {
        if self.table.default_backend.is_some() {
            return false;
        }
        self.table.default_backend = Some(backend);
        true
    }

    /// Adds the certificate for `host`. The first one for a host wins
    /// (returns false after that).
    pub fn add_certificate(&mut self, host: &HostPattern, key: Arc<rustls::sign::CertifiedKey>) -> bool {
        self.table.certificates.insert(host, key)
    }

    pub fn build(mut self) -> RouteTable {
        let tls_hosts = &self.tls_hosts;
        for (name, vhost) in &mut self.table.exact_hosts {
            let wildcard = wildcard_suffix(name).map(|suffix| HostPattern::Wildcard(suffix.to_string()));
            vhost.tls_redirect = tls_hosts.contains(&HostPattern::Exact(name.clone()))
                || wildcard.is_some_and(|w| tls_hosts.contains(&w));
        }
        for (suffix, vhost) in &mut self.table.wildcard_hosts {
            vhost.tls_redirect = tls_hosts.contains(&HostPattern::Wildcard(suffix.clone()));
        }
        self.table
    }
}

#[cfg(test)]
mod tests;
