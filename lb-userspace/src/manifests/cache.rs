//! The manifests of a directory, remembered per file, so that a change to
//! one file of 10,000 reads and parses that file alone.
//!
//! Each file is remembered with its stamp (inode, size, modification time)
//! and what it held: its objects, already shared (`Arc`), and its
//! diagnostics, in document order. A [`DirCache::refresh`] lists the
//! directory, reads again only the files whose stamp changed, the new ones
//! and the ones named by the caller (the paths of file system events: a
//! rewrite of the same size within one tick of the file system's clock
//! keeps its stamp), and forgets removed files. [`DirCache::snapshot`] then
//! builds the snapshot from the remembered objects, so every object of an
//! unchanged file keeps its allocation and consumers diff by pointer.
//!
//! Duplicates are resolved across files when the snapshot is built, in
//! file name order, as if the directory were read whole: the first
//! definition wins, the others are diagnosed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::loader::{manifest_entries, parse_file};
use crate::diagnostics::Diagnostic;
use crate::metallb::objects::{IpAddressPoolObject, L2AdvertisementObject};
use crate::snapshot::Snapshot;

/// What a re-scan compares to know whether a file changed: its inode, size
/// and modification time (of the file a link points to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    inode: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Stamp {
    pub(super) fn of(metadata: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self { inode: metadata.ino(), size: metadata.len(), mtime: (metadata.mtime(), metadata.mtime_nsec()) }
    }
}

/// One object of the kinds a snapshot holds.
#[derive(Clone, Debug)]
pub(super) enum Object {
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Secret(Arc<Secret>),
    Node(Arc<Node>),
    Namespace(Arc<Namespace>),
    IpAddressPool(Arc<IpAddressPoolObject>),
    L2Advertisement(Arc<L2AdvertisementObject>),
}

impl Object {
    /// `old` when it holds the same object, else this one: an object a
    /// rewritten file still holds unchanged keeps its allocation.
    fn or_same(self, old: &Object) -> Object {
        use Object::*;
        match (self, old) {
            (Service(new), Service(old)) if new == *old => Service(old.clone()),
            (EndpointSlice(new), EndpointSlice(old)) if new == *old => EndpointSlice(old.clone()),
            (Ingress(new), Ingress(old)) if new == *old => Ingress(old.clone()),
            (IngressClass(new), IngressClass(old)) if new == *old => IngressClass(old.clone()),
            (Secret(new), Secret(old)) if new == *old => Secret(old.clone()),
            (Node(new), Node(old)) if new == *old => Node(old.clone()),
            (Namespace(new), Namespace(old)) if new == *old => Namespace(old.clone()),
            (IpAddressPool(new), IpAddressPool(old)) if new == *old => IpAddressPool(old.clone()),
            (L2Advertisement(new), L2Advertisement(old)) if new == *old => L2Advertisement(old.clone()),
            (new, _) => new,
        }
    }

