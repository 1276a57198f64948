//! One Ingress: its rules, paths, default backend and TLS sections.
//!
//! - A rule's `host` (absent or empty: the rules without host) must be a
//!   DNS name or `*.` wildcard; a rule with an invalid host is left out.
//!   Every valid host is a virtual host of its own, even without paths.
//! - A path needs a `pathType`. `path` missing means `/` for `Prefix` and
//!   `ImplementationSpecific`; `Exact` needs one. Paths must start with
//!   `/` and be well-formed (percent-encodings); they are normalised like
//!   request paths, so `/a/%62` and `/a/b` are the same rule.
//! - `spec.defaultBackend` is the fallback of the Ingress's rule hosts and
//!   the table's default backend (first Ingress wins each).
//! - `spec.tls[i]`: the Secret's certificate serves `hosts` (when empty,
//!   the Ingress's rule hosts), which are then redirected to HTTPS.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressRule, IngressSpec, IngressTLS};
use lb_routes::{Backend, HostPattern, PathType, Route, normalize_path};

use super::annotations::Annotations;
use super::{Compiler, IngressRef};

/// Characters that only appear in regex paths (`/api/(v1|v2)/.*`).
const REGEX_CHARACTERS: &[char] = &['^', '$', '(', ')', '[', ']', '{', '}', '*', '+', '?', '|', '\\'];

