use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::cache::{DirCache, Refresh};
use super::*;
use crate::diagnostics::Diagnostic;
use crate::snapshot::Snapshot;

const SERVICE_A: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n  - port: 80\n";
const SLICE_A: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: a-1\n  namespace: web\n  labels:\n    kubernetes.io/service-name: a\naddressType: IPv4\nendpoints:\n- addresses: [10.244.1.10]\nports:\n- port: 8080\n";

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn names(snapshot: &Snapshot) -> (Vec<String>, Vec<String>) {
    let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        format!("{}/{}", m.namespace.as_deref().unwrap_or("?"), m.name.as_deref().unwrap_or("?"))
    };
    (
        snapshot.services.iter().map(|s| name(&s.metadata)).collect(),
        snapshot.endpoint_slices.iter().map(|s| name(&s.metadata)).collect(),
    )
}

fn service(name: &str) -> String {
    SERVICE_A.replace("name: a", &format!("name: {name}"))
}

#[test]
fn loads_multi_document_files_and_defaults_the_namespace() {
    let dir = dir_with(&[("a.yaml", &format!("---\n{SERVICE_A}---\n{SLICE_A}---\n"))]);
    let (snapshot, diagnostics) = load_dir(dir.path());
    assert_eq!(diagnostics, []);
    assert_eq!(names(&snapshot), (vec!["default/a".into()], vec!["web/a-1".into()]));
}

#[test]
fn a_bad_document_is_diagnosed_and_the_rest_loads() {
    let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: eighty\n";
    let dir = dir_with(&[("a.yaml", &format!("{}---\n{bad}---\n{}", service("x"), service("y")))]);
    let (snapshot, diagnostics) = load_dir(dir.path());
    assert_eq!(names(&snapshot).0, ["default/x", "default/y"]);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let d = &diagnostics[0];
    assert!(d.object.starts_with("Service default/bad ("), "{d}");
    assert!(d.object.contains("a.yaml document 2, line 9"), "{d}");
    assert_eq!(d.field, "spec.ports[0].port");
}

#[test]
fn broken_yaml_and_missing_names_are_diagnosed() {
    let nameless = "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: x\n";
    let dir = dir_with(&[("a.yaml", &format!("a: [\n---\n{nameless}---\n{}", service("ok")))]);
    let (snapshot, diagnostics) = load_dir(dir.path());
    assert_eq!(names(&snapshot).0, ["default/ok"]);
    let shown: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown[0].contains("a.yaml document 1, line 1: invalid YAML"), "{}", shown[0]);
    assert!(shown[1].contains("a.yaml document 2, line 3): metadata.name: a Service needs a name"), "{}", shown[1]);
}

#[test]
fn unknown_kinds_and_other_files_are_skipped() {
    let ingress = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i\n";
    let dir = dir_with(&[
        ("a.yaml", &format!("{ingress}---\n{}", service("a"))),
        ("notes.txt", "not yaml: ["),
        (".hidden.yaml", "not yaml: ["),
        ("b.yaml~", "not yaml: ["),
        ("c.json", r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}"#),
    ]);
    fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    let (snapshot, diagnostics) = load_dir(dir.path());
    assert_eq!(diagnostics, []);
    assert_eq!(names(&snapshot).0, ["default/a"]);
}

#[test]
fn lists_are_expanded() {
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "namespace": "n"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "n"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "n"}}
    ]}"#;
    let dir = dir_with(&[("list.json", list)]);
    let (snapshot, diagnostics) = load_dir(dir.path());
    assert_eq!(names(&snapshot).0, ["n/a", "n/b"]);
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].field, "items[1].metadata.name");
}

#[test]
fn duplicates_keep_the_first() {
    let dir = dir_with(&[("a.yaml", &service("x")), ("b.yaml", &service("x").replace("80", "81"))]);
    let (snapshot, diagnostics) = load_dir(dir.path());
    assert_eq!(snapshot.services.len(), 1);
    assert_eq!(snapshot.services.iter().next().unwrap().spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port, 80);
    assert_eq!(diagnostics.len(), 1);
    let shown = diagnostics[0].to_string();
    assert!(shown.starts_with("Service default/x ("), "{shown}");
    assert!(shown.contains("b.yaml document 1") && shown.contains("a.yaml document 1"), "{shown}");
}

