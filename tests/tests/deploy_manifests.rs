//! The cluster install (`manifests/*.yaml`, `manifests/kustomization.yaml`)
//! and the `Containerfile`: every object parses strictly into its
//! Kubernetes type, the RBAC rules grant exactly the calls the agent makes
//! (`lb_userspace::cluster::API_ACCESS`), the DaemonSet runs the agent with
//! a command line its CLI accepts, the Services reach its ports, and the
//! Containerfile copies only paths that exist. No root, no network.

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{IngressClass, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use lb_userspace::cli::Cli;
use lb_userspace::cluster::{API_ACCESS, AccessScope};
use lb_userspace::config::AgentConfig;
use lb_userspace::status::ipam::POOL_ANNOTATION;
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_json::Value;

/// The namespace every namespaced object of the install lives in.
const NAMESPACE: &str = "lb-system";
/// Labels every object carries.
const COMMON_LABELS: &[(&str, &str)] = &[("app.kubernetes.io/name", "lb"), ("app.kubernetes.io/part-of", "lb")];
/// The agent's ServiceAccount, roles and DaemonSet.
const SERVICE_ACCOUNT: &str = "lb";
const CLUSTER_ROLE: &str = "lb";
const LEADER_ELECTION_ROLE: &str = "lb-leader-election";
const DAEMONSET: &str = "lb";
const CONFIG_MAP: &str = "lb-config";
const CONFIG_KEY: &str = "config.yaml";
const ADMIN_PORT: i32 = 10254;
/// Where `cargo xtask build-ebpf` leaves the kernel object, relative to the
/// workspace (xtask/src/ebpf.rs `EbpfBuild::output_path`, release).
const EBPF_OBJECT: &str = "lb-ebpf/target/bpfel-unknown-none/release/lb-ebpf";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate lives inside the repository").to_path_buf()
}

fn manifests_dir() -> PathBuf {
    repo_root().join("manifests")
}

/// Collects every problem of a check, so one run reports them all.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn push(&mut self, what: String) {
        self.0.push(what);
    }

    fn finish(self, area: &str) {
        if !self.0.is_empty() {
            let mut msg = format!("{area}: {} problem(s):", self.0.len());
            for p in &self.0 {
                let _ = write!(msg, "\n  - {p}");
            }
            panic!("{msg}");
        }
    }
}

// ---------------------------------------------------------------- loading

/// Kind, scope and metadata of one parsed object, and where it came from.
struct ObjectInfo {
    origin: String,
    kind: &'static str,
    namespaced: bool,
    meta: ObjectMeta,
}

/// Every object of the install, by type.
#[derive(Default)]
struct Install {
    objects: Vec<ObjectInfo>,
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    config_maps: Vec<ConfigMap>,
    daemon_sets: Vec<DaemonSet>,
    services: Vec<Service>,
    ingress_classes: Vec<IngressClass>,
}

/// Parses document `index` of `text` (a multi-document YAML file) as `T`,
/// then checks that serializing it back keeps every key and value of
/// `original` (k8s-openapi ignores unknown fields: a typo like `hostNetwrok`
/// would otherwise vanish silently). An object that parses but loses keys
/// is returned all the same (the other checks still run on it) and its lost
/// keys are a problem.
fn parse_typed<T>(
    install: &mut Install,
    problems: &mut Vec<String>,
    origin: &str,
    text: &str,
    index: usize,
    original: &Value,
) -> Option<T>
where
    T: DeserializeOwned + Serialize + Metadata<Ty = ObjectMeta>,
    <T as Resource>::Scope: 'static,
{
    let document = serde_norway::Deserializer::from_str(text).nth(index)?;
    // serde_norway's error names the field path, line and column.
    let typed = match T::deserialize(document) {
        Ok(typed) => typed,
        Err(e) => {
            problems.push(format!("{origin}: not a valid {}: {e}", T::KIND));
            return None;
        }
    };
    let round_trip = match serde_json::to_value(&typed) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{origin}: serializing back: {e}"));
            return None;
        }
    };
    let mut dropped = Vec::new();
    compare_round_trip(original, &round_trip, "", &mut dropped);
    if !dropped.is_empty() {
        problems.push(format!(
            "{origin}: {} {:?} does not survive a round trip through its type (unknown or misplaced fields?): {}",
            T::KIND,
            typed.metadata().name.as_deref().unwrap_or(""),
            dropped.join("; ")
        ));
    }
    install.objects.push(ObjectInfo {
        origin: origin.to_string(),
        kind: T::KIND,
        namespaced: TypeId::of::<<T as Resource>::Scope>() == TypeId::of::<NamespaceResourceScope>(),
        meta: typed.metadata().clone(),
    });
    Some(typed)
}

/// Records, with its path, every key of `original` missing from
/// `round_trip` and every scalar that changed.
fn compare_round_trip(original: &Value, round_trip: &Value, path: &str, out: &mut Vec<String>) {
    match (original, round_trip) {
        (Value::Object(o), Value::Object(r)) => {
            for (key, value) in o {
                let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match r.get(key) {
                    Some(back) => compare_round_trip(value, back, &here, out),
                    None => out.push(format!("{here} is dropped")),
                }
            }
        }
        (Value::Array(o), Value::Array(r)) => {
            if o.len() != r.len() {
                out.push(format!("{path} has {} items, {} after the round trip", o.len(), r.len()));
            }
            for (i, (value, back)) in o.iter().zip(r).enumerate() {
                compare_round_trip(value, back, &format!("{path}[{i}]"), out);
            }
        }
        (o, r) if o == r => {}
        (o, r) => out.push(format!("{path} is {o}, {r} after the round trip")),
    }
}

/// Parses every document of one file into `install`; returns the problems.
fn parse_file(install: &mut Install, file: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let origin = format!("{file} document {index}");
        let value = match Value::deserialize(document) {
            Ok(Value::Null) => continue, // an empty document (comments only)
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{origin}: not YAML: {e}"));
                continue;
            }
        };
        let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        macro_rules! dispatch {
            ($($ty:ty => $field:ident),* $(,)?) => {{
                let mut known = false;
                $(
                    if api_version == <$ty as Resource>::API_VERSION && kind == <$ty as Resource>::KIND {
                        known = true;
                        if let Some(object) = parse_typed::<$ty>(install, &mut problems, &origin, text, index, &value) {
                            install.$field.push(object);
                        }
                    }
                )*
                if !known {
                    problems.push(format!(
                        "{origin}: apiVersion {api_version:?} kind {kind:?} is not a kind the install may contain"
                    ));
                }
            }};
        }
        dispatch!(
            Namespace => namespaces,
            ServiceAccount => service_accounts,
            ClusterRole => cluster_roles,
            ClusterRoleBinding => cluster_role_bindings,
            Role => roles,
            RoleBinding => role_bindings,
            ConfigMap => config_maps,
            DaemonSet => daemon_sets,
            Service => services,
            IngressClass => ingress_classes,
        );
    }
    problems
}

/// `manifests/kustomization.yaml` as JSON.
fn kustomization() -> Value {
    let path = manifests_dir().join("kustomization.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `resources:` of the kustomization.
fn kustomization_resources(k: &Value) -> Vec<String> {
    let resources = k.get("resources").and_then(Value::as_array).expect("kustomization.yaml has a resources: list");
    resources.iter().map(|r| r.as_str().unwrap_or_else(|| panic!("resource {r} is not a string")).to_string()).collect()
}

/// Every object of the files the kustomization lists, and the problems
/// found parsing them (reported by
/// `every_object_parses_strictly_and_lives_in_lb_system`; the other tests
/// check what did parse).
fn load_with_problems() -> (Install, Problems) {
    let mut install = Install::default();
    let mut problems = Problems::default();
    for file in kustomization_resources(&kustomization()) {
        let path = manifests_dir().join(&file);
        match std::fs::read_to_string(&path) {
            Ok(text) => problems.0.extend(parse_file(&mut install, &file, &text)),
            Err(e) => problems.push(format!("reading {}: {e}", path.display())),
        }
    }
    (install, problems)
}

fn load() -> Install {
    load_with_problems().0
}

fn named<'a, T: Metadata<Ty = ObjectMeta>>(objects: &'a [T], namespace: Option<&str>, name: &str) -> Vec<&'a T> {
    objects
        .iter()
        .filter(|o| o.metadata().name.as_deref() == Some(name) && o.metadata().namespace.as_deref() == namespace)
        .collect()
}

/// The one object of that name, or a problem.
fn one<'a, T: Metadata<Ty = ObjectMeta>>(
    problems: &mut Problems,
    objects: &'a [T],
    namespace: Option<&str>,
    name: &str,
) -> Option<&'a T> {
    let found = named(objects, namespace, name);
    if found.len() != 1 {
        let at = namespace.map(|ns| format!("{ns}/")).unwrap_or_default();
        problems.push(format!("expected exactly one {} {at}{name}, found {}", T::KIND, found.len()));
        return None;
    }
    Some(found[0])
}

// ------------------------------------------------------------ kustomize

