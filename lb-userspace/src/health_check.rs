//! Health check node ports, as kube-proxy serves them for cloud load
//! balancers.
//!
//! A Service of `type: LoadBalancer` with `externalTrafficPolicy: Local`
//! only serves traffic on the nodes that run one of its endpoints, so the
//! cloud load balancer must know which nodes those are. It probes every
//! node on the Service's `spec.healthCheckNodePort` (allocated by the API
//! server): a node answers `200` while it has at least one ready local
//! endpoint of the Service, `503` otherwise.
//!
//! - [`compile_health_checks`] (pure) finds the ports and counts each
//!   Service's local endpoints on this node; [`HealthCheckCompiler`] keeps
//!   that from one snapshot to the next and reads again only the Services
//!   a change concerns.
//! - [`HealthCheckServer`] listens on those ports and answers the probes.
//!
//! The agent calls both after each snapshot: `update` keeps the listeners
//! of the ports still wanted (only their counts change), opens the new
//! ones and closes the others.
//!
//! # What kube-proxy does, and what is matched
//!
//! (`pkg/proxy/healthcheck/service_health.go`, `pkg/proxy/endpoints.go`,
//! `pkg/proxy/endpointslicecache.go` of kubernetes/kubernetes.)
//!
//! - Which Services: `type: LoadBalancer` and `externalTrafficPolicy:
//!   Local` with a non-zero `spec.healthCheckNodePort` (the API server
//!   refuses the field elsewhere; here, where manifests are not validated,
//!   it is diagnosed and ignored). A Service without one is diagnosed, as
//!   kube-proxy logs an error for it. Headless Services are skipped.
//! - The count: the distinct IP addresses of the Service's endpoints that
//!   are on this node (`nodeName`) and ready (`ready` unset means ready),
//!   over all its ports: a pod serving ports 80 and 443 counts once.
//!   Terminating endpoints never count, even when the data path falls back
//!   to them: a node whose endpoints are all terminating answers `503`, so
//!   that the load balancer drains it while existing connections finish.
//!   An endpoint counts only where it is a backend of one of the Service's
//!   ports (the target port resolves in its EndpointSlice, see
//!   [`crate::compile`]'s endpoint rules), so the probe agrees with what
//!   this node's data path would forward to.
//! - The answer: any method and path; `200` when the count is not zero and
//!   the proxy is healthy, else `503`; headers `Content-Type:
//!   application/json`, `X-Content-Type-Options: nosniff` and
//!   `X-Load-Balancing-Endpoint-Weight: <count>`; body
//!   `{"service":{"namespace":…,"name":…},"localEndpoints":N,"serviceProxyHealthy":true}`.
//! - `serviceProxyHealthy`: kube-proxy reports whether its rules are in
//!   sync (no update pending longer than its timeout). The agent has no
//!   such notion yet: it is `true` while the agent runs (a stopped agent
//!   does not answer at all, which load balancers treat as unhealthy).
//! - Listening: on all addresses (`0.0.0.0`) by default, like kube-proxy
//!   without `--nodeport-addresses`. A port that cannot be opened is logged
//!   (kube-proxy also records an Event) and retried at the next update;
//!   the other ports are served meanwhile.
//!
//! Two Services with the same port (which the API server prevents): the
//! first by (namespace, name) gets it, the other is diagnosed.

mod compiler;
mod local_endpoints;
mod response;
mod server;
#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;

pub use compiler::{HealthCheckCompiler, compile_health_checks};
pub use server::HealthCheckServer;

/// What one health check node port reports: the Service, and its ready
/// endpoints on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub namespace: String,
    pub name: String,
    /// Distinct addresses of the Service's ready endpoints on this node.
    pub local_endpoints: usize,
}
