//! The health checks kept from one snapshot to the next: a change reads
//! only the Services it concerns (their objects or their EndpointSlices),
//! so one EndpointSlice change costs the same in a cluster of any size.
//! The result never depends on the history: it is what
//! [`compile_health_checks`] gives for the snapshot (a test checks this).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::HealthCheck;
use super::local_endpoints::{Wanted, assemble, service_key, wanted};
use crate::compile::endpoints::SliceIndex;
use crate::diagnostics::Diagnostic;
use crate::snapshot::{ObjectKey, Snapshot, object_key};

/// The health check node ports of `node_name`, by port: each Service of
/// `type: LoadBalancer` with `externalTrafficPolicy: Local` and its
/// `spec.healthCheckNodePort`, with the number of its ready endpoints on
/// this node (see the [module](super) documentation for the rules). Ports
/// that cannot be used (unset, out of range, set where it means nothing,
/// claimed by an earlier Service) are diagnosed and left out.
pub fn compile_health_checks(snapshot: &Snapshot, node_name: &str) -> (BTreeMap<u16, HealthCheck>, Vec<Diagnostic>) {
    let mut compiler = HealthCheckCompiler::default();
    compiler.compile_all(snapshot, node_name);
    (compiler.checks, compiler.diagnostics)
}

#[derive(Debug, Default)]
pub struct HealthCheckCompiler {
    /// The parts of the Services that have one, by (namespace as written,
    /// name): the canonical order in which ports are given out.
    wanted: BTreeMap<ObjectKey, Wanted>,
    checks: BTreeMap<u16, HealthCheck>,
    diagnostics: Vec<Diagnostic>,
}

impl HealthCheckCompiler {
    /// The checks by port.
    pub fn checks(&self) -> &BTreeMap<u16, HealthCheck> {
        &self.checks
    }

    /// The problems found.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Compiles every Service of `snapshot`.
    pub fn compile_all(&mut self, snapshot: &Snapshot, node_name: &str) {
        let slices = SliceIndex::new(&snapshot.endpoint_slices);
        self.wanted = snapshot
            .services
            .iter()
            .filter_map(|service| {
                let (namespace, name) = service_key(service);
                let part = wanted(service, slices.for_service(namespace, name), node_name)?;
                let (namespace, name) = object_key(&service.metadata);
                Some(((namespace.to_string(), name.to_string()), part))
            })
            .collect();
        (self.checks, self.diagnostics) = assemble(self.wanted.values());
    }

    /// Compiles again the Services `concerned` (by namespace, an empty one
    /// being `default`, and name), whose EndpointSlices `slices_of` gives.
    pub fn compile_changes<'s>(
        &mut self,
        snapshot: &Snapshot,
        concerned: &BTreeSet<ObjectKey>,
        slices_of: impl Fn(&ObjectKey) -> Vec<&'s EndpointSlice>,
        node_name: &str,
    ) {
        if concerned.is_empty() {
            return;
        }
        for key in concerned {
            let (namespace, name) = (key.0.as_str(), key.1.as_str());
            // A Service of `default` may be written without a namespace.
            let written: &[&str] = if namespace == "default" { &["default", ""] } else { &[namespace] };
            for &as_written in written {
                let at = (as_written.to_string(), name.to_string());
                self.wanted.remove(&at);
                let Some(service) = snapshot.service(as_written, name) else { continue };
                if let Some(part) = wanted(service, &slices_of(key), node_name) {
                    self.wanted.insert(at, part);
                }
            }
        }
        (self.checks, self.diagnostics) = assemble(self.wanted.values());
    }
}