#[test]
fn kustomization_lists_every_install_file() {
    let k = kustomization();
    let mut problems = Problems::default();
    problems.check(k.get("apiVersion").and_then(Value::as_str) == Some("kustomize.config.k8s.io/v1beta1"), || {
        format!("kustomization apiVersion is {:?}", k.get("apiVersion"))
    });
    problems.check(k.get("kind").and_then(Value::as_str) == Some("Kustomization"), || {
        format!("kustomization kind is {:?}", k.get("kind"))
    });
    problems.check(k.get("namespace").is_none(), || {
        "kustomization forces a namespace; the objects carry lb-system themselves".into()
    });

    let listed = kustomization_resources(&k);
    let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
    problems.check(listed_set.len() == listed.len(), || format!("resources: lists a file twice: {listed:?}"));
    let on_disk = yaml_files(&manifests_dir());
    for missing in on_disk.difference(&listed_set) {
        problems.push(format!("manifests/{missing} is not listed in kustomization.yaml resources:"));
    }
    for extra in listed_set.difference(&on_disk) {
        problems.push(format!("kustomization.yaml lists {extra}, which is not a YAML file in manifests/"));
    }

    // The image is set through `images:` (kustomize edit set image lb=...).
    let images = k.get("images").and_then(Value::as_array).cloned().unwrap_or_default();
    let lb: Vec<&Value> = images.iter().filter(|i| i.get("name").and_then(Value::as_str) == Some("lb")).collect();
    problems.check(lb.len() == 1, || format!("kustomization images: needs one entry named lb, has {images:?}"));
    if let Some(image) = lb.first() {
        problems.check(image.get("newName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()), || {
            format!("images: lb has no newName: {image}")
        });
        problems.check(image.get("newTag").and_then(Value::as_str) == Some(env!("CARGO_PKG_VERSION")), || {
            format!("images: lb newTag should be the workspace version {}: {image}", env!("CARGO_PKG_VERSION"))
        });
    }
    problems.finish("kustomization.yaml");
}

// -------------------------------------------------------------- objects

#[test]
fn every_object_parses_strictly_and_lives_in_lb_system() {
    let (install, mut problems) = load_with_problems();
    problems.check(!install.objects.is_empty(), || "the install has no objects".into());
    one(&mut problems, &install.namespaces, None, NAMESPACE);
    check_object_metadata(&mut problems, &install.objects);
    problems.finish("install objects");
}

/// Every object is named, lives in lb-system (or is cluster-scoped), is
/// defined once and carries [`COMMON_LABELS`].
fn check_object_metadata(problems: &mut Problems, objects: &[ObjectInfo]) {
    let mut seen = BTreeSet::new();
    for o in objects {
        let name = o.meta.name.clone().unwrap_or_default();
        problems.check(!name.is_empty(), || format!("{}: {} has no name", o.origin, o.kind));
        if o.namespaced {
            problems.check(o.meta.namespace.as_deref() == Some(NAMESPACE), || {
                format!("{}: {} {name} is in namespace {:?}, not {NAMESPACE}", o.origin, o.kind, o.meta.namespace)
            });
        } else {
            problems.check(o.meta.namespace.is_none(), || {
                format!("{}: cluster-scoped {} {name} has a namespace", o.origin, o.kind)
            });
        }
        problems.check(seen.insert((o.kind, o.meta.namespace.clone(), name.clone())), || {
            format!("{}: {} {name} is defined twice", o.origin, o.kind)
        });
        let labels = o.meta.labels.clone().unwrap_or_default();
        for (key, value) in COMMON_LABELS {
            problems.check(labels.get(*key).map(String::as_str) == Some(*value), || {
                format!("{}: {} {name} lacks the label {key}: {value}", o.origin, o.kind)
            });
        }
    }
}

#[test]
fn strict_parsing_rejects_unknown_fields_kinds_and_bad_types() {
    // The checks above must be able to fail: a misspelt field, an unknown
    // kind and a wrongly typed value are each reported with file, document
    // and path.
    let text = "\
apiVersion: v1
kind: Namespace
metadata:
  name: fine
---
apiVersion: v1
kind: Service
metadata:
  name: typo
spec:
  selectr: {a: b}
  ports:
    - port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: unknown
---
apiVersion: v1
kind: Service
metadata:
  name: badtype
spec:
  ports:
    - port: eighty
";
    let mut install = Install::default();
    let problems = parse_file(&mut install, "t.yaml", text);
    assert_eq!(install.namespaces.len(), 1, "{problems:#?}");
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("t.yaml document 1") && problems[0].contains("spec.selectr is dropped"),
        "{problems:#?}"
    );
    assert!(problems[1].contains("t.yaml document 2") && problems[1].contains("\"Deployment\""), "{problems:#?}");
    assert!(problems[2].contains("t.yaml document 3") && problems[2].contains("spec.ports[0].port"), "{problems:#?}");
}

// ----------------------------------------------------------------- RBAC

type Triple = (String, String, String);

/// The (group, resource, verb) triples `rules` grant; wildcards,
/// resourceNames and nonResourceURLs are problems.
fn expand(problems: &mut Problems, who: &str, rules: &[PolicyRule]) -> BTreeSet<Triple> {
    let mut triples = BTreeSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        problems.check(!groups.is_empty() && !resources.is_empty() && !rule.verbs.is_empty(), || {
            format!("{who} rule {i} lacks apiGroups, resources or verbs")
        });
        for field in [&groups, &resources, &rule.verbs] {
            problems
                .check(!field.iter().any(|s| s.contains('*')), || format!("{who} rule {i} has a wildcard: {field:?}"));
        }
        problems.check(rule.resource_names.as_ref().is_none_or(Vec::is_empty), || {
            format!(
                "{who} rule {i} restricts resourceNames {:?}, which the agent's calls do not expect",
                rule.resource_names
            )
        });
        problems.check(rule.non_resource_urls.as_ref().is_none_or(Vec::is_empty), || {
            format!("{who} rule {i} grants nonResourceURLs {:?}", rule.non_resource_urls)
        });
        for g in &groups {
            for r in &resources {
                for v in &rule.verbs {
                    triples.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    triples
}

/// The triples of [`API_ACCESS`] in `scope`.
fn expected(scope: AccessScope) -> BTreeSet<Triple> {
    API_ACCESS
        .iter()
        .filter(|a| a.scope == scope)
        .flat_map(|a| a.verbs.iter().map(|v| (a.group.to_string(), a.resource.to_string(), v.to_string())))
        .collect()
}

fn compare_grants(problems: &mut Problems, who: &str, granted: &BTreeSet<Triple>, needed: &BTreeSet<Triple>) {
    for (g, r, v) in needed.difference(granted) {
        problems.push(format!("{who} does not grant {v} on {r} (group {g:?}), which the agent calls"));
    }
    for (g, r, v) in granted.difference(needed) {
        problems.push(format!("{who} grants {v} on {r} (group {g:?}), which the agent never calls"));
    }
}

fn check_binding(problems: &mut Problems, who: &str, role_ref: &RoleRef, kind: &str, name: &str, subjects: &[Subject]) {
    problems.check(
        role_ref.api_group.as_deref() == Some("rbac.authorization.k8s.io")
            && role_ref.kind == kind
            && role_ref.name == name,
        || format!("{who} roleRef is {role_ref:?}, not {kind} {name}"),
    );
    let sa_ok = |s: &Subject| {
        s.kind == "ServiceAccount"
            && s.name == SERVICE_ACCOUNT
            && s.namespace.as_deref() == Some(NAMESPACE)
            && s.api_group.as_deref().is_none_or(str::is_empty)
    };
    problems.check(subjects.len() == 1 && sa_ok(&subjects[0]), || {
        format!("{who} must bind exactly ServiceAccount {NAMESPACE}/{SERVICE_ACCOUNT}, binds {subjects:?}")
    });
}

#[test]
fn rbac_grants_exactly_the_calls_the_agent_makes() {
    let install = load();
    let mut problems = Problems::default();
    one(&mut problems, &install.service_accounts, Some(NAMESPACE), SERVICE_ACCOUNT);
    // No other role may widen the agent's rights.
    problems.check(install.cluster_roles.len() == 1 && install.roles.len() == 1, || {
        format!(
            "expected one ClusterRole and one Role, found {} and {}",
            install.cluster_roles.len(),
            install.roles.len()
        )
    });
    problems.check(install.cluster_role_bindings.len() == 1 && install.role_bindings.len() == 1, || {
        format!(
            "expected one ClusterRoleBinding and one RoleBinding, found {} and {}",
            install.cluster_role_bindings.len(),
            install.role_bindings.len()
        )
    });

    if let Some(role) = one(&mut problems, &install.cluster_roles, None, CLUSTER_ROLE) {
        problems.check(role.aggregation_rule.is_none(), || "ClusterRole lb aggregates other roles".into());
        let who = format!("ClusterRole {CLUSTER_ROLE}");
        let granted = expand(&mut problems, &who, role.rules.as_deref().unwrap_or_default());
        compare_grants(&mut problems, &who, &granted, &expected(AccessScope::Cluster));
    }
    if let Some(role) = one(&mut problems, &install.roles, Some(NAMESPACE), LEADER_ELECTION_ROLE) {
        let who = format!("Role {NAMESPACE}/{LEADER_ELECTION_ROLE}");
        let granted = expand(&mut problems, &who, role.rules.as_deref().unwrap_or_default());
        compare_grants(&mut problems, &who, &granted, &expected(AccessScope::OwnNamespace));
    }
    for b in &install.cluster_role_bindings {
        let who = format!("ClusterRoleBinding {}", b.metadata.name.as_deref().unwrap_or(""));
        check_binding(
            &mut problems,
            &who,
            &b.role_ref,
            "ClusterRole",
            CLUSTER_ROLE,
            b.subjects.as_deref().unwrap_or_default(),
        );
    }
    for b in &install.role_bindings {
        let who = format!("RoleBinding {}", b.metadata.name.as_deref().unwrap_or(""));
        problems.check(b.metadata.namespace.as_deref() == Some(NAMESPACE), || format!("{who} is not in {NAMESPACE}"));
        check_binding(
            &mut problems,
            &who,
            &b.role_ref,
            "Role",
            LEADER_ELECTION_ROLE,
            b.subjects.as_deref().unwrap_or_default(),
        );
    }
    problems.finish("RBAC");
}

// ------------------------------------------------------------ DaemonSet

/// The DaemonSet, its pod spec and its one container.
fn agent(install: &Install) -> (&DaemonSet, &PodSpec, &Container) {
    let found = named(&install.daemon_sets, Some(NAMESPACE), DAEMONSET);
    assert_eq!(found.len(), 1, "expected one DaemonSet {NAMESPACE}/{DAEMONSET}");
    let ds = found[0];
    let pod = ds.spec.template.spec.as_ref().expect("the DaemonSet has a pod template spec");
    assert_eq!(pod.containers.len(), 1, "the DaemonSet runs exactly one container");
    (ds, pod, &pod.containers[0])
}

fn template_labels(ds: &DaemonSet) -> BTreeMap<String, String> {
    ds.spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default()
}

/// The container port `port` names (by name or number).
fn container_port(c: &Container, port: &IntOrString) -> Option<i32> {
    let ports = c.ports.as_deref().unwrap_or_default();
    match port {
        IntOrString::Int(n) => ports.iter().find(|p| p.container_port == *n).map(|p| p.container_port),
        IntOrString::String(name) => {
            ports.iter().find(|p| p.name.as_deref() == Some(name.as_str())).map(|p| p.container_port)
        }
    }
}

/// The value of `--flag=v` or `--flag v` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix(flag).and_then(|rest| rest.strip_prefix('='))
        }
    })
}

