//! `/inspect/routes` from the proxy's route table in use.

use std::collections::BTreeMap;

use lb_routes::{Backend, BackendTarget, RouteTable};

use super::model::{CertificateReport, HostReport, PathReport, RoutesReport};
use crate::compile::l7::HostCertificate;
use crate::diagnostics::Diagnostic;
use crate::snapshot::Snapshot;

/// The annotations lb reads, all under this prefix.
const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Hosts → paths → backends; each route with the annotations of its
/// Ingress that are in effect (those not rejected by a diagnostic).
pub fn routes_report(
    table: &RouteTable,
    snapshot: &Snapshot,
    diagnostics: &[Diagnostic],
    certificates: &[HostCertificate],
) -> RoutesReport {
    let hosts = table
        .virtual_hosts()
        .into_iter()
        .map(|vhost| HostReport {
            host: vhost.name.clone(),
            tls_redirect: vhost.tls_redirect,
            certificate: certificates
                .iter()
                .find(|c| c.host == vhost.name)
                .map(|c| CertificateReport { secret: c.secret.to_string(), not_after: rfc3339(c.expires) }),
            paths: vhost
                .routes()
                .into_iter()
                .map(|route| PathReport {
                    path: route.path.clone(),
                    path_type: route.path_type.to_string(),
                    ingress: route.ingress.to_string(),
                    backend: route.backend.service.to_string(),
                    endpoints: endpoints(&route.backend),
                    canary: route.canary.as_ref().map(|c| c.backend.service.to_string()),
                    annotations: annotations(snapshot, diagnostics, &route.ingress.namespace, &route.ingress.name),
                })
                .collect(),
        })
        .collect();
    RoutesReport { hosts, default_backend: table.default_backend().map(|b| b.service.to_string()) }
}

fn endpoints(backend: &Backend) -> Vec<String> {
    match &backend.target {
        BackendTarget::Endpoints(endpoints) => endpoints.iter().map(ToString::to_string).collect(),
        BackendTarget::ExternalName { host, port } => vec![format!("{host}:{port}")],
    }
}

fn annotations(
    snapshot: &Snapshot,
    diagnostics: &[Diagnostic],
    namespace: &str,
    name: &str,
) -> BTreeMap<String, String> {
    let Some(ingress) = snapshot.ingresses.get(namespace, name) else { return BTreeMap::new() };
    let rejected = |key: &str| {
        let field = format!("metadata.annotations[{key}]");
        diagnostics.iter().any(|d| {
            d.field == field
                && d.subject.as_ref().is_some_and(|s| s.kind == "Ingress" && s.namespace == namespace && s.name == name)
        })
    };
    ingress
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(key, _)| key.starts_with(NGINX_PREFIX) && !rejected(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

fn rfc3339(unix_seconds: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}
