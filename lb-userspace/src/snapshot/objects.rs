//! One kind's objects of a snapshot, by (namespace, name).
//!
//! A persistent ordered map (`imbl`'s B-tree): copying it is one reference
//! count; a copy changed in one object shares every node but the path to
//! that object with the original; dropping an old copy frees only that
//! path; and [`Objects::changed_since`] skips the nodes two copies share.
//! So a source makes the next snapshot from the last in time that does not
//! grow with the cluster, and a consumer finds what changed the same way.

use std::collections::BTreeSet;
use std::sync::Arc;

use imbl::OrdMap;
use imbl::ordmap::DiffItem;
use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{ObjectKey, object_key};

/// Objects in canonical order (by namespace, then name); one per key.
#[derive(Debug)]
pub struct Objects<K>(OrdMap<ObjectKey, Shared<K>>);

/// An object as the map holds it: equal when it is the same allocation, or
/// else by content, so comparing two copies reads only what differs.
#[derive(Debug)]
struct Shared<K>(Arc<K>);

impl<K> Clone for Shared<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: PartialEq> PartialEq for Shared<K> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl<K> Clone for Objects<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K> Default for Objects<K> {
    fn default() -> Self {
        Self(OrdMap::new())
    }
}

impl<K: PartialEq> PartialEq for Objects<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0.ptr_eq(&other.0) || self.0 == other.0
    }
}

impl<K: Metadata<Ty = ObjectMeta>> Objects<K> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The objects in canonical order.
    pub fn iter(&self) -> Iter<'_, K> {
        Iter(self.0.values())
    }

    /// The object `namespace`/`name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Arc<K>> {
        self.0.get(&(namespace.to_string(), name.to_string())).map(|shared| &shared.0)
    }

    /// Adds `object`, or replaces the one with its namespace and name.
    pub fn insert(&mut self, object: Arc<K>) {
        let (namespace, name) = object_key(object.metadata());
        self.0.insert((namespace.to_string(), name.to_string()), Shared(object));
    }

    /// Removes the object `namespace`/`name`; returns it.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.0.remove(&(namespace.to_string(), name.to_string())).map(|shared| shared.0)
    }

    /// Keeps only the objects `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&Arc<K>) -> bool) {
        let dropped: Vec<ObjectKey> =
            self.0.iter().filter(|(_, shared)| !keep(&shared.0)).map(|(key, _)| key.clone()).collect();
        for key in dropped {
            self.0.remove(&key);
        }
    }
}

impl<K: Metadata<Ty = ObjectMeta> + PartialEq> Objects<K> {
    /// The keys of the objects added, removed or changed from `old` to
    /// `self`. Nodes the two share are skipped unread; an object rebuilt
    /// equal counts as unchanged.
    pub fn changed_since(&self, old: &Objects<K>) -> BTreeSet<ObjectKey> {
        old.0
            .diff(&self.0)
            .map(|item| match item {
                DiffItem::Add(key, _) | DiffItem::Remove(key, _) => key.clone(),
                DiffItem::Update { new: (key, _), .. } => key.clone(),
            })
            .collect()
    }
}

impl<K: Metadata<Ty = ObjectMeta>> FromIterator<Arc<K>> for Objects<K> {
    /// The objects; of two with the same namespace and name, the last.
    fn from_iter<I: IntoIterator<Item = Arc<K>>>(objects: I) -> Self {
        let mut out = Self::default();
        for object in objects {
            out.insert(object);
        }
        out
    }
}

impl<K: Metadata<Ty = ObjectMeta>> FromIterator<K> for Objects<K> {
    fn from_iter<I: IntoIterator<Item = K>>(objects: I) -> Self {
        objects.into_iter().map(Arc::new).collect()
    }
}

impl<K: Metadata<Ty = ObjectMeta>> Extend<Arc<K>> for Objects<K> {
    /// Adds the objects; each replaces the one with its namespace and name.
    fn extend<I: IntoIterator<Item = Arc<K>>>(&mut self, objects: I) {
        for object in objects {
            self.insert(object);
        }
    }
}

impl<K: Metadata<Ty = ObjectMeta>> From<Vec<Arc<K>>> for Objects<K> {
    fn from(objects: Vec<Arc<K>>) -> Self {
        objects.into_iter().collect()
    }
}

impl<K: Metadata<Ty = ObjectMeta>> From<Vec<K>> for Objects<K> {
    fn from(objects: Vec<K>) -> Self {
        objects.into_iter().collect()
    }
}

impl<'a, K: Metadata<Ty = ObjectMeta>> IntoIterator for &'a Objects<K> {
    type Item = &'a Arc<K>;
    type IntoIter = Iter<'a, K>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The objects of an [`Objects`], in canonical order.
pub struct Iter<'a, K>(imbl::ordmap::Values<'a, ObjectKey, Shared<K>, imbl::shared_ptr::DefaultSharedPtr>);

impl<'a, K> Iterator for Iter<'a, K> {
    type Item = &'a Arc<K>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|shared| &shared.0)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K> DoubleEndedIterator for Iter<'_, K> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|shared| &shared.0)
    }
}