/// `lb run`'s default for `--long` (its `default_value`).
fn cli_default(long: &str) -> String {
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("lb has a run subcommand");
    let arg =
        run.get_arguments().find(|a| a.get_long() == Some(long)).unwrap_or_else(|| panic!("lb run has no --{long}"));
    let defaults: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    assert_eq!(defaults.len(), 1, "--{long} has one default");
    defaults[0].clone()
}

#[test]
fn daemonset_runs_the_agent_privileged_on_every_node() {
    let install = load();
    let mut problems = Problems::default();
    let (ds, pod, c) = agent(&install);
    let spec = &ds.spec;

    // Selection and labels.
    let labels = template_labels(ds);
    for (key, value) in [("app.kubernetes.io/name", "lb"), ("app.kubernetes.io/component", "node-agent")] {
        problems.check(labels.get(key).map(String::as_str) == Some(value), || {
            format!("pod template lacks the label {key}: {value}")
        });
    }
    let match_labels = spec.selector.match_labels.clone().unwrap_or_default();
    problems.check(!match_labels.is_empty() && match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)), || {
        format!("selector {match_labels:?} does not select the pod template's labels {labels:?}")
    });
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    problems.check(
        strategy.and_then(|s| s.type_.as_deref()) == Some("RollingUpdate")
            && rolling.and_then(|r| r.max_surge.as_ref()) == Some(&IntOrString::Int(1))
            && rolling.and_then(|r| r.max_unavailable.as_ref()) == Some(&IntOrString::Int(0)),
        || format!("updateStrategy should be RollingUpdate with maxSurge 1, maxUnavailable 0 (upgrades hand over): {strategy:?}"),
    );

    // Pod.
    let sa = pod.service_account_name.as_deref();
    problems.check(sa == Some(SERVICE_ACCOUNT), || format!("serviceAccountName is {sa:?}"));
    problems.check(!named(&install.service_accounts, Some(NAMESPACE), SERVICE_ACCOUNT).is_empty(), || {
        format!("ServiceAccount {NAMESPACE}/{SERVICE_ACCOUNT} is not in the install")
    });
    problems.check(pod.host_network == Some(true), || "hostNetwork is not true".into());
    problems.check(pod.dns_policy.as_deref() == Some("ClusterFirstWithHostNet"), || {
        format!("dnsPolicy is {:?}, not ClusterFirstWithHostNet (hostNetwork)", pod.dns_policy)
    });
    problems.check(pod.priority_class_name.as_deref() == Some("system-node-critical"), || {
        format!("priorityClassName is {:?}", pod.priority_class_name)
    });
    let tolerations = pod.tolerations.as_deref().unwrap_or_default();
    problems.check(
        tolerations.iter().any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()),
        || format!("no toleration tolerates every taint (operator: Exists): {tolerations:?}"),
    );
    let os = pod.node_selector.as_ref().and_then(|s| s.get("kubernetes.io/os"));
    problems.check(os.map(String::as_str) == Some("linux"), || format!("nodeSelector kubernetes.io/os is {os:?}"));
    let grace = pod.termination_grace_period_seconds;
    // Above lb's default --shutdown-grace (30s), so the proxy's drain ends before the kubelet's SIGKILL.
    problems.check(grace.is_some_and(|g| (31..=120).contains(&g)), || {
        format!("terminationGracePeriodSeconds {grace:?} does not exceed the proxy's --shutdown-grace (30s)")
    });

    // Container.
    problems.check(c.name == "lb", || format!("the container is named {:?}", c.name));
    let image = c.image.as_deref().unwrap_or("");
    problems.check(image == format!("lb:{}", env!("CARGO_PKG_VERSION")), || {
        format!("image is {image:?}, not lb:{} (kustomization images: name lb)", env!("CARGO_PKG_VERSION"))
    });
    let privileged = c.security_context.as_ref().and_then(|s| s.privileged);
    problems.check(privileged == Some(true), || "the container is not privileged".into());
    let env: BTreeMap<&str, Option<&str>> = c
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let field = e.value_from.as_ref().and_then(|f| f.field_ref.as_ref()).map(|f| f.field_path.as_str());
            (e.name.as_str(), field)
        })
        .collect();
    for (name, field) in [
        ("NODE_NAME", "spec.nodeName"),
        ("HOST_IP", "status.hostIP"),
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        problems.check(env.get(name) == Some(&Some(field)), || format!("env {name} is not the fieldRef {field}"));
    }
    let ports = c.ports.as_deref().unwrap_or_default();
    for (name, number) in [("http", 80), ("https", 443), ("admin", ADMIN_PORT)] {
        let port = ports.iter().find(|p| p.name.as_deref() == Some(name));
        problems.check(port.is_some_and(|p| p.container_port == number), || {
            format!("container port {name} should be {number}: {port:?}")
        });
    }
    for p in ports {
        problems.check(p.host_port.is_none_or(|h| h == p.container_port), || {
            format!("port {:?}: hostPort differs from containerPort under hostNetwork", p.name)
        });
        problems.check(p.protocol.as_deref().is_none_or(|p| p == "TCP"), || format!("port {:?} is not TCP", p.name));
    }
    let live = c.liveness_probe.as_ref();
    let get = live.and_then(|p| p.http_get.as_ref());
    problems.check(
        get.is_some_and(|g| g.path.as_deref() == Some("/healthz") && container_port(c, &g.port) == Some(ADMIN_PORT)),
        || format!("livenessProbe should GET /healthz on the admin port {ADMIN_PORT}: {get:?}"),
    );
    // Readiness asks the agent itself, not the admin port it shares with
    // the agent beside it during an upgrade: `test -e` of its --ready-file.
    let ready = c.readiness_probe.as_ref();
    let ready_file = c.args.as_deref().unwrap_or_default().iter().find_map(|a| a.strip_prefix("--ready-file="));
    let command = ready.and_then(|p| p.exec.as_ref()).and_then(|e| e.command.clone()).unwrap_or_default();
    problems.check(ready_file.is_some_and(|file| command == ["test", "-e", file]), || {
        format!("readinessProbe should run `test -e` on the --ready-file ({ready_file:?}): {command:?}")
    });
    for (what, probe) in [("livenessProbe", live), ("readinessProbe", ready)] {
        problems.check(probe.is_some_and(|p| p.period_seconds.is_some() && p.failure_threshold.is_some()), || {
            format!("{what} sets no periodSeconds/failureThreshold")
        });
    }
    let resources = c.resources.as_ref();
    let requests = resources.and_then(|r| r.requests.clone()).unwrap_or_default();
    problems.check(requests.contains_key("cpu") && requests.contains_key("memory"), || {
        format!("resources.requests lacks cpu or memory: {requests:?}")
    });
    let limits = resources.and_then(|r| r.limits.clone()).unwrap_or_default();
    problems.check(limits.contains_key("memory"), || format!("resources.limits lacks memory: {limits:?}"));

    // Mounts and the volumes behind them.
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    for m in mounts {
        problems.check(volumes.iter().any(|v| v.name == m.name), || {
            format!("volumeMount {} names no volume", m.mount_path)
        });
    }
    for v in volumes {
        problems.check(mounts.iter().any(|m| m.name == v.name), || format!("volume {} is never mounted", v.name));
    }
    let mount = |path: &str| mounts.iter().find(|m| m.mount_path == path);
    let volume = |name: &str| volumes.iter().find(|v| v.name == name);
    let host_path = |path: &str| {
        mount(path).and_then(|m| volume(&m.name)).and_then(|v| v.host_path.as_ref()).map(|h| h.path.as_str())
    };
    problems.check(host_path("/sys/fs/bpf") == Some("/sys/fs/bpf"), || {
        "/sys/fs/bpf is not mounted from the hostPath /sys/fs/bpf".into()
    });
    problems.check(mount("/sys/fs/bpf").and_then(|m| m.mount_propagation.as_deref()) == Some("Bidirectional"), || {
        "/sys/fs/bpf should be mounted with mountPropagation: Bidirectional (pins outlive the pod)".into()
    });
    let bpf_type = mount("/sys/fs/bpf").and_then(|m| volume(&m.name)).and_then(|v| v.host_path.as_ref()?.type_.clone());
    problems.check(bpf_type.as_deref() == Some("DirectoryOrCreate"), || {
        format!("the /sys/fs/bpf hostPath type is {bpf_type:?}, not DirectoryOrCreate")
    });
    // The socket programs go on the host's cgroup v2 root: --cgroup-root is
    // a mount of the hostPath /sys/fs/cgroup (the container's own
    // /sys/fs/cgroup is its cgroup namespace's view: only the pod itself).
    let cgroup_root = flag_value(&c.args.clone().unwrap_or_default(), "--cgroup-root").map(str::to_string);
    match cgroup_root.as_deref() {
        None => problems.push("no --cgroup-root: the socket programs would go on the container's own cgroup".into()),
        Some(root) => {
            problems.check(root != "/sys/fs/cgroup", || "--cgroup-root is the container's /sys/fs/cgroup".into());
            problems.check(host_path(root) == Some("/sys/fs/cgroup"), || {
                format!("--cgroup-root {root} is not mounted from the hostPath /sys/fs/cgroup")
            });
            problems.check(mount(root).and_then(|m| m.read_only) == Some(true), || {
                format!("{root} should be mounted readOnly")
            });
        }
    }

    // The configuration file: --config points into a mount of ConfigMap lb-config, key config.yaml.
    let args = c.args.clone().unwrap_or_default();
    let config = flag_value(&args, "--config");
    problems.check(config == Some("/etc/lb/config.yaml"), || format!("--config is {config:?}"));
    let config_mount = config.and_then(|path| {
        mounts.iter().find(|m| Path::new(path).parent() == Some(Path::new(m.mount_path.trim_end_matches('/'))))
    });
    match config_mount {
        None => problems.push(format!("no volumeMount holds the --config file {config:?}")),
        Some(m) => {
            problems.check(m.read_only == Some(true), || format!("{} should be mounted readOnly", m.mount_path));
            let source = volume(&m.name).and_then(|v| v.config_map.as_ref());
            problems.check(source.is_some_and(|s| s.name == CONFIG_MAP), || {
                format!("{} is not mounted from the ConfigMap {CONFIG_MAP}", m.mount_path)
            });
            if let Some(items) = source.and_then(|s| s.items.as_ref()) {
                problems.check(items.iter().any(|i| i.key == CONFIG_KEY && i.path == CONFIG_KEY), || {
                    format!("the ConfigMap volume's items do not project {CONFIG_KEY}")
                });
            }
            let file = config.and_then(|p| Path::new(p).file_name()).and_then(|f| f.to_str());
            problems.check(file == Some(CONFIG_KEY), || format!("--config names {file:?}, not the key {CONFIG_KEY}"));
        }
    }
    let cm = one(&mut problems, &install.config_maps, Some(NAMESPACE), CONFIG_MAP);
    problems.check(cm.is_some_and(|cm| cm.data.as_ref().is_some_and(|d| d.contains_key(CONFIG_KEY))), || {
        format!("ConfigMap {CONFIG_MAP} has no key {CONFIG_KEY}")
    });
    problems.finish("DaemonSet lb");
}

