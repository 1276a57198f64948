//! The test-side API: writing and reading objects directly (not logged as
//! requests, but emitting watch events), the request log, and bounded waits.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_json::Value;

use super::FakeApi;
use super::patch;
use super::requests::{self, RecordedRequest};
use super::resources::{self, ResourceType};
use super::store::{Store, UpdateMode, meta_str};

/// The type of `api_version` `kind`, known to the fake API (served or not:
/// a custom resource needs its CRDs installed to be written).
fn resource(api_version: &str, kind: &str) -> Result<&'static ResourceType> {
    resources::by_kind(api_version, kind).ok_or_else(|| anyhow!("the fake API does not serve {api_version} {kind}"))
}

/// The namespace an object of `res` lives in: `ns`, or `default` for a
/// namespaced type without one.
fn namespace<'a>(res: &ResourceType, ns: Option<&'a str>) -> Option<&'a str> {
    if res.namespaced { Some(ns.filter(|n| !n.is_empty()).unwrap_or("default")) } else { None }
}

impl FakeApi {
    /// Creates or replaces `obj` (by its `apiVersion`, `kind`,
    /// `metadata.namespace` — `default` when absent — and `metadata.name`),
    /// as a user or another controller would: bumps the resourceVersion and
    /// emits ADDED or MODIFIED (nothing when unchanged). Replaces `status` too
    /// and ignores any `resourceVersion` in `obj`. Returns the stored object.
    pub fn apply(&self, obj: Value) -> Result<Value> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).context("object without apiVersion")?;
        let kind = obj.get("kind").and_then(Value::as_str).context("object without kind")?;
        let res = resource(api_version, kind)?;
        let kind = kind.to_string();
        let name = meta_str(&obj, "name").filter(|n| !n.is_empty()).context("object without metadata.name")?;
        let name = name.to_string();
        let ns = namespace(res, meta_str(&obj, "namespace")).map(str::to_string);
        let ns = ns.as_deref();
        let mut store = self.shared().lock();
        if !res.served(&store.installed_crds) {
            bail!("applying {kind} {name}: the CRDs of {} are not installed (FakeApi::install_crds)", res.group);
        }
        let stored = if store.get(res, ns, &name).is_some() {
            store.update(res, ns, &name, obj, UpdateMode::Whole)
        } else {
            store.create(res, ns, obj)
        };
        stored.map_err(|e| anyhow!("applying {kind} {name}: {e}"))
    }

    /// [`Self::apply`] for a typed object (`k8s_openapi` types serialize
    /// their `apiVersion` and `kind`).
    pub fn apply_typed<K: k8s_openapi::Resource + Serialize>(&self, obj: &K) -> Result<Value> {
        let mut v = serde_json::to_value(obj)?;
        v["apiVersion"] = Value::String(K::API_VERSION.to_string());
        v["kind"] = Value::String(K::KIND.to_string());
        self.apply(v)
    }

    /// [`Self::apply`] for every document of a multi-document YAML stream
    /// (empty documents skipped; a `kind: List` applies its `items`).
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for (i, doc) in serde_norway::Deserializer::from_str(yaml).enumerate() {
            let v = Value::deserialize(doc).with_context(|| format!("YAML document {i}"))?;
            if v.is_null() {
                continue;
            }
            match v.get("items").and_then(Value::as_array) {
                Some(items) if v.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) => {
                    for item in items {
                        out.push(self.apply(item.clone())?);
                    }
                }
                _ => out.push(self.apply(v)?),
            }
        }
        Ok(out)
    }

    /// Installs the CRDs of the custom resources of `group` (the fake API
    /// knows MetalLB's, `metallb.io`): from now on discovery lists them and
    /// their paths are served.
    pub fn install_crds(&self, group: &str) -> Result<()> {
        if !resources::RESOURCES.iter().any(|r| r.custom && r.group == group) {
            bail!("the fake API knows no custom resources of group {group:?}");
        }
        let mut store = self.shared().lock();
        store.installed_crds.insert(group.to_string());
        store.notify();
        Ok(())
    }

    /// Removes the CRDs of `group`, as `kubectl delete crd` does: their
    /// objects are deleted (DELETED on the watches), the watches on them
    /// end, and discovery and their paths forget them.
    pub fn remove_crds(&self, group: &str) {
        let mut store = self.shared().lock();
        for res in resources::RESOURCES.iter().filter(|r| r.custom && r.group == group) {
            let keys: Vec<(String, String)> = store.objects[resources::index_of(res)].keys().cloned().collect();
            for (ns, name) in keys {
                let ns = if res.namespaced { Some(ns.as_str()) } else { None };
                let _ = store.delete(res, ns, &name, None);
            }
            store.end_watches_of(res);
        }
        store.installed_crds.remove(group);
        store.notify();
    }

    /// Merge-patches (RFC 7386) a stored object, status included, as a
    /// test-side write. Fails when the object is absent.
    pub fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        merge: &Value,
    ) -> Result<Value> {
        let res = resource(api_version, kind)?;
        let ns = namespace(res, ns);
        let mut store = self.shared().lock();
        let mut obj = store.get(res, ns, name).cloned().with_context(|| format!("{kind} {ns:?}/{name} not found"))?;
        patch::merge(&mut obj, merge);
        store.update(res, ns, name, obj, UpdateMode::Whole).map_err(|e| anyhow!("patching {kind} {name}: {e}"))
    }

    /// Deletes an object (emitting DELETED); whether it existed.
    pub fn delete(&self, api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> bool {
        let Ok(res) = resource(api_version, kind) else { return false };
        self.shared().lock().delete(res, namespace(res, ns), name, None).is_ok()
    }

    /// A stored object.
    pub fn get(&self, api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let res = resource(api_version, kind).ok()?;
        self.shared().lock().get(res, namespace(res, ns), name).cloned()
    }

    /// A stored object as a typed value (`None` when absent).
    pub fn get_as<K: k8s_openapi::Resource + DeserializeOwned>(
        &self,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<K>> {
        self.get(K::API_VERSION, K::KIND, ns, name)
            .map(|v| serde_json::from_value(v).with_context(|| format!("decoding {} {name}", K::KIND)))
            .transpose()
    }

    /// Every stored object of a type, in (namespace, name) order.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let Ok(res) = resource(api_version, kind) else { return Vec::new() };
        self.shared().lock().objects[resources::index_of(res)].values().cloned().collect()
    }

    /// Every request received so far (since the last [`Self::clear_requests`]).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared().lock().requests.clone()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared().lock().requests.clear();
    }

    /// `(group, resource[/subresource], verb)` of every resource request in
    /// the log: the RBAC rules the client needed.
    pub fn rbac_calls(&self) -> BTreeSet<(String, String, String)> {
        requests::rbac_calls(&self.shared().lock().requests)
    }

    /// Waits until `cond` holds over a value read from the state by `read`
    /// (under the lock; `cond` runs without it, so it may call this API).
    /// Re-checked after every write and request; bounded by `timeout`.
    async fn wait_state<T, U>(
        &self,
        timeout: Duration,
        read: impl Fn(&Store) -> T,
        cond: impl Fn(T) -> Option<U>,
    ) -> Option<U> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.shared().changed.clone();
        loop {
            changed.borrow_and_update();
            let seen = read(&self.shared().lock());
            if let Some(u) = cond(seen) {
                return Some(u);
            }
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                let seen = read(&self.shared().lock());
                return cond(seen);
            }
        }
    }

    fn timeout_error(&self, what: &str, timeout: Duration) -> anyhow::Error {
        let store = self.shared().lock();
        anyhow!(
            "fake API: timed out after {timeout:?} waiting for {what}; {} request(s) received:\n{}",
            store.requests.len(),
            requests::format_log(&store.requests)
        )
    }

    /// The first logged request (already logged or arriving within
    /// `timeout`) that `pred` accepts; on timeout an error listing the log.
    /// `pred` runs without the state locked (it may call this API).
    pub async fn wait_for_request(
        &self,
        pred: impl Fn(&RecordedRequest) -> bool,
        timeout: Duration,
    ) -> Result<RecordedRequest> {
        let found =
            self.wait_state(timeout, |s| s.requests.clone(), |requests| requests.into_iter().find(|r| pred(r))).await;
        found.ok_or_else(|| self.timeout_error("a matching request", timeout))
    }

    /// Waits until `pred(self)` holds (checked after every write and request,
    /// never while the state is locked).
    pub async fn wait_until(&self, pred: impl Fn(&FakeApi) -> bool, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.shared().changed.clone();
        loop {
            changed.borrow_and_update();
            if pred(self) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                if pred(self) {
                    return Ok(());
                }
                bail!(self.timeout_error("a condition (wait_until)", timeout));
            }
        }
    }

    /// Waits until the object exists and `pred` accepts it; returns it.
    pub async fn wait_for_object(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value> {
        let res = resource(api_version, kind)?;
        let ns = namespace(res, ns);
        let found = self.wait_state(timeout, |s| s.get(res, ns, name).cloned(), |o| o.filter(|o| pred(o))).await;
        found.ok_or_else(|| {
            let current = self.get(api_version, kind, ns, name);
            let current = current.map_or("absent".to_string(), |o| o.to_string());
            self.timeout_error(&format!("{kind} {ns:?}/{name} to satisfy the predicate (now: {current})"), timeout)
        })
    }
}
