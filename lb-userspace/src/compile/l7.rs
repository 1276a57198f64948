//! The L7 compiler: the Ingresses of our classes, with their Services,
//! EndpointSlices and TLS Secrets → a [`RouteTable`], with the semantics of
//! Kubernetes Ingress v1 (and ingress-nginx where the API leaves a choice).
//!
//! - Which Ingresses are ours: see [`classes`].
//! - Ingresses are compiled oldest first (`metadata.creationTimestamp`, a
//!   missing one counting as oldest), then by namespace and name: when two
//!   claim the same host, path and path type, or both set a default
//!   backend, the first one wins and the later one is diagnosed.
//! - Rules and paths: see [`ingress`]; backends: see [`backends`];
//!   certificates: see [`tls`].
//! - Problems are diagnostics naming the object and field; what they
//!   concern is left out and everything else is compiled. The result only
//!   depends on the snapshot's objects, not on their order.

mod annotations;
mod backends;
mod canary;
mod classes;
mod ingress;
mod regexes;
mod tls;
mod x509;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use lb_routes::{HostPattern, ObjectName, RouteTable, RouteTableBuilder};
use rustls::sign::CertifiedKey;

use crate::diagnostics::Diagnostic;
use crate::snapshot::{Changes, ObjectKey, Snapshot, object_key};
use backends::BackendResolver;
use classes::OurClasses;
pub use regexes::PathRegexes;
use tls::CertificateLoader;

/// The `spec.controller` of the IngressClasses we serve, by default.
pub const DEFAULT_CONTROLLER_NAME: &str = "lb.dev/ingress-controller";
/// The ingress class we serve even without an IngressClass object.
pub const DEFAULT_INGRESS_CLASS: &str = "lb";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L7Options {
    /// IngressClasses with this `spec.controller` are ours.
    pub controller_name: String,
    /// An Ingress class name that is ours whether or not an IngressClass
    /// object defines it.
    pub ingress_class: String,
}

impl Default for L7Options {
    fn default() -> Self {
        Self { controller_name: DEFAULT_CONTROLLER_NAME.into(), ingress_class: DEFAULT_INGRESS_CLASS.into() }
    }
}

/// Compiles the route table of the Ingresses of our classes in `snapshot`.
/// Problems in the objects are returned as diagnostics; what they concern
/// is left out and everything else is compiled.
pub fn compile_l7(snapshot: &Snapshot, options: &L7Options) -> (RouteTable, Vec<Diagnostic>) {
    let compiled = compile_l7_tracked(snapshot, options, &mut PathRegexes::new());
    (compiled.table, compiled.diagnostics)
}

/// A route table and what it depends on.
pub struct L7Compiled {
    pub table: RouteTable,
    pub diagnostics: Vec<Diagnostic>,
    pub dependencies: L7Dependencies,
    /// Each host's certificate, by host.
    pub certificates: Vec<HostCertificate>,
}

/// A host's certificate, as the metrics report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCertificate {
    /// The host as the Ingress names it (`*.` for a wildcard).
    pub host: String,
    pub secret: ObjectName,
    /// The leaf certificate's `notAfter`, in seconds since 1970.
    pub expires: i64,
    /// ingress-nginx's identifier: the issuer's `serialNumber` attribute,
    /// `-`, the serial number in decimal.
    pub identifier: String,
}

/// The objects a route table was compiled from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L7Dependencies {
    /// The Services the Ingresses name (found or not): with the Ingresses,
    /// IngressClasses and Secrets, the only objects the table depends on.
    pub services: BTreeSet<ObjectKey>,
}

impl L7Dependencies {
    /// Whether `changes` (from the snapshot `old` this was compiled from to
    /// `new`) can change the table: a change of an Ingress, IngressClass or
    /// Secret, or of a Service it names or one of its EndpointSlices.
    pub fn affected_by(&self, changes: &Changes, old: &Snapshot, new: &Snapshot) -> bool {
        !changes.ingresses.is_empty()
            || !changes.ingress_classes.is_empty()
            || !changes.secrets.is_empty()
            || changes.services_concerned(old, new).iter().any(|s| self.services.contains(s))
    }
}