#[test]
fn daemonset_command_line_parses_with_the_agent_cli() {
    let install = load();
    let (_, _, c) = agent(&install);
    let command = c.command.clone().unwrap_or_default();
    assert_eq!(command, ["lb"], "the container runs the lb binary (the image's /usr/local/bin/lb)");
    let argv: Vec<String> = command.iter().chain(c.args.as_deref().unwrap_or_default()).cloned().collect();
    match Cli::try_parse_from(&argv) {
        Ok(cli) => {
            let parsed = format!("{cli:?}");
            assert!(parsed.contains("/etc/lb/config.yaml"), "the parsed command line lost --config: {parsed}");
        }
        Err(e) => panic!("the DaemonSet's command line {argv:?} is not accepted by lb's CLI:\n{e}"),
    }
}

#[test]
fn config_file_ships_without_address_pools() {
    let install = load();
    let mut problems = Problems::default();
    let Some(cm) = one(&mut problems, &install.config_maps, Some(NAMESPACE), CONFIG_MAP) else {
        return problems.finish("ConfigMap lb-config");
    };
    let text = cm.data.as_ref().and_then(|d| d.get(CONFIG_KEY)).cloned().unwrap_or_default();
    match serde_norway::from_str::<Value>(&text) {
        Err(e) => problems.push(format!("{CONFIG_KEY} is not YAML: {e}")),
        Ok(config) => {
            let keys: BTreeSet<&str> =
                config.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
            problems.check(keys == BTreeSet::from(["addressPools", "ingressStatus"]), || {
                format!("{CONFIG_KEY} sets {keys:?}, expected addressPools and ingressStatus")
            });
            problems.check(config.get("addressPools") == Some(&Value::Array(vec![])), || {
                "addressPools should ship empty (nothing is assigned until the user configures a pool)".into()
            });
            problems.check(config.get("ingressStatus").and_then(Value::as_str) == Some("service"), || {
                format!("ingressStatus is {:?}, not service", config.get("ingressStatus"))
            });
        }
    }
    // The agent accepts it: no pools, Ingress status from the Service.
    match AgentConfig::parse(&text, CONFIG_KEY) {
        Ok(config) => problems.check(config == AgentConfig::default(), || {
            format!("{CONFIG_KEY} should be the defaults (no pools, ingressStatus service): {config:?}")
        }),
        Err(e) => problems.push(format!("the agent rejects {CONFIG_KEY}: {e}")),
    }
    // The commented pool example (the lines starting `#  `), uncommented,
    // is a valid pool too.
    problems.check(text.contains(POOL_ANNOTATION), || format!("{CONFIG_KEY} does not mention {POOL_ANNOTATION}"));
    let uncommented: String = text
        .lines()
        .map(|l| {
            if l.trim() == "addressPools: []" {
                "addressPools:"
            } else {
                l.strip_prefix('#').filter(|r| r.starts_with("  ")).unwrap_or(l)
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    match AgentConfig::parse(&uncommented, "the uncommented example") {
        Ok(config) => problems.check(config.address_pools.len() == 1, || {
            format!("the uncommented example should define one pool: {config:?}")
        }),
        Err(e) => {
            problems.push(format!("{CONFIG_KEY}'s commented example, uncommented, is rejected: {e}\n{uncommented}"))
        }
    }
    problems.finish("ConfigMap lb-config");
}

// ---------------------------------------------- Services and IngressClass

#[test]
fn services_and_ingress_class_reach_the_agent() {
    let install = load();
    let mut problems = Problems::default();
    let (ds, _, c) = agent(&install);
    let labels = template_labels(ds);
    let args = c.args.clone().unwrap_or_default();
    let ingress_service =
        flag_value(&args, "--ingress-service").map(str::to_string).unwrap_or_else(|| cli_default("ingress-service"));
    let (ingress_ns, ingress_name) = ingress_service.split_once('/').expect("--ingress-service is NAMESPACE/NAME");
    problems.check(ingress_service == format!("{NAMESPACE}/lb-ingress"), || {
        format!("the agent's --ingress-service is {ingress_service}, not {NAMESPACE}/lb-ingress")
    });

    for (namespace, name, type_, wanted) in [
        (ingress_ns, ingress_name, "LoadBalancer", vec![("http", 80), ("https", 443)]),
        (NAMESPACE, "lb-admin", "ClusterIP", vec![("admin", ADMIN_PORT)]),
    ] {
        let Some(svc) = one(&mut problems, &install.services, Some(namespace), name) else {
            continue;
        };
        let Some(spec) = svc.spec.as_ref() else {
            problems.push(format!("Service {name} has no spec"));
            continue;
        };
        problems.check(spec.type_.as_deref().unwrap_or("ClusterIP") == type_, || {
            format!("Service {name} is of type {:?}, not {type_}", spec.type_)
        });
        let selector = spec.selector.clone().unwrap_or_default();
        problems.check(!selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)), || {
            format!("Service {name} selector {selector:?} does not select the DaemonSet's pods {labels:?}")
        });
        let ports = spec.ports.as_deref().unwrap_or_default();
        let got: BTreeSet<(String, i32)> = ports.iter().map(|p| (p.name.clone().unwrap_or_default(), p.port)).collect();
        let want: BTreeSet<(String, i32)> = wanted.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        problems.check(got == want, || format!("Service {name} ports are {got:?}, expected {want:?}"));
        for p in ports {
            problems.check(p.protocol.as_deref().is_none_or(|p| p == "TCP"), || {
                format!("Service {name} port {:?} is not TCP", p.name)
            });
            let target = p.target_port.clone().unwrap_or(IntOrString::Int(p.port));
            let reached = container_port(c, &target);
            problems.check(reached == Some(p.port), || {
                format!("Service {name} port {:?} targets {target:?}, which reaches container port {reached:?}", p.name)
            });
        }
    }

    let controller = cli_default("controller-name");
    let class = cli_default("ingress-class");
    problems.check(controller == "lb.dev/ingress-controller", || format!("--controller-name default is {controller}"));
    if let Some(ic) = one(&mut problems, &install.ingress_classes, None, &class) {
        let got = ic.spec.as_ref().and_then(|s| s.controller.as_deref());
        problems.check(got == Some(controller.as_str()), || {
            format!("IngressClass {class} has controller {got:?}, not {controller}")
        });
        let default =
            ic.metadata.annotations.as_ref().and_then(|a| a.get("ingressclass.kubernetes.io/is-default-class"));
        problems.check(default.is_none_or(|d| d != "true"), || {
            format!("IngressClass {class} should not be the default class out of the box")
        });
    }
    problems.finish("Services and IngressClass");
}

// --------------------------------------------------------- Containerfile

/// One instruction of a Containerfile: keyword and the rest of the line.
struct Instruction {
    line: usize,
    keyword: String,
    rest: String,
}

/// Joins continuation lines and drops comments and blank lines.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (start, mut buf) = current.take().unwrap_or((i + 1, String::new()));
        let continued = trimmed.ends_with('\\');
        buf.push_str(trimmed.trim_end_matches('\\').trim_end());
        buf.push(' ');
        if continued {
            current = Some((start, buf));
        } else {
            let buf = buf.trim().to_string();
            if buf.is_empty() {
                continue;
            }
            let (keyword, rest) = buf.split_once(char::is_whitespace).unwrap_or((&buf, ""));
            out.push(Instruction { line: start, keyword: keyword.to_ascii_uppercase(), rest: rest.trim().to_string() });
        }
    }
    out
}

