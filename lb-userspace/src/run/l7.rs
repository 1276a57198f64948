//! The Ingress side of `lb run`: compiling route tables and swapping them
//! into the proxy.

use std::sync::Arc;

use lb_proxy::{ProxyConfig, RouteHandle};
use tracing::{debug, info, warn};

use crate::cli::IngressArgs;
use crate::compile::l7::{L7Dependencies, L7Options, PathRegexes, compile_l7_tracked};
use crate::diagnostics::Diagnostic;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

pub struct L7 {
    routes: RouteHandle,
    options: L7Options,
    /// The last compile: a snapshot whose changes concern none of its
    /// objects is not compiled again.
    last: Option<LastCompile>,
    /// The path regexes of the last compile, for the next one.
    regexes: PathRegexes,
    /// `nginx_ingress_controller_config_last_reload_*`.
    metrics: Arc<Metrics>,
}

struct LastCompile {
    /// The snapshot seen last (compiled, or with changes that did not
    /// concern the routes).
    snapshot: Arc<Snapshot>,
    dependencies: L7Dependencies,
    diagnostics: Vec<Diagnostic>,
}

impl L7 {
    pub fn new(args: &IngressArgs, routes: RouteHandle, metrics: Arc<Metrics>) -> Self {
        let options =
            L7Options { controller_name: args.controller_name.clone(), ingress_class: args.ingress_class.clone() };
        Self { routes, options, last: None, regexes: PathRegexes::new(), metrics }
    }

    /// Which Ingresses are ours.
    pub fn options(&self) -> &L7Options {
        &self.options
    }

    /// Compiles the snapshot's Ingresses and swaps the new table in: in-flight
    /// requests finish on the table they started with. Returns (and logs)
    /// the problems found. A snapshot whose changes concern neither an
    /// Ingress, IngressClass or Secret nor a Service the Ingresses name (or
    /// its EndpointSlices) leaves the table as it is.
    pub fn sync(&mut self, snapshot: &Arc<Snapshot>) -> Vec<Diagnostic> {
        if let Some(last) = &mut self.last {
            let changes = snapshot.changes_since(&last.snapshot);
            if !last.dependencies.affected_by(&changes, &last.snapshot, snapshot) {
                debug!("no change concerns the routes");
                last.snapshot = snapshot.clone();
                return last.diagnostics.clone();
            }
        }
        let compiled = compile_l7_tracked(snapshot, &self.options, &mut self.regexes);
        for diagnostic in &compiled.diagnostics {
            warn!("{diagnostic}");
        }
        self.metrics.requests().retain(&compiled.table);
        self.routes.update(compiled.table);
        self.metrics.reloaded();
        self.metrics.certificates(&compiled.certificates);
        info!(ingresses = snapshot.ingresses.len(), regexes_compiled = self.regexes.compiled(), "routes applied");
        let (dependencies, diagnostics) = (compiled.dependencies, compiled.diagnostics);
        self.last = Some(LastCompile { snapshot: snapshot.clone(), dependencies, diagnostics: diagnostics.clone() });
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
        shutdown_grace: args.shutdown_grace,
        // Beside an old agent on the same ports, take no connection before
        // the routes are loaded.
        listen_when_routed: true,
        ..ProxyConfig::default()
    }
}

/// The sysctl that moves connections queued on a closed `SO_REUSEPORT`
/// listener (established ones not yet accepted, and handshakes in
/// progress) to another listener of the port instead of resetting them.
const TCP_MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// Sets `net.ipv4.tcp_migrate_req` to 1 in the agent's network namespace,
/// so that when this agent (or an older one beside it) closes its
/// listeners, their accept queues move to the other agent's listeners
/// instead of being reset (ARCHITECTURE.md, *Listener handover*). Warns
/// and goes on when it cannot (no root, a read-only `/proc/sys`, a kernel
/// before 5.14): a handover then resets the connections queued at that
/// moment.
pub fn enable_request_migration() {
    match std::fs::read_to_string(TCP_MIGRATE_REQ) {
        Ok(value) if value.trim() == "1" => {
            info!("net.ipv4.tcp_migrate_req is 1: queued connections move to a new agent's listeners on handover")
        }
        Ok(_) => match std::fs::write(TCP_MIGRATE_REQ, "1") {
            Ok(()) => info!(
                "set net.ipv4.tcp_migrate_req to 1: queued connections move to a new agent's listeners on handover"
            ),
            Err(e) => warn!(
                "cannot set net.ipv4.tcp_migrate_req to 1 ({e}): on a handover to a new agent, connections queued on this agent's listeners are reset"
            ),
        },
        Err(e) => warn!(
            "cannot read net.ipv4.tcp_migrate_req ({e}; kernel before 5.14?): on a handover to a new agent, connections queued on this agent's listeners are reset"
        ),
    }
}
