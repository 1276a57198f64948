use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

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
    assert_eq!(snapshot.services[0].spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port, 80);
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
    let meta = &snapshot.nodes[0].metadata;
    assert_eq!((meta.name.as_deref(), meta.namespace.as_deref()), (Some("node1"), None));
    assert_eq!(meta.labels.as_ref().unwrap()["topology.kubernetes.io/zone"], "zone-a");
    let shown: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].starts_with("Node /node1 ("), "{}", shown[0]);
    assert!(shown[0].contains("duplicate"), "{}", shown[0]);
}
