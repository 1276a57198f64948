//! The object store: objects by type, the resourceVersion counter, the event
//! history, and the write operations (which emit watch events).

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::list::Continuation;
use super::patch::{self, PatchKind};
use super::requests::RecordedRequest;
use super::resources::{InstalledGroups, RESOURCES, ResourceType, index_of};
use super::status::ApiError;
use super::watch::Watcher;

/// Objects of one type by (namespace or `""`, name).
pub(crate) type Objects = BTreeMap<(String, String), Value>;

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One write, kept for watches that resume from an older resourceVersion.
#[derive(Debug, Clone)]
pub(crate) struct HistEvent {
    pub rv: u64,
    pub res: usize,
    pub ty: EventType,
    /// The object after the write (for a delete: its last state, with the
    /// deletion's resourceVersion).
    pub object: Value,
    /// The object before the write (selector transitions need both).
    pub old: Option<Value>,
}

/// How an update treats `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateMode {
    /// A write to the object: `status` kept as stored when the type has a
    /// status subresource.
    Object,
    /// A write to `/status`: only `status` changes.
    Status,
    /// A test-side replace: everything but identity metadata changes.
    Whole,
}

/// All mutable state of the fake server.
pub(crate) struct Store {
    pub rv: u64,
    next_uid: u64,
    pub objects: Vec<Objects>,
    pub history: VecDeque<HistEvent>,
    /// Watches from a resourceVersion below this get 410 Expired.
    pub compacted: u64,
    pub watchers: Vec<Watcher>,
    pub continuations: BTreeMap<u64, Continuation>,
    pub next_continue: u64,
    pub unavailable: bool,
    pub refusing: bool,
    pub shut_down: bool,
    /// The groups of custom resources served (see [`super::resources`]).
    pub installed_crds: InstalledGroups,
    pub requests: Vec<RecordedRequest>,
    changed: tokio::sync::watch::Sender<u64>,
}

/// `metadata.<field>` as a string.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let Value::Object(o) = obj else { unreachable!("objects are JSON objects") };
    let m = o.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().expect("object")
}