/// Flags (`--from=builder`) and arguments of a COPY/ADD (shell or JSON form).
fn copy_arguments(rest: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut flags = BTreeMap::new();
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    while let Some(flag) = words.first().and_then(|w| w.strip_prefix("--")) {
        let (key, value) = flag.split_once('=').unwrap_or((flag, ""));
        flags.insert(key.to_string(), value.to_string());
        words.remove(0);
    }
    let tail = words.join(" ");
    let args = if tail.starts_with('[') {
        serde_json::from_str::<Vec<String>>(&tail).unwrap_or_default()
    } else {
        words.iter().map(|w| w.to_string()).collect()
    };
    (flags, args)
}

/// `./lb-common/` → `lb-common`.
fn normalize(path: &str) -> String {
    let p = path.trim_start_matches("./").trim_end_matches('/');
    if p.is_empty() { ".".to_string() } else { p.to_string() }
}

/// The quoted strings of `key = [ ... ]` in the workspace Cargo.toml.
fn toml_string_list(toml: &str, key: &str) -> Vec<String> {
    let Some(start) = toml.lines().position(|l| l.trim_start().starts_with(&format!("{key} ="))) else {
        return Vec::new();
    };
    let joined: String = toml.lines().skip(start).collect::<Vec<_>>().join(" ");
    let list = joined.split_once('[').map(|(_, r)| r).and_then(|r| r.split_once(']')).map(|(l, _)| l).unwrap_or("");
    list.split(',').map(|s| s.trim().trim_matches('"').to_string()).filter(|s| !s.is_empty()).collect()
}

#[test]
fn containerfile_builds_the_agent_from_paths_that_exist() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("Containerfile")).expect("the repository has a Containerfile");
    let ignore = std::fs::read_to_string(root.join(".containerignore")).expect("the repository has a .containerignore");
    let ignored: Vec<String> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| normalize(l.trim_start_matches("**/")))
        .collect();
    let mut problems = Problems::default();
    for must in ["target", ".git"] {
        problems.check(ignored.iter().any(|i| i == must), || format!(".containerignore does not exclude {must}/"));
    }

    // Stages: (name, image, instructions).
    let mut stages: Vec<(String, String, Vec<Instruction>)> = Vec::new();
    for ins in instructions(&text) {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let image = words.first().copied().unwrap_or("").to_string();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => String::new(),
            };
            stages.push((name, image, Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.2.push(ins);
        } else if ins.keyword != "ARG" {
            problems.push(format!("Containerfile line {}: {} before the first FROM", ins.line, ins.keyword));
        }
    }
    assert!(stages.len() >= 2, "the Containerfile needs a builder and a runtime stage, has {}", stages.len());
    let (builder_name, builder_image, builder) = &stages[0];
    let (_, runtime_image, runtime) = stages.last().expect("stages");
    problems
        .check(builder_image.starts_with("docker.io/library/rust:") && builder_image.ends_with("-bookworm"), || {
            format!("the builder stage is {builder_image}, not docker.io/library/rust:*-bookworm")
        });
    problems.check(!builder_name.is_empty(), || "the builder stage has no name (FROM ... AS builder)".into());
    problems.check(runtime_image == "docker.io/library/debian:bookworm-slim", || {
        format!("the runtime stage is {runtime_image}, not docker.io/library/debian:bookworm-slim")
    });

    // The builder follows the project's own setup: nightly, xtask setup, build-ebpf, the agent.
    let run_text: Vec<String> = builder.iter().filter(|i| i.keyword == "RUN").map(|i| i.rest.clone()).collect();
    let position = |needle: &str| run_text.iter().position(|r| r.contains(needle));
    let steps = [
        "rustup toolchain install nightly",
        "cargo xtask setup",
        "cargo xtask build-ebpf",
        "cargo build --profile dist",
        "/usr/local/bin/lb",
    ];
    let found: Vec<Option<usize>> = steps.iter().map(|s| position(s)).collect();
    problems.check(found.iter().all(Option::is_some) && found.windows(2).all(|w| w[0] <= w[1]), || {
        format!("the builder's RUN steps should contain, in order, {steps:?}; found at {found:?}")
    });
    problems.check(run_text.iter().any(|r| r.contains("-p lb-userspace") && r.contains("--bin lb")), || {
        "the builder does not build `-p lb-userspace --bin lb`".into()
    });
    // The shipped agent is the `dist` build (whole-program LTO), the one the bench measures.
    problems.check(run_text.iter().any(|r| r.contains("--profile dist") && r.contains("target/dist/lb")), || {
        "the builder does not install the `dist` build (target/dist/lb) it builds".into()
    });
    let workdir =
        builder.iter().rev().find(|i| i.keyword == "WORKDIR").map(|i| i.rest.trim_end_matches('/').to_string());
    for r in &run_text {
        if let Some(value) = r.split_whitespace().find_map(|w| w.strip_prefix("LB_EBPF_OBJECT=")) {
            let want = format!("{}/{EBPF_OBJECT}", workdir.clone().unwrap_or_default());
            problems.check(value == want, || format!("LB_EBPF_OBJECT={value}, but build-ebpf writes {want}"));
        }
    }

    // COPY sources: from an earlier stage, or build-context paths that exist and are not ignored.
    let mut copied = BTreeSet::new();
    for (index, (_, _, body)) in stages.iter().enumerate() {
        for ins in body.iter().filter(|i| i.keyword == "COPY" || i.keyword == "ADD") {
            let (flags, args) = copy_arguments(&ins.rest);
            problems
                .check(args.len() >= 2, || format!("Containerfile line {}: COPY needs a source and a dest", ins.line));
            let sources = &args[..args.len().saturating_sub(1)];
            if let Some(from) = flags.get("from") {
                let earlier = stages[..index].iter().any(|(name, _, _)| name == from);
                problems.check(earlier, || {
                    format!("Containerfile line {}: COPY --from={from} names no earlier stage", ins.line)
                });
                continue;
            }
            for source in sources {
                let rel = normalize(source);
                copied.insert(rel.clone());
                problems.check(!rel.starts_with('/') && !rel.contains(".."), || {
                    format!("Containerfile line {}: {source} is outside the build context", ins.line)
                });
                problems.check(root.join(&rel).exists(), || {
                    format!("Containerfile line {}: {source} does not exist in the repository", ins.line)
                });
                problems.check(!ignored.iter().any(|i| rel == *i || rel.starts_with(&format!("{i}/"))), || {
                    format!("Containerfile line {}: {source} is excluded by .containerignore", ins.line)
                });
            }
        }
    }
    // Everything the workspace build needs is in the context.
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace Cargo.toml");
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    needed.extend(toml_string_list(&cargo_toml, "members"));
    // lb-ebpf, built by build-ebpf; not fuzz/, whose cargo-fuzz targets only
    // `cargo xtask fuzz` builds.
    needed.extend(toml_string_list(&cargo_toml, "exclude").into_iter().filter(|e| e != "fuzz"));
    problems.check(needed.len() > 3, || "could not read the workspace members from Cargo.toml".into());
    for n in &needed {
        problems.check(copied.contains(".") || copied.contains(n), || format!("the builder does not copy {n}"));
    }

    // Runtime: the binary from the builder, on PATH, as the entry point.
    let binary = runtime.iter().find(|i| {
        let (flags, args) = copy_arguments(&i.rest);
        i.keyword == "COPY"
            && flags.get("from") == Some(builder_name)
            && args.first().map(String::as_str) == Some("/usr/local/bin/lb")
            && args.last().is_some_and(|d| d == "/usr/local/bin/lb" || d == "/usr/local/bin/")
    });
    problems.check(binary.is_some(), || {
        format!("the runtime stage does not COPY --from={builder_name} /usr/local/bin/lb /usr/local/bin/lb")
    });
    let entrypoint = runtime.iter().rfind(|i| i.keyword == "ENTRYPOINT").map(|i| i.rest.as_str());
    problems.check(entrypoint == Some(r#"["lb"]"#), || format!("ENTRYPOINT is {entrypoint:?}, not [\"lb\"]"));
    let runtime_runs: String = runtime.iter().filter(|i| i.keyword == "RUN").map(|i| i.rest.as_str()).collect();
    for package in ["ca-certificates", "iproute2"] {
        problems.check(runtime_runs.contains(package), || format!("the runtime stage does not install {package}"));
    }
    let labels: String = runtime.iter().filter(|i| i.keyword == "LABEL").map(|i| i.rest.as_str()).collect();
    for (key, value) in [
        ("org.opencontainers.image.licenses", env!("CARGO_PKG_LICENSE")),
        ("org.opencontainers.image.version", env!("CARGO_PKG_VERSION")),
        ("org.opencontainers.image.source", ""),
    ] {
        problems.check(labels.contains(&format!("{key}=\"{value}")), || format!("LABEL {key} is not {value:?}…"));
    }
    problems.finish("Containerfile");
}

/// The data path is pinned on the host's bpffs, so it outlives the pod, and
/// `manifests/uninstall/` runs `lb cleanup` on the same directory.
#[test]
fn pins_live_on_the_host_and_the_uninstall_cleans_them() {
    let install = load();
    let (_, pod, c) = agent(&install);
    let argv: Vec<String> =
        c.command.clone().unwrap_or_default().into_iter().chain(c.args.clone().unwrap_or_default()).collect();
    let pin_dir = argv
        .iter()
        .find_map(|a| a.strip_prefix("--bpf-pin-dir="))
        .expect("the DaemonSet names its --bpf-pin-dir")
        .to_string();
    let mount = c
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|m| Path::new(&pin_dir).starts_with(&m.mount_path))
        .expect("--bpf-pin-dir is on a mounted volume");
    assert_eq!(mount.mount_propagation.as_deref(), Some("Bidirectional"), "an agent's bpffs mount reaches the host");
    let volume = pod.volumes.as_deref().unwrap_or_default().iter().find(|v| v.name == mount.name).expect("volume");
    assert_eq!(volume.host_path.as_ref().map(|h| h.path.as_str()), Some("/sys/fs/bpf"), "the host's bpffs");

    let text = std::fs::read_to_string(manifests_dir().join("uninstall/daemonset.yaml")).expect("manifests/uninstall/");
    let uninstall: DaemonSet = serde_norway::from_str(&text).expect("the uninstall DaemonSet parses");
    let spec = uninstall.spec.template.spec.expect("pod spec");
    let cleanup = spec.init_containers.unwrap_or_default().into_iter().next().expect("the cleanup container");
    let argv = cleanup.command.unwrap_or_default();
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?} is not accepted by lb's CLI:\n{e}"));
    assert!(format!("{cli:?}").contains(&format!("bpf_pin_dir: \"{pin_dir}\"")), "cleans {pin_dir}: {cli:?}");
    let mounted = cleanup.volume_mounts.unwrap_or_default();
    assert!(mounted.iter().any(|m| m.mount_path == "/sys/fs/bpf"), "the cleanup sees the host's bpffs");
}