#[test]
fn two_loads_compare_equal_and_are_sorted() {
    let dir = dir_with(&[("b.yaml", &service("a")), ("a.yaml", &service("b"))]);
    let (first, _) = load_dir(dir.path());
    let (second, _) = load_dir(dir.path());
    assert_eq!(first, second);
    assert_eq!(names(&first).0, ["default/a", "default/b"]);
}

#[test]
fn a_missing_directory_is_a_diagnostic() {
    let (snapshot, diagnostics) = load_dir(Path::new("/nonexistent/manifests"));
    assert_eq!(snapshot, Snapshot::default());
    assert_eq!(diagnostics.len(), 1);
    assert!(diagnostics[0].to_string().contains("/nonexistent/manifests"));
}

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/seed-examples")
}

#[test]
fn the_seed_examples_load_cleanly() {
    let dir = seeds();
    assert!(dir.is_dir(), "the seed examples belong beside the repository: {} not found", dir.display());
    let (snapshot, diagnostics) = load_dir(&dir);
    // Only the TLS Secret's placeholders (the users' own key material) are refused.
    let described: Vec<(String, String)> = diagnostics.iter().map(|d| (d.object.clone(), d.field.clone())).collect();
    assert_eq!(described.len(), 1, "{diagnostics:?}");
    assert!(described[0].0.starts_with("Secret default/testsecret-tls (") && described[0].1 == "data.tls.crt");
    assert!(diagnostics[0].message.starts_with("not valid base64"), "{}", diagnostics[0].message);
    assert_eq!(snapshot.ingresses.len(), 7, "every seed Ingress loads");
    let services = names(&snapshot).0;
    for expected in
        ["default/nginx-service", "default/my-service-nodeport", "default/nginx2-service", "default/my-database"]
    {
        assert!(services.iter().any(|s| s == expected), "{expected} missing from {services:?}");
    }
}

async fn next(rx: &mut watch::Receiver<Arc<Snapshot>>) -> Arc<Snapshot> {
    tokio::time::timeout(Duration::from_secs(1), rx.changed()).await.expect("no new snapshot within 1 s").unwrap();
    rx.borrow_and_update().clone()
}

#[tokio::test]
async fn the_watcher_sees_writes_renames_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = watch::channel(Arc::new(Snapshot::default()));
    let task = tokio::spawn(watch_dir(dir.path().to_path_buf(), tx));

    fs::write(dir.path().join("a.yaml"), service("a")).unwrap();
    let mut snapshot = next(&mut rx).await;
    if snapshot.services.is_empty() {
        // The initial load may have run before the file was written.
        snapshot = next(&mut rx).await;
    }
    assert_eq!(names(&snapshot).0, ["default/a"]);

    fs::write(dir.path().join("a.yaml"), format!("{}---\n{}", service("a"), service("b"))).unwrap();
    assert_eq!(names(&*next(&mut rx).await).0, ["default/a", "default/b"]);

    let staged = dir.path().join(".a.yaml.tmp");
    fs::write(&staged, service("c")).unwrap();
    fs::rename(&staged, dir.path().join("a.yaml")).unwrap();
    assert_eq!(names(&*next(&mut rx).await).0, ["default/c"]);

    fs::remove_file(dir.path().join("a.yaml")).unwrap();
    assert_eq!(names(&*next(&mut rx).await).0, Vec::<String>::new());

    drop(rx);
    tokio::time::timeout(Duration::from_secs(3), task).await.expect("watcher did not stop").unwrap().unwrap();
}

#[tokio::test]
async fn the_watcher_needs_an_existing_directory() {
    let (tx, _rx) = watch::channel(Arc::new(Snapshot::default()));
    let err = watch_dir(PathBuf::from("/nonexistent/manifests"), tx).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/manifests"));
}

