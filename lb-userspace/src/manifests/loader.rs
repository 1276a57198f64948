//! Loading a directory of manifests into a [`Snapshot`]: listing its
//! manifest files and parsing one file into its objects and diagnostics
//! (the [`DirCache`] remembers them per file and resolves duplicates).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::cache::{DirCache, Entry, Found, Object};
use super::documents::{Document, parse_documents};
use crate::diagnostics::{Diagnostic, document_ref, object_ref};
use crate::snapshot::{Snapshot, keep_name_and_labels};

/// Loads every manifest file of `dir` (see [`manifest_files`]). Problems
/// (unreadable files, documents that do not parse, objects without a name,
/// duplicates) are returned as diagnostics; everything else still loads.
pub fn load_dir(dir: &Path) -> (Snapshot, Vec<Diagnostic>) {
    let mut cache = DirCache::default();
    match cache.refresh(dir, &Default::default()) {
        Ok(_) => cache.snapshot(),
        Err(e) => (
            Snapshot::default(),
            vec![Diagnostic::new(dir.display().to_string(), "", format!("cannot read directory: {e}"))],
        ),
    }
}

/// The objects and problems of one manifest file's `text`, as [`load_dir`]
/// would find them in a directory holding only that file.
pub fn load_text(name: &str, text: &str) -> (Snapshot, Vec<Diagnostic>) {
    DirCache::with_text(name, text).snapshot()
}

/// The manifest files of `dir`, sorted by name: `*.yaml`, `*.yml` and
/// `*.json` regular files (or links to them), not in subdirectories. Hidden
/// files (`.name`, which also covers Kubernetes' `..data` volume links) and
/// editor temporary files (`name~`, `#name#`, `.name.swp`) are ignored.
pub fn manifest_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(manifest_entries(dir)?.into_iter().map(|(path, _)| path).collect())
}

/// [`manifest_files`] with each file's metadata (of the file a link points to).
pub(super) fn manifest_entries(dir: &Path) -> io::Result<Vec<(PathBuf, fs::Metadata)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if !is_manifest_name(name) {
            continue;
        }
        if let Some(metadata) = fs::metadata(&path).ok().filter(|m| m.is_file()) {
            files.push((path, metadata));
        }
    }
    // By name: the same order as by path, as they share their directory, but cheaper.
    files.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    Ok(files)
}

fn is_manifest_name(name: &str) -> bool {
    let hidden_or_temporary = name.starts_with('.') || name.starts_with('#') || name.ends_with('~');
    let extension = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase());
    !hidden_or_temporary && matches!(extension.as_deref(), Some("yaml" | "yml" | "json"))
}

/// Where a document came from, as diagnostics name it.
struct Origin<'a> {
    file: &'a Path,
    document: &'a Document,
    /// Field path of the object inside the document (`items[2]` in a List).
    prefix: String,
}

impl Origin<'_> {
    /// `file.yaml document 2, line 14`.
    fn describe(&self) -> String {
        format!("{}, line {}", document_ref(self.file, self.document.index), self.document.line)
    }

    /// [`Self::describe`] plus the object's place in a List.
    fn location(&self) -> String {
        if self.prefix.is_empty() { self.describe() } else { format!("{} {}", self.describe(), self.prefix) }
    }

    fn field(&self, field: &str) -> String {
        match (self.prefix.is_empty(), field.is_empty()) {
            (true, _) => field.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{field}", self.prefix),
        }
    }

    fn diagnostic(&self, object: Option<String>, field: &str, message: impl Into<String>) -> Diagnostic {
        let object = match object {
            Some(object) => format!("{object} ({})", self.describe()),
            None => self.describe(),
        };
        Diagnostic::new(object, self.field(field), message)
    }
}

/// The objects and diagnostics of one file's text, in document order.
/// Duplicates are not looked for here: they may be in other files.
pub(super) fn parse_file(file: &Path, text: &str) -> Vec<Entry> {
    let mut parse = Parse::default();
    for document in parse_documents(file, text) {
        let origin = Origin { file, document: &document, prefix: String::new() };
        match &document.value {
            Ok(value) => parse.value(&origin, value.clone()),
            Err(message) => parse.problem(origin.diagnostic(None, "", message.clone())),
        }
    }
    parse.entries
}

#[derive(Default)]
struct Parse {
    entries: Vec<Entry>,
}

impl Parse {
    fn problem(&mut self, diagnostic: Diagnostic) {
        self.entries.push(Entry::Problem(diagnostic));
    }