impl Compiler<'_> {
    pub(super) fn ingress(&mut self, ingress: &Ingress, annotations: &Annotations) {
        let ing = IngressRef::new(ingress);
        let Some(spec) = &ingress.spec else { return };
        let default_backend = spec
            .default_backend
            .as_ref()
            .and_then(|b| self.backends.resolve(&ing, b, "spec.defaultBackend", &mut self.diagnostics));
        let hosts = self.rules(&ing, spec, annotations);
        if let Some(backend) = default_backend {
            self.default_backend(&ing, &hosts, backend);
        }
        for (i, tls) in spec.tls.iter().flatten().enumerate() {
            self.tls(&ing, i, tls, &hosts);
        }
    }

    /// Compiles the rules; returns the valid rule hosts.
    fn rules(&mut self, ing: &IngressRef<'_>, spec: &IngressSpec, annotations: &Annotations) -> BTreeSet<HostPattern> {
        let mut hosts = BTreeSet::new();
        for (i, rule) in spec.rules.iter().flatten().enumerate() {
            let Some(host) = self.rule_host(ing, i, rule) else { continue };
            if let Some(pattern) = &host {
                self.builder.add_host(Some(pattern));
                hosts.insert(pattern.clone());
            }
            if let Some(root) = &annotations.app_root {
                self.builder.set_app_root(host.as_ref(), root);
            }
            let paths = rule.http.as_ref().map(|h| h.paths.as_slice()).unwrap_or_default();
            for (j, path) in paths.iter().enumerate() {
                self.path(ing, host.as_ref(), &format!("spec.rules[{i}].http.paths[{j}]"), path, annotations);
            }
        }
        hosts
    }

    /// A rule's host: `Some(None)` for a rule without host; `None` (diagnosed)
    /// when the host is invalid and the rule must be left out.
    pub(super) fn rule_host(
        &mut self,
        ing: &IngressRef<'_>,
        index: usize,
        rule: &IngressRule,
    ) -> Option<Option<HostPattern>> {
        let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) else { return Some(None) };
        let pattern = HostPattern::parse(host);
        if pattern.is_none() {
            let message = format!("{host:?} is not a DNS name or a `*.` wildcard; the rule is ignored");
            self.diagnostics.push(ing.diagnostic(format!("spec.rules[{index}].host"), message));
        }
        pattern.map(Some)
    }

    fn path(
        &mut self,
        ing: &IngressRef<'_>,
        host: Option<&HostPattern>,
        field: &str,
        path: &HTTPIngressPath,
        annotations: &Annotations,
    ) {
        let regex_host = self.regex_hosts.contains(&host.cloned());
        let Some((path_type, rule_path)) = self.path_rule(ing, field, path, regex_host) else { return };
        let regex = if regex_host && path_type != PathType::Exact {
            match self.regexes.get(&rule_path) {
                Ok(regex) => Some(regex),
                Err(e) => {
                    let message = format!("{rule_path:?}: {e} (its host matches paths by regex); ignored");
                    self.diagnostics.push(ing.diagnostic(format!("{field}.path"), message));
                    return;
                }
            }
        } else {
            None
        };
        let field_backend = format!("{field}.backend");
        let Some(backend) = self.backends.resolve(ing, &path.backend, &field_backend, &mut self.diagnostics) else {
            return;
        };
        let mut route = Route::new(ing.object_name(), rule_path, path_type, backend);
        route.regex = regex;
        route.policy = Arc::clone(&annotations.policy);
        if let Err(existing) = self.builder.add_route(host, route) {
            let host = host.map_or_else(|| "any host".to_string(), |h| format!("host {h}"));
            let message = format!(
                "{host}, path {:?} ({path_type}) is already routed by Ingress {}; ignored",
                existing.path, existing.ingress
            );
            self.diagnostics.push(ing.diagnostic(format!("{field}.path"), message));
        }
    }

    /// The path type and path of an Ingress path; `None` (diagnosed) when
    /// it cannot be routed.
    pub(super) fn path_rule(
        &mut self,
        ing: &IngressRef<'_>,
        field: &str,
        path: &HTTPIngressPath,
        regex_host: bool,
    ) -> Option<(PathType, String)> {
        let Some(path_type) = PathType::parse(&path.path_type) else {
            let message = match path.path_type.as_str() {
                "" => "pathType is required (Exact, Prefix or ImplementationSpecific); the path is ignored".to_string(),
                other => format!("unknown pathType {other:?} (Exact, Prefix or ImplementationSpecific); ignored"),
            };
            self.diagnostics.push(ing.diagnostic(format!("{field}.pathType"), message));
            return None;
        };
        let written = path.path.as_deref().filter(|p| !p.is_empty());
        let rule_path = match (written, path_type) {
            (Some(written), _) => written.to_string(),
            (None, PathType::Exact) => {
                let message = "an Exact path needs a path; ignored";
                self.diagnostics.push(ing.diagnostic(format!("{field}.path"), message));
                return None;
            }
            (None, PathType::Prefix | PathType::ImplementationSpecific) => "/".to_string(),
        };
        // A path of a regex host is a regex (checked by the caller); an
        // `ImplementationSpecific` path with regex characters elsewhere is
        // the literal prefix it is written as (ingress-nginx without
        // `use-regex`).
        let regex = regex_host && path_type != PathType::Exact;
        let literal_regex = path_type == PathType::ImplementationSpecific && rule_path.contains(REGEX_CHARACTERS);
        let checked = if regex || literal_regex {
            if rule_path.starts_with('/') { Ok(()) } else { Err(lb_routes::PathError::NotAbsolute) }
        } else {
            normalize_path(&rule_path).map(drop)
        };
        if let Err(e) = checked {
            let message = format!("{rule_path:?}: {e}; ignored");
            self.diagnostics.push(ing.diagnostic(format!("{field}.path"), message));
            return None;
        }
        Some((path_type, rule_path))
    }

    /// `spec.defaultBackend`: the fallback of the Ingress's hosts and the
    /// table's default backend, unless an earlier Ingress set them.
    fn default_backend(&mut self, ing: &IngressRef<'_>, hosts: &BTreeSet<HostPattern>, backend: Arc<Backend>) {
        let owner = ing.object_name();
        for host in hosts {
            if self.builder.set_fallback(Some(host), Arc::clone(&backend)) {
                self.fallback_owners.insert(host.clone(), owner.clone());
            } else if let Some(first) = self.fallback_owners.get(host).filter(|first| **first != owner) {
                let message = format!(
                    "host {host} already falls back to the default backend of Ingress {first}; not to this one"
                );
                self.diagnostics.push(ing.diagnostic("spec.defaultBackend", message));
            }
        }
        if self.builder.set_default_backend(backend) {
            self.default_backend_owner = Some(owner);
        } else if let Some(first) = &self.default_backend_owner {
            let message = format!(
                "Ingress {first} already sets the default backend of requests matching no host; this one is only \
                 used for its own hosts"
            );
            self.diagnostics.push(ing.diagnostic("spec.defaultBackend", message));
        }
    }

    /// `spec.tls[index]`: the certificate of its Secret for its hosts.
    fn tls(&mut self, ing: &IngressRef<'_>, index: usize, tls: &IngressTLS, rule_hosts: &BTreeSet<HostPattern>) {
        let field = format!("spec.tls[{index}]");
        let Some(secret_name) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
            return; // No Secret: the proxy's default certificate, no redirect.
        };
        let listed = tls.hosts.as_deref().unwrap_or_default();
        let mut hosts = Vec::new();
        for (j, host) in listed.iter().enumerate() {
            match HostPattern::parse(host) {
                Some(pattern) => hosts.push(pattern),
                None => {
                    let message = format!("{host:?} is not a DNS name or a `*.` wildcard; ignored");
                    self.diagnostics.push(ing.diagnostic(format!("{field}.hosts[{j}]"), message));
                }
            }
        }
        if listed.is_empty() {
            hosts.extend(rule_hosts.iter().cloned());
        }
        if hosts.is_empty() {
            if listed.is_empty() {
                let message = "no hosts here nor in spec.rules; the certificate is not used";
                self.diagnostics.push(ing.diagnostic(format!("{field}.hosts"), message));
            }
            return;
        }
        let secret_field = format!("{field}.secretName");
        let Some(key) = self.certificates.load(ing, secret_name, &secret_field, &mut self.diagnostics) else {
            return;
        };
        let secret = lb_routes::ObjectName { namespace: ing.namespace.to_string(), name: secret_name.to_string() };
        for host in hosts {
            if self.builder.add_certificate(&host, Arc::clone(&key)) {
                self.certificate_owners.insert(host.clone(), (secret.clone(), ing.object_name(), Arc::clone(&key)));
            } else if let Some((first_secret, first_ingress, _)) =
                self.certificate_owners.get(&host).filter(|(first, _, _)| *first != secret)
            {
                let message = format!(
                    "host {host} already has the certificate of Secret {first_secret} (Ingress {first_ingress}); \
                     Secret {secret} is not used for it"
                );
                self.diagnostics.push(ing.diagnostic(secret_field.clone(), message));
            }
            self.builder.set_tls_redirect(&host);
        }
    }
}