#[test]
fn nodes_are_cluster_scoped_and_keep_their_labels() {
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node1\n  namespace: ignored\n  labels:\n    topology.kubernetes.io/zone: zone-a\n";
    let dir = dir_with(&[("nodes.yaml", &format!("{node}---\n{node}"))]);
    let (snapshot, diagnostics) = load_dir(dir.path());
    assert_eq!(snapshot.nodes.len(), 1);
    let meta = &snapshot.nodes.iter().next().unwrap().metadata;
    assert_eq!((meta.name.as_deref(), meta.namespace.as_deref()), (Some("node1"), None));
    assert_eq!(meta.labels.as_ref().unwrap()["topology.kubernetes.io/zone"], "zone-a");
    let shown: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].starts_with("Node /node1 ("), "{}", shown[0]);
    assert!(shown[0].contains("duplicate"), "{}", shown[0]);
}

#[test]
fn namespaces_keep_only_their_name_and_labels() {
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {team: web}\n  annotations: {a: b}\nspec: {finalizers: [kubernetes]}\nstatus: {phase: Active}\n";
    let dir = dir_with(&[("ns.yaml", namespace)]);
    let (snapshot, diagnostics) = load_dir(dir.path());
    assert_eq!(diagnostics, []);
    let kept = snapshot.namespaces.get("", "shop").expect("the Namespace, cluster-scoped");
    let expected: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "shop", "labels": {"team": "web"}}})).unwrap();
    assert_eq!(**kept, expected);
    // Only a change of its labels is a change.
    fs::write(dir.path().join("ns.yaml"), namespace.replace("{a: b}", "{a: c}")).unwrap();
    assert!(load_dir(dir.path()).0.same_as(&snapshot));
    fs::write(dir.path().join("ns.yaml"), namespace.replace("team: web", "team: db")).unwrap();
    let changes = load_dir(dir.path()).0.changes_since(&snapshot);
    assert_eq!(changes.namespaces.into_iter().collect::<Vec<_>>(), [(String::new(), "shop".to_string())]);
}

/// Refreshes `cache` from `dir`, re-reading the files `named`, and checks
/// that its snapshot and diagnostics are those of a fresh full load.
fn refresh(cache: &mut DirCache, dir: &Path, named: &[&str]) -> (Refresh, Snapshot, Vec<Diagnostic>) {
    let named: BTreeSet<OsString> = named.iter().map(OsString::from).collect();
    let refresh = cache.refresh(dir, &named).unwrap();
    let (snapshot, diagnostics) = cache.snapshot();
    let fresh = load_dir(dir);
    assert_eq!((&snapshot, &diagnostics), (&fresh.0, &fresh.1), "the cache and a full load differ");
    (refresh, snapshot, diagnostics)
}

fn parsed(n: usize) -> Refresh {
    Refresh { parsed: n, changed: n > 0 }
}

fn port(service: &k8s_openapi::api::core::v1::Service) -> i32 {
    service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port
}

#[test]
fn a_change_to_one_file_of_10000_reparses_that_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10_000 {
        fs::write(dir.path().join(format!("s{i:05}.yaml")), service(&format!("s{i:05}"))).unwrap();
    }
    let mut cache = DirCache::default();
    assert_eq!(cache.refresh(dir.path(), &BTreeSet::new()).unwrap(), parsed(10_000));
    let (before, _) = cache.snapshot();
    assert_eq!(before.services.len(), 10_000);
    assert_eq!(cache.refresh(dir.path(), &BTreeSet::new()).unwrap(), parsed(0), "nothing changed");

    fs::write(dir.path().join("s04321.yaml"), service("s04321").replace("port: 80", "port: 8080")).unwrap();
    let (refreshed, after, diagnostics) = refresh(&mut cache, dir.path(), &[]);
    assert_eq!(refreshed, parsed(1));
    assert_eq!(diagnostics, []);
    for (old, new) in before.services.iter().zip(&after.services) {
        let edited = new.metadata.name.as_deref() == Some("s04321");
        assert_eq!(Arc::ptr_eq(old, new), !edited, "{:?}", new.metadata.name);
    }
    assert_eq!(port(after.service("default", "s04321").unwrap()), 8080);
    let changes = after.changes_since(&before);
    assert_eq!(changes.services, [("default".to_string(), "s04321".to_string())].into());
}