    fn ptr_eq(&self, other: &Object) -> bool {
        use Object::*;
        match (self, other) {
            (Service(a), Service(b)) => Arc::ptr_eq(a, b),
            (EndpointSlice(a), EndpointSlice(b)) => Arc::ptr_eq(a, b),
            (Ingress(a), Ingress(b)) => Arc::ptr_eq(a, b),
            (IngressClass(a), IngressClass(b)) => Arc::ptr_eq(a, b),
            (Secret(a), Secret(b)) => Arc::ptr_eq(a, b),
            (Node(a), Node(b)) => Arc::ptr_eq(a, b),
            (Namespace(a), Namespace(b)) => Arc::ptr_eq(a, b),
            (IpAddressPool(a), IpAddressPool(b)) => Arc::ptr_eq(a, b),
            (L2Advertisement(a), L2Advertisement(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn add_to(&self, snapshot: &mut Snapshot) {
        match self {
            Object::Service(o) => snapshot.services.insert(o.clone()),
            Object::EndpointSlice(o) => snapshot.endpoint_slices.insert(o.clone()),
            Object::Ingress(o) => snapshot.ingresses.insert(o.clone()),
            Object::IngressClass(o) => snapshot.ingress_classes.insert(o.clone()),
            Object::Secret(o) => snapshot.secrets.insert(o.clone()),
            Object::Node(o) => snapshot.nodes.insert(o.clone()),
            Object::Namespace(o) => snapshot.namespaces.insert(o.clone()),
            Object::IpAddressPool(o) => snapshot.ip_address_pools.insert(o.clone()),
            Object::L2Advertisement(o) => snapshot.l2_advertisements.insert(o.clone()),
        }
    }
}

/// An object found in a file, with what a duplicate diagnostic says of it.
#[derive(Clone, Debug)]
pub(super) struct Found {
    pub object: Object,
    /// `Kind namespace/name`: what makes two objects duplicates.
    pub reference: String,
    /// Where it is defined, as the diagnostic of a later duplicate names it
    /// (`a.yaml document 2, line 3 items[1]`).
    pub location: String,
    /// The document it is in, as its own diagnostics name it
    /// (`a.yaml document 2, line 3`).
    pub document: String,
    /// The field path of its name (`items[1].metadata.name` in a List).
    pub name_field: String,
}

impl Found {
    fn names(&self) -> [&str; 4] {
        [&self.reference, &self.location, &self.document, &self.name_field]
    }

    /// The diagnostic of this object when `first` defined it already.
    fn duplicate_of(&self, first: &str) -> Diagnostic {
        let object = format!("{} ({})", self.reference, self.document);
        Diagnostic::new(object, &self.name_field, format!("duplicate of the one in {first}; this one is ignored"))
    }
}

/// What one document of a file gave, in order.
#[derive(Clone, Debug)]
pub(super) enum Entry {
    Object(Found),
    Problem(Diagnostic),
}

impl Entry {
    fn same_as(&self, other: &Entry) -> bool {
        match (self, other) {
            (Entry::Object(a), Entry::Object(b)) => a.object.ptr_eq(&b.object) && a.names() == b.names(),
            (Entry::Problem(a), Entry::Problem(b)) => a == b,
            _ => false,
        }
    }
}

/// A file as last read.
struct CachedFile {
    /// `None` when it could not be read: it is read again at every refresh.
    stamp: Option<Stamp>,
    entries: Vec<Entry>,
}

/// What a [`DirCache::refresh`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Files read and parsed.
    pub parsed: usize,
    /// Whether what the directory holds changed (files added, removed, or
    /// read again with a different result).
    pub changed: bool,
}

/// The directory's files as last read, by name (the order in which
/// duplicates are resolved).
#[derive(Default)]
pub struct DirCache {
    files: BTreeMap<OsString, CachedFile>,
}

impl DirCache {
    /// Brings the cache up to date with `dir`: reads the files that are
    /// new, whose stamp changed, that could not be read last time, or whose
    /// name is in `reread`; forgets the files that are gone. Fails, leaving
    /// the cache as it was, when the directory cannot be listed.
    pub fn refresh(&mut self, dir: &Path, reread: &BTreeSet<OsString>) -> io::Result<Refresh> {
        let listed = manifest_entries(dir)?;
        let mut refresh = Refresh::default();
        let mut files = BTreeMap::new();
        for (path, metadata) in listed {
            let Some(name) = path.file_name().map(OsString::from) else { continue };
            let stamp = Stamp::of(&metadata);
            let old = self.files.remove(&name);
            match old {
                Some(old) if old.stamp == Some(stamp) && !reread.contains(&name) => {
                    files.insert(name, old);
                }
                old => {
                    refresh.parsed += 1;
                    let new = read(&path, stamp, old.as_ref());
                    refresh.changed |= old.is_none_or(|old| !same_entries(&old.entries, &new.entries));
                    files.insert(name, new);
                }
            }
        }
        // What is left was removed.
        refresh.changed |= !self.files.is_empty();
        self.files = files;
        Ok(refresh)
    }

    /// A cache holding one file `name` with the contents `text`, as if it
    /// had been read from a directory (for checks of untrusted input).
    pub fn with_text(name: &str, text: &str) -> Self {
        let entries = super::loader::parse_file(Path::new(name), text);
        Self { files: BTreeMap::from([(OsString::from(name), CachedFile { stamp: None, entries })]) }
    }

    /// The snapshot of the remembered objects, and the diagnostics (in file
    /// order, then document order): the first definition of an object wins.
    pub fn snapshot(&self) -> (Snapshot, Vec<Diagnostic>) {
        let mut snapshot = Snapshot::default();
        let mut diagnostics = Vec::new();
        // Object reference → where it was first defined.
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for entry in self.files.values().flat_map(|file| &file.entries) {
            match entry {
                Entry::Problem(diagnostic) => diagnostics.push(diagnostic.clone()),
                Entry::Object(found) => match seen.get(found.reference.as_str()) {
                    Some(first) => diagnostics.push(found.duplicate_of(first)),
                    None => {
                        seen.insert(&found.reference, &found.location);
                        found.object.add_to(&mut snapshot);
                    }
                },
            }
        }
        (snapshot, diagnostics)
    }
}

/// Reads and parses `path`; objects equal to ones `old` held keep `old`'s.
fn read(path: &Path, stamp: Stamp, old: Option<&CachedFile>) -> CachedFile {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            let problem = Diagnostic::new(path.display().to_string(), "", format!("cannot read: {e}"));
            return CachedFile { stamp: None, entries: vec![Entry::Problem(problem)] };
        }
    };
    let mut entries = parse_file(path, &text);
    if let Some(old) = old {
        let before: HashMap<&str, &Object> = old
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Object(found) => Some((found.reference.as_str(), &found.object)),
                Entry::Problem(_) => None,
            })
            .collect();
        for entry in &mut entries {
            if let Entry::Object(found) = entry
                && let Some(old) = before.get(found.reference.as_str())
            {
                found.object = found.object.clone().or_same(old);
            }
        }
    }
    CachedFile { stamp: Some(stamp), entries }
}

fn same_entries(a: &[Entry], b: &[Entry]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.same_as(b))
}