// ----------------------------------------------------------- monitoring

/// `manifests/monitoring/`: optional, outside the main kustomization.
const MONITORING_DIR: &str = "monitoring";
const DASHBOARD_JSON: &str = "lb-dashboard.json";
const METRICS_PATH: &str = "/metrics";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FamilyType {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric family the agent exports (`GET /metrics`): ingress-nginx's,
/// kube-proxy's, lb's own and the process collector's, named as dashboards
/// query them. The dashboard may query these only.
const FAMILIES: &[(&str, FamilyType)] = &[
    ("nginx_ingress_controller_requests", FamilyType::Counter),
    ("nginx_ingress_controller_request_duration_seconds", FamilyType::Histogram),
    ("nginx_ingress_controller_response_duration_seconds", FamilyType::Histogram),
    ("nginx_ingress_controller_request_size", FamilyType::Histogram),
    ("nginx_ingress_controller_response_size", FamilyType::Histogram),
    ("nginx_ingress_controller_config_last_reload_successful", FamilyType::Gauge),
    ("nginx_ingress_controller_config_last_reload_successful_timestamp_seconds", FamilyType::Gauge),
    ("nginx_ingress_controller_ssl_expire_time_seconds", FamilyType::Gauge),
    ("kubeproxy_sync_proxy_rules_duration_seconds", FamilyType::Histogram),
    ("kubeproxy_sync_proxy_rules_last_timestamp_seconds", FamilyType::Gauge),
    ("kubeproxy_network_programming_duration_seconds", FamilyType::Histogram),
    ("lb_service_packets_total", FamilyType::Counter),
    ("lb_service_bytes_total", FamilyType::Counter),
    ("lb_xdp_verdicts_total", FamilyType::Counter),
    ("lb_conntrack_entries", FamilyType::Gauge),
    ("lb_conntrack_capacity", FamilyType::Gauge),
    ("lb_masquerade_ports_in_use", FamilyType::Gauge),
    ("lb_maglev_table_size", FamilyType::Gauge),
    ("lb_build_info", FamilyType::Gauge),
    ("process_cpu_seconds_total", FamilyType::Counter),
    ("process_resident_memory_bytes", FamilyType::Gauge),
    ("process_open_fds", FamilyType::Gauge),
    ("process_start_time_seconds", FamilyType::Gauge),
];

/// Families the dashboard must show: lb's own, kube-proxy's, CPU and RSS.
fn dashboard_must_show(family: &str) -> bool {
    family.starts_with("lb_")
        || family.starts_with("kubeproxy_")
        || family == "process_cpu_seconds_total"
        || family == "process_resident_memory_bytes"
}

/// The family a series name belongs to (`x_bucket` → the histogram `x`).
fn family_of(series: &str) -> Option<&'static str> {
    FAMILIES.iter().find_map(|&(family, type_)| {
        let matches = match type_ {
            FamilyType::Counter | FamilyType::Gauge => series == family,
            FamilyType::Histogram => {
                ["_bucket", "_sum", "_count"].iter().any(|suffix| series.strip_suffix(suffix) == Some(family))
            }
        };
        matches.then_some(family)
    })
}

/// The metric names a PromQL expression selects, each with the text of its
/// label matchers (`""` if none). Functions and aggregations (followed by
/// `(`), their `by`/`without`/`on`/`ignoring`/`group_*` label lists,
/// strings, ranges, numbers and Grafana variables are not metric names.
fn promql_selectors(expr: &str) -> Vec<(String, String)> {
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
    const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    // The index just past the bracket closing the one at `open`, skipping strings.
    let close = |open: usize, end: char| {
        let mut i = open + 1;
        while i < chars.len() && chars[i] != end {
            if matches!(chars[i], '"' | '\'' | '`') {
                let quote = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        (i + 1).min(chars.len())
    };
    let next_non_space = |from: usize| (from..chars.len()).find(|&j| !chars[j].is_whitespace());
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c == '{' {
            i = close(i, '}');
        } else if c == '[' {
            i = close(i, ']');
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A variable ($__rate_interval, ${x}) or a number (0.99, 1e3).
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.' | '{' | '}')) {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':')) {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let next = next_non_space(i);
            let followed_by = |ch: char| next.is_some_and(|j| chars[j] == ch);
            if LABEL_LISTS.contains(&ident.as_str()) {
                if let Some(j) = next.filter(|&j| chars[j] == '(') {
                    i = close(j, ')');
                }
            } else if followed_by('(')
                || AGGREGATIONS.contains(&ident.as_str())
                || KEYWORDS.contains(&ident.to_ascii_lowercase().as_str())
            {
                // A function, an aggregation or an operator.
            } else if let Some(j) = next.filter(|&j| chars[j] == '{') {
                i = close(j, '}');
                out.push((ident, chars[j..i].iter().collect()));
            } else {
                out.push((ident, String::new()));
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn promql_selectors_finds_metric_names_only() {
    let expr = "histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{x=~\"$v\", y=\"}\"}[$__rate_interval]))) \
                / on (instance) group_left (version) max without(pod) (b_info) and time() - c offset 5m > bool 1e3";
    let got: Vec<String> = promql_selectors(expr).into_iter().map(|(name, _)| name).collect();
    assert_eq!(got, ["a_seconds_bucket", "b_info", "c"]);
    let (_, matchers) = &promql_selectors("sum(rate(x_total{instance=~\"$instance\"}[5m]))")[0];
    assert_eq!(matchers, "{instance=~\"$instance\"}");
    assert_eq!(
        family_of("kubeproxy_sync_proxy_rules_duration_seconds_bucket"),
        Some("kubeproxy_sync_proxy_rules_duration_seconds")
    );
    assert_eq!(family_of("lb_service_packets_total"), Some("lb_service_packets_total"));
    // A renamed family, a histogram queried bare, a gauge with _bucket: unknown.
    for unknown in
        ["lb_service_packet_total", "kubeproxy_sync_proxy_rules_duration_seconds", "lb_conntrack_entries_bucket"]
    {
        assert_eq!(family_of(unknown), None, "{unknown}");
    }
}

/// A Prometheus Operator PodMonitor (`monitoring.coreos.com/v1`): the fields
/// the install uses, unknown ones rejected.
#[derive(Debug, serde::Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PodMonitor {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: PodMonitorSpec,
}

#[derive(Debug, serde::Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PodMonitorSpec {
    selector: LabelSelector,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace_selector: Option<PodMonitorNamespaceSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_target_labels: Option<Vec<String>>,
    pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Debug, serde::Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PodMonitorNamespaceSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    any: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    match_names: Option<Vec<String>>,
}

#[derive(Debug, serde::Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PodMetricsEndpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scrape_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    honor_labels: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    relabelings: Option<Vec<RelabelConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metric_relabelings: Option<Vec<RelabelConfig>>,
}

#[derive(Debug, serde::Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RelabelConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    source_labels: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    separator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replacement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
}

/// Every object of `manifests/monitoring/`.
#[derive(Default)]
struct Monitoring {
    /// ConfigMaps and every object's metadata.
    install: Install,
    network_policies: Vec<NetworkPolicy>,
    pod_monitors: Vec<PodMonitor>,
}

fn monitoring_dir() -> PathBuf {
    manifests_dir().join(MONITORING_DIR)
}

/// The YAML files of `manifests/monitoring/` but its kustomization.
fn monitoring_yaml_files() -> BTreeSet<String> {
    yaml_files(&monitoring_dir())
}

/// The YAML files directly in `dir` but its kustomization.
fn yaml_files(dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().expect("file type").is_file()
            && (name.ends_with(".yaml") || name.ends_with(".yml"))
            && name != "kustomization.yaml"
        {
            files.insert(name);
        }
    }
    files
}