#[test]
fn a_removed_file_takes_its_objects_along() {
    let dir = dir_with(&[("a.yaml", &format!("{}---\n{SLICE_A}", service("a"))), ("b.yaml", &service("b"))]);
    let mut cache = DirCache::default();
    let (_, before, _) = refresh(&mut cache, dir.path(), &[]);
    assert_eq!(names(&before), (vec!["default/a".into(), "default/b".into()], vec!["web/a-1".into()]));
    fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let (refreshed, after, _) = refresh(&mut cache, dir.path(), &[]);
    assert_eq!(refreshed, Refresh { parsed: 0, changed: true });
    assert_eq!(names(&after), (vec!["default/b".into()], vec![]));
    assert!(Arc::ptr_eq(before.services.iter().nth(1).unwrap(), after.services.iter().next().unwrap()));
}

#[test]
fn a_rewritten_file_keeps_its_unchanged_objects() {
    let dir = dir_with(&[("a.yaml", &format!("{}---\n{}", service("x"), service("y")))]);
    let mut cache = DirCache::default();
    let (_, before, _) = refresh(&mut cache, dir.path(), &[]);
    fs::write(dir.path().join("a.yaml"), format!("{}---\n{}", service("x"), service("y").replace("80", "8080")))
        .unwrap();
    let (refreshed, after, _) = refresh(&mut cache, dir.path(), &[]);
    assert_eq!(refreshed, parsed(1));
    assert!(
        Arc::ptr_eq(before.services.iter().next().unwrap(), after.services.iter().next().unwrap()),
        "x did not change"
    );
    assert!(!Arc::ptr_eq(before.services.iter().nth(1).unwrap(), after.services.iter().nth(1).unwrap()));
    assert_eq!(port(after.services.iter().nth(1).unwrap()), 8080);
    // Read again unchanged (an event named it): nothing changed.
    let (refreshed, again, _) = refresh(&mut cache, dir.path(), &["a.yaml"]);
    assert_eq!(refreshed, Refresh { parsed: 1, changed: false });
    assert!(again.services.iter().zip(&after.services).all(|(a, b)| Arc::ptr_eq(a, b)));
}

#[test]
fn a_file_named_by_an_event_is_read_again_though_its_stamp_did_not_change() {
    let dir = dir_with(&[("a.yaml", &service("a"))]);
    let path = dir.path().join("a.yaml");
    let mut cache = DirCache::default();
    refresh(&mut cache, dir.path(), &[]);
    // A rewrite of the same size within one tick of the file system's clock.
    let modified = fs::metadata(&path).unwrap().modified().unwrap();
    fs::write(&path, service("a").replace("80", "81")).unwrap();
    fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
    assert_eq!(cache.refresh(dir.path(), &BTreeSet::new()).unwrap(), parsed(0), "the stamp looks unchanged");
    let named: BTreeSet<OsString> = [OsString::from("a.yaml")].into();
    assert_eq!(cache.refresh(dir.path(), &named).unwrap(), parsed(1));
    assert_eq!(port(cache.snapshot().0.services.iter().next().unwrap()), 81);
}

#[test]
fn duplicates_are_resolved_in_file_name_order_across_changes() {
    let dir = dir_with(&[("a.yaml", &service("x")), ("b.yaml", &service("x").replace("80", "81"))]);
    let mut cache = DirCache::default();
    let (_, snapshot, diagnostics) = refresh(&mut cache, dir.path(), &[]);
    assert_eq!((port(snapshot.services.iter().next().unwrap()), diagnostics.len()), (80, 1));
    assert!(diagnostics[0].to_string().contains("b.yaml document 1"), "{}", diagnostics[0]);

    // A file sorting first now defines it first.
    fs::write(dir.path().join("0.yaml"), service("x").replace("80", "90")).unwrap();
    let (refreshed, snapshot, diagnostics) = refresh(&mut cache, dir.path(), &[]);
    assert_eq!((refreshed, port(snapshot.services.iter().next().unwrap()), diagnostics.len()), (parsed(1), 90, 2));
    assert!(diagnostics.iter().all(|d| d.message.contains("0.yaml document 1")), "{diagnostics:?}");

    // Without the first two, the last one is no duplicate any more, though it is not read again.
    fs::remove_file(dir.path().join("0.yaml")).unwrap();
    fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let (refreshed, snapshot, diagnostics) = refresh(&mut cache, dir.path(), &[]);
    assert_eq!((refreshed, port(snapshot.services.iter().next().unwrap())), (Refresh { parsed: 0, changed: true }, 81));
    assert_eq!(diagnostics, []);
}