/// The current time as RFC 3339 (`2024-05-01T12:00:00Z`).
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The object without `metadata` and `status`: what bumps `generation`.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Value::Object(m) = &mut o {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

impl Store {
    pub(crate) fn new(changed: tokio::sync::watch::Sender<u64>) -> Self {
        Store {
            rv: 1,
            next_uid: 1,
            objects: RESOURCES.iter().map(|_| Objects::new()).collect(),
            history: VecDeque::new(),
            compacted: 0,
            watchers: Vec::new(),
            continuations: BTreeMap::new(),
            next_continue: 1,
            unavailable: false,
            refusing: false,
            shut_down: false,
            installed_crds: InstalledGroups::new(),
            requests: Vec::new(),
            changed,
        }
    }

    /// Wakes every waiter (`wait_*`).
    pub(crate) fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The store key of an object of `res` in `ns`.
    pub(crate) fn key(res: &ResourceType, ns: Option<&str>, name: &str) -> (String, String) {
        let ns = if res.namespaced { ns.unwrap_or("") } else { "" };
        (ns.to_string(), name.to_string())
    }

    pub(crate) fn get(&self, res: &'static ResourceType, ns: Option<&str>, name: &str) -> Option<&Value> {
        self.objects[index_of(res)].get(&Self::key(res, ns, name))
    }

    /// Records a write: bumps the resourceVersion, stores (or removes) the
    /// object, appends to the history and sends it to the watches.
    fn commit(&mut self, res: &'static ResourceType, ty: EventType, mut obj: Value, old: Option<Value>) -> Value {
        self.rv += 1;
        metadata_mut(&mut obj).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        let ns = meta_str(&obj, "namespace").map(str::to_string);
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let idx = index_of(res);
        let key = Self::key(res, ns.as_deref(), &name);
        if ty == EventType::Deleted {
            self.objects[idx].remove(&key);
        } else {
            self.objects[idx].insert(key, obj.clone());
        }
        let ev = HistEvent { rv: self.rv, res: idx, ty, object: obj.clone(), old };
        self.dispatch(&ev);
        self.history.push_back(ev);
        self.notify();
        obj
    }

    /// Creates an object; `ns` is the namespace of the URL (or the default for
    /// test-side writes).
    pub(crate) fn create(
        &mut self,
        res: &'static ResourceType,
        ns: Option<&str>,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        for (field, expected) in [("apiVersion", res.api_version()), ("kind", res.kind.to_string())] {
            if let Some(got) = obj.get(field).and_then(Value::as_str).filter(|g| !g.is_empty() && *g != expected) {
                return Err(ApiError::bad_request(format!(
                    "the {field} in the data ({got}) does not match the expected {field} ({expected})"
                )));
            }
        }
        let name = match (meta_str(&obj, "name").filter(|n| !n.is_empty()), meta_str(&obj, "generateName")) {
            (Some(n), _) => n.to_string(),
            (None, Some(prefix)) => format!("{prefix}{:05x}", self.next_uid.wrapping_mul(2_654_435_761) & 0xfffff),
            (None, None) => {
                return Err(ApiError::invalid(
                    res,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        let ns = if res.namespaced {
            let url_ns =
                ns.filter(|n| !n.is_empty()).ok_or_else(|| ApiError::bad_request("a namespace is required"))?;
            if meta_str(&obj, "namespace").is_some_and(|b| !b.is_empty() && b != url_ns) {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            Some(url_ns)
        } else {
            None
        };
        if self.get(res, ns, &name).is_some() {
            return Err(ApiError::already_exists(res, &name));
        }
        obj["apiVersion"] = Value::String(res.api_version());
        obj["kind"] = Value::String(res.kind.to_string());
        let uid = format!("f00dcafe-0000-4000-8000-{:012x}", self.next_uid);
        self.next_uid += 1;
        let meta = metadata_mut(&mut obj);
        meta.insert("name".into(), Value::String(name));
        match ns {
            Some(ns) => meta.insert("namespace".into(), Value::String(ns.to_string())),
            None => meta.remove("namespace"),
        };
        meta.insert("uid".into(), Value::String(uid));
        if !meta.get("creationTimestamp").is_some_and(Value::is_string) {
            meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
        }
        if res.has_status {
            meta.insert("generation".into(), json!(1));
        }
        Ok(self.commit(res, EventType::Added, obj, None))
    }

    /// Replaces an object (`PUT`, or a test-side apply with [`UpdateMode::Whole`]).
    /// A `metadata.resourceVersion` in `body` that differs from the stored one
    /// is a 409 Conflict unless `mode` is `Whole`.
    pub(crate) fn update(
        &mut self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        body: Value,
        mode: UpdateMode,
    ) -> Result<Value, ApiError> {
        let old = self.get(res, ns, name).ok_or_else(|| ApiError::not_found(res, name))?.clone();
        if !body.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(b) = meta_str(&body, "name").filter(|b| !b.is_empty() && *b != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({b}) does not match the name on the URL ({name})"
            )));
        }
        if res.namespaced && meta_str(&body, "namespace").is_some_and(|b| !b.is_empty() && Some(b) != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let body_rv = meta_str(&body, "resourceVersion").filter(|v| !v.is_empty());
        if mode != UpdateMode::Whole && body_rv.is_some_and(|v| Some(v) != meta_str(&old, "resourceVersion")) {
            return Err(ApiError::conflict(res, name));
        }
        Ok(self.replace(res, old, body, mode))
    }

    /// Writes `body` over `old` (already checked): keeps identity metadata,
    /// applies the status rule of `mode`, bumps `generation` on spec changes,
    /// and does nothing (no new resourceVersion, no event) when unchanged.
    fn replace(&mut self, res: &'static ResourceType, old: Value, body: Value, mode: UpdateMode) -> Value {
        let mut new = match mode {
            UpdateMode::Status => {
                let mut n = old.clone();
                match body.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        n.as_object_mut().expect("object").remove("status");
                    }
                }
                n
            }
            UpdateMode::Object | UpdateMode::Whole => {
                let mut n = body;
                if mode == UpdateMode::Object && res.has_status {
                    let o = n.as_object_mut().expect("object");
                    match old.get("status") {
                        Some(s) => o.insert("status".into(), s.clone()),
                        None => o.remove("status"),
                    };
                }
                n
            }
        };
        new["apiVersion"] = Value::String(res.api_version());
        new["kind"] = Value::String(res.kind.to_string());
        let old_meta = old.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
        let meta = metadata_mut(&mut new);
        for field in ["name", "namespace", "uid", "creationTimestamp", "resourceVersion", "generation"] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        if new == old {
            return old;
        }
        if let Some(g) = old_meta.get("generation").and_then(Value::as_i64)
            && spec_part(&new) != spec_part(&old)
        {
            metadata_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        self.commit(res, EventType::Modified, new, Some(old))
    }

    /// Patches an object (or its status). Returns the object and whether the
    /// patch created it (server-side apply of an absent object).
    pub(crate) fn patch(
        &mut self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &Value,
        status_only: bool,
    ) -> Result<(Value, bool), ApiError> {
        let Some(old) = self.get(res, ns, name).cloned() else {
            if kind == PatchKind::Apply && !status_only {
                let mut obj = body.clone();
                if !obj.is_object() {
                    return Err(ApiError::bad_request("the apply body must be an object"));
                }
                metadata_mut(&mut obj).insert("name".into(), Value::String(name.to_string()));
                return Ok((self.create(res, ns, obj)?, true));
            }
            return Err(ApiError::not_found(res, name));
        };
        let mut patched = old.clone();
        match kind {
            PatchKind::Json => {
                patch::json_patch(&mut patched, body).map_err(|e| ApiError::invalid(res, name, e))?;
            }
            PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
                if !body.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                patch::merge(&mut patched, body);
            }
        }
        if !patched.is_object() {
            return Err(ApiError::invalid(res, name, "the patched document is not an object"));
        }
        if meta_str(&patched, "resourceVersion") != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(res, name));
        }
        let mode = if status_only { UpdateMode::Status } else { UpdateMode::Object };
        Ok((self.replace(res, old, patched, mode), false))
    }

    /// Deletes an object; `preconditions` is DeleteOptions' `preconditions`
    /// (`resourceVersion`, `uid`).
    pub(crate) fn delete(
        &mut self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        preconditions: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let old = self.get(res, ns, name).ok_or_else(|| ApiError::not_found(res, name))?.clone();
        for field in ["resourceVersion", "uid"] {
            let want = preconditions.and_then(|p| p.get(field)).and_then(Value::as_str);
            if want.is_some_and(|w| Some(w) != meta_str(&old, field)) {
                return Err(ApiError::conflict(res, name));
            }
        }
        Ok(self.commit(res, EventType::Deleted, old.clone(), Some(old)))
    }
}