/// [`compile_l7`], also saying which Services the table depends on, with
/// the path regexes kept from the last compile (`regexes`).
pub fn compile_l7_tracked(snapshot: &Snapshot, options: &L7Options, regexes: &mut PathRegexes) -> L7Compiled {
    regexes.begin();
    let mut ingresses = our_ingresses(snapshot, options);
    ingresses.sort_by(|a, b| precedence(a).cmp(&precedence(b)));
    // Annotations first: a rejected Ingress is left out, and every path of
    // a host that one regex Ingress names is matched as a regex.
    let mut rejected = Vec::new();
    let mut accepted = Vec::new();
    let mut regex_hosts = HashSet::new();
    for ingress in ingresses {
        match annotations::parse(&IngressRef::new(ingress), ingress, regexes) {
            Ok(annotations) => {
                // A canary's other annotations are its main Ingress's.
                if annotations.use_regex && annotations.canary.is_none() {
                    regex_hosts.extend(rule_hosts(ingress));
                }
                accepted.push((ingress, annotations));
            }
            Err(diagnostic) => rejected.push(*diagnostic),
        }
    }
    let mut compiler = Compiler {
        builder: RouteTableBuilder::new(),
        backends: BackendResolver::new(snapshot),
        certificates: CertificateLoader::new(&snapshot.secrets),
        default_backend_owner: None,
        fallback_owners: HashMap::new(),
        certificate_owners: HashMap::new(),
        regex_hosts,
        regexes,
        diagnostics: rejected,
    };
    let (canaries, mains): (Vec<_>, Vec<_>) = accepted.into_iter().partition(|(_, a)| a.canary.is_some());
    for (ingress, annotations) in mains {
        compiler.ingress(ingress, &annotations);
    }
    for (ingress, annotations) in canaries {
        if let Some(rule) = &annotations.canary {
            compiler.canary_ingress(ingress, rule);
        }
    }
    let mut seen = HashSet::new();
    let diagnostics = compiler.diagnostics.into_iter().filter(|d| seen.insert(d.clone())).collect();
    let dependencies = L7Dependencies { services: compiler.backends.services_looked_up() };
    let mut certificates: Vec<HostCertificate> = compiler
        .certificate_owners
        .iter()
        .filter_map(|(host, (secret, _, key))| {
            let (expires, identifier) = x509::expiry_and_identifier(key.cert.first()?)?;
            Some(HostCertificate { host: host.to_string(), secret: secret.clone(), expires, identifier })
        })
        .collect();
    certificates.sort_by(|a, b| a.host.cmp(&b.host));
    L7Compiled { table: compiler.builder.build(), diagnostics, dependencies, certificates }
}

/// The Ingresses of our classes in `snapshot` (see [`classes`]).
pub fn our_ingresses<'a>(snapshot: &'a Snapshot, options: &L7Options) -> Vec<&'a Ingress> {
    let classes = OurClasses::new(&snapshot.ingress_classes, options);
    snapshot.ingresses.iter().map(|i| &**i).filter(|i| classes.claims(i)).collect()
}

/// The Secrets, as (namespace, name), that the Ingresses of our classes
/// name in `spec.tls[].secretName`: the only Secrets the agent keeps.
pub fn referenced_secrets(snapshot: &Snapshot, options: &L7Options) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for ingress in our_ingresses(snapshot, options) {
        let namespace = IngressRef::new(ingress).namespace.to_string();
        let tls = ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
        for name in tls.into_iter().flatten().filter_map(|t| t.secret_name.as_deref()).filter(|n| !n.is_empty()) {
            out.insert((namespace.clone(), name.to_string()));
        }
    }
    out
}

/// The order in which Ingresses claim hosts and paths: oldest first, then
/// by namespace and name.
fn precedence(ingress: &Ingress) -> (Option<&Time>, &str, &str) {
    let (namespace, name) = object_key(&ingress.metadata);
    (ingress.metadata.creation_timestamp.as_ref(), namespace, name)
}

/// The state of one compilation: the table being built, the caches of
/// resolved backends and certificates, and who claimed what first.
struct Compiler<'a> {
    builder: RouteTableBuilder,
    backends: BackendResolver<'a>,
    certificates: CertificateLoader<'a>,
    /// The Ingress whose `spec.defaultBackend` is the table's default.
    default_backend_owner: Option<ObjectName>,
    /// The Ingress whose `spec.defaultBackend` is each host's fallback.
    fallback_owners: HashMap<HostPattern, ObjectName>,
    /// The Secret (and the Ingress naming it) of each host's certificate,
    /// and the certificate.
    certificate_owners: HashMap<HostPattern, (ObjectName, ObjectName, Arc<CertifiedKey>)>,
    /// The hosts (`None`: the rules without host) whose paths are regexes.
    regex_hosts: HashSet<Option<HostPattern>>,
    regexes: &'a mut PathRegexes,
    diagnostics: Vec<Diagnostic>,
}

/// The hosts of an Ingress's rules (`None` for a rule without host);
/// invalid hosts are left out (the compiler diagnoses them).
fn rule_hosts(ingress: &Ingress) -> Vec<Option<HostPattern>> {
    let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
    rules
        .into_iter()
        .flatten()
        .filter_map(|rule| match rule.host.as_deref().filter(|h| !h.is_empty()) {
            None => Some(None),
            Some(host) => HostPattern::parse(host).map(Some),
        })
        .collect()
}

/// An Ingress, as diagnostics and routes name it.
#[derive(Clone, Debug)]
struct IngressRef<'a> {
    namespace: &'a str,
    name: &'a str,
}

impl<'a> IngressRef<'a> {
    fn new(ingress: &'a Ingress) -> Self {
        let (namespace, name) = object_key(&ingress.metadata);
        Self { namespace: if namespace.is_empty() { "default" } else { namespace }, name }
    }

    fn diagnostic(&self, field: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::for_object("Ingress", self.namespace, self.name, field, message)
    }

    fn object_name(&self) -> ObjectName {
        ObjectName { namespace: self.namespace.to_string(), name: self.name.to_string() }
    }
}