#[test]
fn bad_files_stay_diagnosed_until_fixed() {
    let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: eighty\n";
    let dir = dir_with(&[("a.yaml", &format!("a: [\n---\n{bad}---\n{}", service("x"))), ("b.yaml", &service("y"))]);
    fs::write(dir.path().join("c.yaml"), b"\xff not UTF-8").unwrap();
    let mut cache = DirCache::default();
    let (_, before, diagnostics) = refresh(&mut cache, dir.path(), &[]);
    let shown: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[0].contains("a.yaml document 1, line 1: invalid YAML"), "{}", shown[0]);
    assert!(shown[1].starts_with("Service default/bad (") && shown[1].contains("spec.ports[0].port"), "{}", shown[1]);
    assert!(shown[2].contains("c.yaml") && shown[2].contains("cannot read"), "{}", shown[2]);
    assert_eq!(names(&before).0, ["default/x", "default/y"]);

    // An unreadable file is tried again each time; the others are not.
    let (refreshed, _, again) = refresh(&mut cache, dir.path(), &[]);
    assert_eq!((refreshed, again), (Refresh { parsed: 1, changed: false }, diagnostics));

    fs::write(dir.path().join("a.yaml"), format!("{}---\n{}", service("x"), service("z"))).unwrap();
    fs::remove_file(dir.path().join("c.yaml")).unwrap();
    let (refreshed, after, diagnostics) = refresh(&mut cache, dir.path(), &[]);
    assert_eq!((refreshed, diagnostics), (parsed(1), vec![]));
    assert_eq!(names(&after).0, ["default/x", "default/y", "default/z"]);
    assert!(
        Arc::ptr_eq(before.services.iter().next().unwrap(), after.services.iter().next().unwrap()),
        "x did not change"
    );
    assert!(
        Arc::ptr_eq(before.services.iter().nth(1).unwrap(), after.services.iter().nth(1).unwrap()),
        "b.yaml was not read again"
    );
}

#[test]
fn an_unlistable_directory_leaves_the_cache_as_it_was() {
    let dir = dir_with(&[("a.yaml", &service("a"))]);
    let mut cache = DirCache::default();
    refresh(&mut cache, dir.path(), &[]);
    assert!(cache.refresh(&dir.path().join("missing"), &BTreeSet::new()).is_err());
    assert_eq!(names(&cache.snapshot().0).0, ["default/a"]);
    assert_eq!(cache.refresh(dir.path(), &BTreeSet::new()).unwrap(), parsed(0));
}

/// The users' seed `metallb-pool.yaml` as it is: its pool and
/// advertisement reach the snapshot (the spec kept as written, parsed by
/// the MetalLB module), and a change to the pool is a change of its kind.
#[test]
fn metallb_pools_and_advertisements_are_read() {
    let seed = fs::read_to_string(seeds().join("metallb-pool.yaml")).expect("the seed metallb-pool.yaml");
    let dir = dir_with(&[("metallb.yaml", &seed)]);
    let (snapshot, diagnostics) = load_dir(dir.path());
    assert_eq!(diagnostics, []);
    let pool = snapshot.ip_address_pools.get("metallb-system", "first-pool").expect("the pool");
    let (parsed, _) = crate::metallb::resources::parse_pool(&pool.to_value()).unwrap();
    assert_eq!(parsed.pool.ranges, vec!["192.168.1.150-192.168.1.200".parse().unwrap()]);
    let ad = snapshot.l2_advertisements.get("metallb-system", "first-pool-advertisement").expect("the advertisement");
    let ad = crate::metallb::resources::parse_advertisement(&ad.to_value()).unwrap();
    assert!(ad.covers(&parsed));

    fs::write(dir.path().join("metallb.yaml"), seed.replace("192.168.1.200", "192.168.1.210")).unwrap();
    let (changed, _) = load_dir(dir.path());
    let changes = changed.changes_since(&snapshot);
    let pools: Vec<_> = changes.ip_address_pools.iter().cloned().collect();
    assert_eq!(pools, [("metallb-system".to_string(), "first-pool".to_string())]);
    assert!(changes.l2_advertisements.is_empty() && changes.services.is_empty());
}