/// Parses every YAML file of `manifests/monitoring/`, strictly.
fn load_monitoring(problems: &mut Problems) -> Monitoring {
    let mut monitoring = Monitoring::default();
    for file in monitoring_yaml_files() {
        let origin_file = format!("{MONITORING_DIR}/{file}");
        let text = match std::fs::read_to_string(monitoring_dir().join(&file)) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("reading {origin_file}: {e}"));
                continue;
            }
        };
        for (index, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let origin = format!("{origin_file} document {index}");
            let value = match Value::deserialize(document) {
                Ok(Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{origin}: not YAML: {e}"));
                    continue;
                }
            };
            let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
            let install = &mut monitoring.install;
            match (api_version, kind) {
                ("monitoring.coreos.com/v1", "PodMonitor") => {
                    match serde_json::from_value::<PodMonitor>(value.clone()) {
                        Err(e) => problems.push(format!("{origin}: not a valid PodMonitor: {e}")),
                        Ok(pm) => {
                            let mut dropped = Vec::new();
                            let back = serde_json::to_value(&pm).expect("a PodMonitor serializes");
                            compare_round_trip(&value, &back, "", &mut dropped);
                            problems.check(dropped.is_empty(), || {
                                format!("{origin}: PodMonitor does not survive a round trip: {}", dropped.join("; "))
                            });
                            install.objects.push(ObjectInfo {
                                origin,
                                kind: "PodMonitor",
                                namespaced: true,
                                meta: pm.metadata.clone(),
                            });
                            monitoring.pod_monitors.push(pm);
                        }
                    }
                }
                (v, k) if v == NetworkPolicy::API_VERSION && k == NetworkPolicy::KIND => {
                    if let Some(np) =
                        parse_typed::<NetworkPolicy>(install, &mut problems.0, &origin, &text, index, &value)
                    {
                        monitoring.network_policies.push(np);
                    }
                }
                (v, k) if v == ConfigMap::API_VERSION && k == ConfigMap::KIND => {
                    if let Some(cm) = parse_typed::<ConfigMap>(install, &mut problems.0, &origin, &text, index, &value)
                    {
                        install.config_maps.push(cm);
                    }
                }
                _ => problems.push(format!(
                    "{origin}: apiVersion {api_version:?} kind {kind:?} is not a kind monitoring/ may contain"
                )),
            }
        }
    }
    monitoring
}

#[test]
fn monitoring_is_its_own_kustomization_listing_every_file() {
    let mut problems = Problems::default();
    let main = kustomization_resources(&kustomization());
    problems.check(!main.iter().any(|r| normalize(r) == MONITORING_DIR), || {
        "the main kustomization lists monitoring/ (its PodMonitor needs the Prometheus Operator's CRDs)".into()
    });
    let path = monitoring_dir().join("kustomization.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let k: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    problems.check(k.get("apiVersion").and_then(Value::as_str) == Some("kustomize.config.k8s.io/v1beta1"), || {
        format!("monitoring kustomization apiVersion is {:?}", k.get("apiVersion"))
    });
    // A Kustomization (not a Component), so `kustomize build manifests/monitoring` works on its own.
    problems.check(k.get("kind").and_then(Value::as_str) == Some("Kustomization"), || {
        format!("monitoring kustomization kind is {:?}", k.get("kind"))
    });
    problems.check(k.get("namespace").is_none(), || "monitoring kustomization forces a namespace".into());
    let listed: BTreeSet<String> = kustomization_resources(&k).into_iter().collect();
    problems.check(listed == monitoring_yaml_files(), || {
        format!("monitoring/kustomization.yaml lists {listed:?}, the directory holds {:?}", monitoring_yaml_files())
    });
    problems.finish("monitoring/kustomization.yaml");
}

#[test]
fn monitoring_objects_parse_strictly_and_live_in_lb_system() {
    let mut problems = Problems::default();
    let monitoring = load_monitoring(&mut problems);
    check_object_metadata(&mut problems, &monitoring.install.objects);
    problems.check(monitoring.pod_monitors.len() == 1, || {
        format!("expected one PodMonitor, found {}", monitoring.pod_monitors.len())
    });
    problems.check(monitoring.network_policies.len() == 1, || {
        format!("expected one NetworkPolicy, found {}", monitoring.network_policies.len())
    });
    problems.check(monitoring.install.config_maps.len() == 1, || {
        format!("expected one ConfigMap (the dashboard), found {}", monitoring.install.config_maps.len())
    });
    problems.finish("monitoring objects");
}

/// The admin listener's port, checked to be reachable off the node's
/// loopback (the kubelet's probe and the scrapers use the node's address).
fn admin_addr_port(problems: &mut Problems, c: &Container) -> Option<u16> {
    let args = c.args.clone().unwrap_or_default();
    let addr = flag_value(&args, "--admin-addr").map(str::to_string).unwrap_or_else(|| cli_default("admin-addr"));
    if let Some(port) = addr.strip_prefix("$(HOST_IP):") {
        let env = c.env.as_deref().unwrap_or_default();
        problems.check(env.iter().any(|e| e.name == "HOST_IP"), || "--admin-addr uses $(HOST_IP), unset".into());
        return port.parse().ok();
    }
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => {
            problems.check(!a.ip().is_loopback(), || {
                format!("--admin-addr {addr} is loopback: neither the liveness probe nor a scraper reaches it")
            });
            Some(a.port())
        }
        Err(e) => {
            problems.push(format!("--admin-addr {addr}: {e}"));
            None
        }
    }
}

#[test]
fn the_agent_is_scraped_on_its_admin_port() {
    let install = load();
    let mut problems = Problems::default();
    let (ds, _, c) = agent(&install);
    let admin_port = admin_addr_port(&mut problems, c);
    problems.check(admin_port == u16::try_from(ADMIN_PORT).ok(), || {
        format!("--admin-addr listens on port {admin_port:?}, not the admin port {ADMIN_PORT}")
    });

    // prometheus.io/* on the pod template.
    let annotations = ds.spec.template.metadata.as_ref().and_then(|m| m.annotations.clone()).unwrap_or_default();
    let port = ADMIN_PORT.to_string();
    for (key, value) in
        [("prometheus.io/scrape", "true"), ("prometheus.io/port", port.as_str()), ("prometheus.io/path", METRICS_PATH)]
    {
        problems.check(annotations.get(key).map(String::as_str) == Some(value), || {
            format!("the pod template's annotation {key} is {:?}, not {value:?}", annotations.get(key))
        });
    }

    // The PodMonitor selects the DaemonSet's pods and scrapes the admin port by name.
    let labels = template_labels(ds);
    let monitoring = load_monitoring(&mut problems);
    for pm in &monitoring.pod_monitors {
        let name = pm.metadata.name.as_deref().unwrap_or("");
        let selector = &pm.spec.selector;
        let match_labels = selector.match_labels.clone().unwrap_or_default();
        problems.check(
            !match_labels.is_empty()
                && match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
                && selector.match_expressions.as_ref().is_none_or(Vec::is_empty),
            || format!("PodMonitor {name} selector {selector:?} does not select the DaemonSet's pods {labels:?}"),
        );
        let namespaces = pm.spec.namespace_selector.as_ref();
        problems.check(
            namespaces
                .is_none_or(|n| n.any != Some(true) && n.match_names.as_deref() == Some(&[NAMESPACE.to_string()])),
            || format!("PodMonitor {name} looks in {namespaces:?}, not {NAMESPACE}"),
        );
        let endpoints = &pm.spec.pod_metrics_endpoints;
        problems.check(endpoints.len() == 1, || format!("PodMonitor {name} has {} endpoints, not 1", endpoints.len()));
        for e in endpoints {
            let port_name = e.port.clone().unwrap_or_default();
            let reached = container_port(c, &IntOrString::String(port_name.clone()));
            problems.check(reached == Some(ADMIN_PORT), || {
                format!(
                    "PodMonitor {name} scrapes port {port_name:?}, which names container port {reached:?}, not admin"
                )
            });
            problems.check(e.path.as_deref() == Some(METRICS_PATH), || {
                format!("PodMonitor {name} scrapes path {:?}, not {METRICS_PATH}", e.path)
            });
            problems.check(e.scheme.as_deref().is_none_or(|s| s == "http"), || {
                format!("PodMonitor {name} scrapes with scheme {:?}; the admin listener is plain HTTP", e.scheme)
            });
        }
    }
    problems.finish("scraping");
}

