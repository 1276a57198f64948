//! Canary Ingresses (`canary: "true"`), compiled after all the others:
//! each of their paths becomes the canary of the route of another Ingress
//! with the same host, path (as written) and path type, as ingress-nginx
//! merges "alternative backends". The route keeps everything else of its
//! own Ingress (policy, regex, TLS): only the backend changes for the
//! requests the canary rule picks.
//!
//! - A canary path without such a route is diagnosed and not used.
//! - One canary per route: the first canary Ingress (oldest) wins.
//! - A canary whose backend is the route's own Service port is diagnosed.
//! - A canary Ingress's `spec.defaultBackend` and `spec.tls` are not used.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress};
use lb_routes::{Canary, CanaryRule, HostPattern};

use super::{Compiler, IngressRef};

impl Compiler<'_> {
    pub(super) fn canary_ingress(&mut self, ingress: &Ingress, rule: &CanaryRule) {
        let ing = IngressRef::new(ingress);
        let Some(spec) = &ingress.spec else { return };
        if spec.default_backend.is_some() {
            let message = "the default backend of a canary Ingress is not used";
            self.diagnostics.push(ing.diagnostic("spec.defaultBackend", message));
        }
        for (i, ingress_rule) in spec.rules.iter().flatten().enumerate() {
            let Some(host) = self.rule_host(&ing, i, ingress_rule) else { continue };
            let paths = ingress_rule.http.as_ref().map(|h| h.paths.as_slice()).unwrap_or_default();
            for (j, path) in paths.iter().enumerate() {
                let field = format!("spec.rules[{i}].http.paths[{j}]");
                self.canary_path(&ing, host.as_ref(), &field, path, rule);
            }
        }
    }

    fn canary_path(
        &mut self,
        ing: &IngressRef<'_>,
        host: Option<&HostPattern>,
        field: &str,
        path: &HTTPIngressPath,
        rule: &CanaryRule,
    ) {
        let regex_host = self.regex_hosts.contains(&host.cloned());
        let Some((path_type, rule_path)) = self.path_rule(ing, field, path, regex_host) else { return };
        let field_backend = format!("{field}.backend");
        let Some(backend) = self.backends.resolve(ing, &path.backend, &field_backend, &mut self.diagnostics) else {
            return;
        };
        let where_ = match host {
            Some(host) => format!("host {host}, path {rule_path:?} ({path_type})"),
            None => format!("any host, path {rule_path:?} ({path_type})"),
        };
        let main = self.builder.route(host, &rule_path, path_type).map(|r| (r.ingress.clone(), r.backend.clone()));
        let Some((main_ingress, main_backend)) = main else {
            let message = format!("no Ingress routes {where_}; the canary path is not used");
            self.diagnostics.push(ing.diagnostic(format!("{field}.path"), message));
            return;
        };
        if main_backend.service == backend.service {
            let message = format!(
                "{where_} of Ingress {main_ingress} already goes to {}; the canary is not used",
                backend.service
            );
            self.diagnostics.push(ing.diagnostic(field_backend, message));
            return;
        }
        let canary = Arc::new(Canary { ingress: ing.object_name(), backend, rule: rule.clone() });
        if let Err(existing) = self.builder.set_canary(host, &rule_path, path_type, canary) {
            let message = format!(
                "{where_} of Ingress {main_ingress} already has the canary of Ingress {}; this one is not used",
                existing.ingress
            );
            self.diagnostics.push(ing.diagnostic(format!("{field}.path"), message));
        }
    }
}
