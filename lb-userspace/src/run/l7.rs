//! The Ingress side of `lb run`: compiling route tables and swapping them
//! into the proxy.

use lb_proxy::{ProxyConfig, RouteHandle};
use tracing::{info, warn};

use crate::cli::IngressArgs;
use crate::compile::l7::{L7Options, compile_l7};
use crate::diagnostics::Diagnostic;
use crate::snapshot::Snapshot;

pub struct L7 {
    routes: RouteHandle,
    options: L7Options,
}

impl L7 {
    pub fn new(args: &IngressArgs, routes: RouteHandle) -> Self {
        let options =
            L7Options { controller_name: args.controller_name.clone(), ingress_class: args.ingress_class.clone() };
        Self { routes, options }
    }

    /// Which Ingresses are ours.
    pub fn options(&self) -> &L7Options {
        &self.options
    }

    /// Compiles the snapshot's Ingresses and swaps the new table in: in-flight
    /// requests finish on the table they started with. Returns (and logs)
    /// the problems found.
    pub fn sync(&self, snapshot: &Snapshot) -> Vec<Diagnostic> {
        let (table, diagnostics) = compile_l7(snapshot, &self.options);
        for diagnostic in &diagnostics {
            warn!("{diagnostic}");
        }
        self.routes.update(table);
        info!(ingresses = snapshot.ingresses.len(), "routes applied");
        diagnostics
    }
}

/// The proxy's settings from the command line.
pub fn proxy_config(args: &IngressArgs) -> ProxyConfig {
    ProxyConfig {
        http_addr: args.http_addr,
        https_addr: args.https_addr,
        client_header_timeout: args.client_header_timeout,
        client_idle_timeout: args.client_idle_timeout,
        upstream_connect_timeout: args.upstream_connect_timeout,
        upstream_response_timeout: args.upstream_timeout,
        proxy_body_size: args.proxy_body_size.limit(),
        dns_servers: args.dns_servers.clone(),
        ..ProxyConfig::default()
    }
}