    fn value(&mut self, origin: &Origin<'_>, value: Value) {
        if value.is_null() {
            return;
        }
        if !value.is_object() {
            let message = "not a Kubernetes object (a mapping with apiVersion, kind and metadata)";
            return self.problem(origin.diagnostic(None, "", message));
        }
        let text = |field| value.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
            let field = if text("apiVersion").is_none() { "apiVersion" } else { "kind" };
            return self.problem(origin.diagnostic(None, field, "missing; the document is skipped"));
        };
        match (api_version.as_str(), kind.as_str()) {
            (_, "List") => self.list(origin, value),
            ("v1", "Service") => self.object(origin, value, Object::Service),
            ("discovery.k8s.io/v1", "EndpointSlice") => self.object(origin, value, Object::EndpointSlice),
            ("networking.k8s.io/v1", "Ingress") => self.object(origin, value, Object::Ingress),
            ("networking.k8s.io/v1", "IngressClass") => self.object(origin, value, Object::IngressClass),
            ("v1", "Secret") => self.object(origin, value, Object::Secret),
            ("v1", "Node") => self.object(origin, value, Object::Node),
            ("v1", "Namespace") => self.object(origin, value, |namespace| {
                let mut namespace = Arc::unwrap_or_clone(namespace);
                keep_name_and_labels(&mut namespace);
                Object::Namespace(Arc::new(namespace))
            }),
            ("metallb.io/v1beta1", "IPAddressPool") => self.object(origin, value, Object::IpAddressPool),
            ("metallb.io/v1beta1", "L2Advertisement") => self.object(origin, value, Object::L2Advertisement),
            _ => tracing::debug!(object = origin.location(), "skipping {api_version} {kind}: not used by lb"),
        }
    }

    fn list(&mut self, origin: &Origin<'_>, mut value: Value) {
        let items = match value.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return self.problem(origin.diagnostic(Some("List".into()), "items", "not a list")),
        };
        for (i, item) in items.into_iter().enumerate() {
            let prefix = origin.field(&format!("items[{i}]"));
            self.value(&Origin { prefix, ..*origin }, item);
        }
    }

    fn object<K>(&mut self, origin: &Origin<'_>, value: Value, kind: fn(Arc<K>) -> Object)
    where
        K: DeserializeOwned + Metadata<Ty = ObjectMeta> + Resource<Scope: 'static>,
    {
        let described = described_object::<K>(&value);
        let mut object: K = match serde_path_to_error::deserialize(value) {
            Ok(object) => object,
            Err(e) => {
                let field = e.path().to_string();
                let field = if field == "." { "" } else { &field };
                let mut message = e.inner().to_string();
                if K::KIND == "Secret" && field.starts_with("data.") {
                    // Secret data is base64; the decoder's own words are terse.
                    message = format!("not valid base64 ({message}); the Secret is skipped");
                }
                return self.problem(origin.diagnostic(described, field, message));
            }
        };
        let Some(name) = object.metadata().name.clone().filter(|n| !n.is_empty()) else {
            let message = format!("a {} needs a name", K::KIND);
            return self.problem(origin.diagnostic(Some(K::KIND.into()), "metadata.name", message));
        };
        let meta = object.metadata_mut();
        if is_cluster_scoped::<K>() {
            meta.namespace = None;
        } else if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some("default".into());
        }
        let reference = object_ref(K::KIND, meta.namespace.as_deref().unwrap_or_default(), &name);
        self.entries.push(Entry::Object(Found {
            object: kind(Arc::new(object)),
            reference,
            location: origin.location(),
            document: origin.describe(),
            name_field: origin.field("metadata.name"),
        }));
    }
}

/// `Kind namespace/name` of an object that may not parse, when it has a name.
fn described_object<K: Resource<Scope: 'static>>(value: &Value) -> Option<String> {
    let text = |pointer| value.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty());
    let name = text("/metadata/name")?;
    let namespace = if is_cluster_scoped::<K>() { "" } else { text("/metadata/namespace").unwrap_or("default") };
    Some(object_ref(K::KIND, namespace, name))
}

/// Whether `K` has no namespace (IngressClass, Node): its objects' namespace is
/// cleared, and they are named `Kind /name`.
fn is_cluster_scoped<K: Resource<Scope: 'static>>() -> bool {
    std::any::TypeId::of::<K::Scope>() == std::any::TypeId::of::<k8s_openapi::ClusterResourceScope>()
}