#[test]
fn network_policy_admits_the_admin_port_only_from_monitoring() {
    let install = load();
    let mut problems = Problems::default();
    let (ds, _, c) = agent(&install);
    let labels = template_labels(ds);
    let monitoring = load_monitoring(&mut problems);
    let monitoring_peer = BTreeMap::from([("kubernetes.io/metadata.name".to_string(), "monitoring".to_string())]);
    for np in &monitoring.network_policies {
        let name = np.metadata.name.as_deref().unwrap_or("");
        let Some(spec) = np.spec.as_ref() else {
            problems.push(format!("NetworkPolicy {name} has no spec"));
            continue;
        };
        let selector = spec.pod_selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap_or_default();
        problems.check(!selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)), || {
            format!("NetworkPolicy {name} podSelector {selector:?} does not select the DaemonSet's pods {labels:?}")
        });
        let types = spec.policy_types.clone().unwrap_or_default();
        problems
            .check(types == ["Ingress"], || format!("NetworkPolicy {name} policyTypes are {types:?}, not [Ingress]"));
        let mut admitted_from_anywhere = BTreeSet::new();
        let mut admin_from_monitoring = false;
        for (i, rule) in spec.ingress.as_deref().unwrap_or_default().iter().enumerate() {
            // The container ports this rule admits (no ports: every port).
            let ports: Vec<Option<i32>> = match rule.ports.as_deref() {
                None | Some([]) => {
                    c.ports.as_deref().unwrap_or_default().iter().map(|p| Some(p.container_port)).collect()
                }
                Some(ports) => ports.iter().map(|p| p.port.as_ref().and_then(|port| container_port(c, port))).collect(),
            };
            problems.check(ports.iter().all(Option::is_some), || {
                format!(
                    "NetworkPolicy {name} ingress rule {i} names a port the container does not have: {:?}",
                    rule.ports
                )
            });
            let from = rule.from.as_deref().unwrap_or_default();
            let only_monitoring = from.len() == 1
                && from[0].ip_block.is_none()
                && from[0].pod_selector.is_none()
                && from[0].namespace_selector.as_ref().is_some_and(|s| {
                    s.match_labels.as_ref() == Some(&monitoring_peer)
                        && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
                });
            if ports.contains(&Some(ADMIN_PORT)) {
                problems.check(only_monitoring, || {
                    format!("NetworkPolicy {name} ingress rule {i} admits the admin port from more than the monitoring namespace: {from:?}")
                });
                admin_from_monitoring |= only_monitoring;
            }
            if from.is_empty() {
                admitted_from_anywhere.extend(ports.into_iter().flatten());
            }
        }
        problems.check(admin_from_monitoring, || {
            format!("NetworkPolicy {name} never admits the admin port from monitoring")
        });
        // Were it enforced, the proxy's ports must stay open to everyone.
        for port in [80, 443] {
            problems.check(admitted_from_anywhere.contains(&port), || {
                format!(
                    "NetworkPolicy {name} does not admit port {port} from anywhere (it would cut off the Ingress proxy)"
                )
            });
        }
    }
    problems.finish("NetworkPolicy");
}

/// Every panel of a dashboard, rows' collapsed panels included.
fn dashboard_panels(panels: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in panels.as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push(p);
        if let Some(nested) = p.get("panels") {
            out.extend(dashboard_panels(nested));
        }
    }
    out
}

#[test]
fn dashboard_queries_only_families_the_agent_exports() {
    let mut problems = Problems::default();
    let path = monitoring_dir().join(DASHBOARD_JSON);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));

    // The ConfigMap for Grafana's sidecar carries the same dashboard.
    let monitoring = load_monitoring(&mut problems);
    for cm in &monitoring.install.config_maps {
        let name = cm.metadata.name.as_deref().unwrap_or("");
        let labels = cm.metadata.labels.clone().unwrap_or_default();
        problems.check(labels.get("grafana_dashboard").map(String::as_str) == Some("1"), || {
            format!("ConfigMap {name} lacks the label grafana_dashboard: \"1\" (Grafana's sidecar loads only those)")
        });
        let data = cm.data.clone().unwrap_or_default();
        problems.check(data.keys().eq([DASHBOARD_JSON]), || {
            format!("ConfigMap {name} holds {:?}, not just {DASHBOARD_JSON}", data.keys().collect::<Vec<_>>())
        });
        if let Some(json) = data.get(DASHBOARD_JSON) {
            match serde_json::from_str::<Value>(json) {
                Ok(embedded) => problems.check(embedded == dashboard, || {
                    format!("ConfigMap {name}'s {DASHBOARD_JSON} differs from monitoring/{DASHBOARD_JSON}")
                }),
                Err(e) => problems.push(format!("ConfigMap {name}'s {DASHBOARD_JSON} is not JSON: {e}")),
            }
        }
    }

    let schema = dashboard.get("schemaVersion").and_then(Value::as_u64);
    problems.check(schema.is_some_and(|s| (36..=41).contains(&s)), || format!("schemaVersion is {schema:?}"));
    problems.check(dashboard.get("uid").and_then(Value::as_str).is_some_and(|u| !u.is_empty()), || {
        "the dashboard has no uid".into()
    });

    // Variables: the data source (Prometheus) and the agent.
    let variables = dashboard.pointer("/templating/list").and_then(Value::as_array).cloned().unwrap_or_default();
    let variable = |name: &str| variables.iter().find(|v| v.get("name").and_then(Value::as_str) == Some(name));
    let datasource = variable("datasource");
    problems.check(
        datasource.is_some_and(|v| {
            v.get("type").and_then(Value::as_str) == Some("datasource")
                && v.get("query").and_then(Value::as_str) == Some("prometheus")
        }),
        || format!("no variable datasource of type datasource, query prometheus: {datasource:?}"),
    );
    let agent_variable = ["instance", "pod"].into_iter().find(|name| variable(name).is_some());
    problems.check(agent_variable.is_some(), || "no instance or pod variable".into());

    // Every expression: panels' targets and query variables.
    let mut expressions: Vec<(String, String)> = Vec::new();
    let mut ids = BTreeSet::new();
    let panels = dashboard.get("panels").cloned().unwrap_or_default();
    for panel in dashboard_panels(&panels) {
        let title = panel.get("title").and_then(Value::as_str).unwrap_or("").to_string();
        let id = panel.get("id").and_then(Value::as_u64);
        problems.check(id.is_some_and(|id| ids.insert(id)), || format!("panel {title:?} has no id or a repeated one"));
        let targets = panel.get("targets").and_then(Value::as_array).cloned().unwrap_or_default();
        if panel.get("type").and_then(Value::as_str) != Some("row") {
            problems.check(!targets.is_empty(), || format!("panel {title:?} has no targets"));
        }
        let sources = std::iter::once(panel).chain(targets.iter()).filter_map(|v| v.get("datasource"));
        for source in sources {
            problems.check(source.get("uid").and_then(Value::as_str) == Some("${datasource}"), || {
                format!("panel {title:?} uses data source {source}, not ${{datasource}}")
            });
        }
        for target in &targets {
            match target.get("expr").and_then(Value::as_str) {
                Some(expr) if !expr.trim().is_empty() => expressions.push((title.clone(), expr.to_string())),
                _ => problems.push(format!("panel {title:?} has a target without expr: {target}")),
            }
        }
    }
    for v in variables.iter().filter(|v| v.get("type").and_then(Value::as_str) == Some("query")) {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        let query = v.get("query").and_then(|q| q.get("query").or(Some(q))).and_then(Value::as_str).unwrap_or("");
        let inner = query.trim().strip_suffix(')');
        let expr = match (
            inner.and_then(|q| q.strip_prefix("label_values(")),
            inner.and_then(|q| q.strip_prefix("query_result(")),
        ) {
            (Some(args), _) => args.rsplit_once(',').map(|(selector, _)| selector).unwrap_or(""),
            (_, Some(expr)) => expr,
            _ => {
                problems.push(format!(
                    "variable {name}: query {query:?} is not label_values(metric, label) or query_result(expr)"
                ));
                continue;
            }
        };
        problems.check(!expr.trim().is_empty(), || format!("variable {name}: {query:?} names no metric"));
        expressions.push((format!("variable {name}"), expr.to_string()));
    }

    let mut shown = BTreeSet::new();
    for (where_, expr) in &expressions {
        let selectors = promql_selectors(expr);
        problems.check(!selectors.is_empty(), || format!("{where_}: {expr:?} selects no metric"));
        for (series, matchers) in selectors {
            match family_of(&series) {
                Some(family) => {
                    shown.insert(family);
                }
                None => problems.push(format!("{where_}: {series} is not a family the agent exports ({expr})")),
            }
            if let Some(var) = agent_variable.filter(|_| !where_.starts_with("variable ")) {
                problems.check(matchers.contains(&format!("{var}=~\"${var}\"")), || {
                    format!("{where_}: {series} is not filtered by {var}=~\"${var}\" ({expr})")
                });
            }
        }
    }
    for (family, _) in FAMILIES.iter().filter(|(f, _)| dashboard_must_show(f)) {
        problems.check(shown.contains(family), || format!("no panel shows {family}"));
    }
    problems.finish("Grafana dashboard");
}
