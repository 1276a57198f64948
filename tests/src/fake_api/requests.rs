//! The request log.

use std::collections::BTreeSet;

use serde_json::Value;

/// One request the fake server received (test-side writes are not requests).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string (`""` when none).
    pub query: String,
    /// The RBAC verb: `get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection` (`""` for an unknown path or method).
    pub verb: String,
    /// API group, `""` for the core group (and for non-resource paths).
    pub group: String,
    /// Plural resource name, `""` for non-resource paths (`/version`, `/apis`).
    pub resource: String,
    /// `status` for `…/{name}/status`.
    pub subresource: Option<String>,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Object name from the URL.
    pub name: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body, when it was JSON (or YAML for server-side apply).
    pub body: Option<Value>,
    /// The response's HTTP status code (200 for a watch whose stream started;
    /// 0 when the connection was closed without an answer, see `set_refusing`).
    pub status: u16,
}

impl RecordedRequest {
    /// `services` or `services/status`.
    pub fn resource_path(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }

    /// One line: `PATCH /api/v1/namespaces/a/services/x/status?… (patch services/status) -> 200`.
    pub fn summary(&self) -> String {
        let query = if self.query.is_empty() { String::new() } else { format!("?{}", self.query) };
        format!(
            "{} {}{query} ({} {:?} {}) -> {}",
            self.method,
            self.path,
            self.verb,
            self.group,
            self.resource_path(),
            self.status
        )
    }
}

/// `(group, resource[/subresource], verb)` of every resource request.
pub(crate) fn rbac_calls(requests: &[RecordedRequest]) -> BTreeSet<(String, String, String)> {
    requests
        .iter()
        .filter(|r| !r.resource.is_empty() && !r.verb.is_empty())
        .map(|r| (r.group.clone(), r.resource_path(), r.verb.clone()))
        .collect()
}

/// The log as indented lines, for error messages.
pub(crate) fn format_log(requests: &[RecordedRequest]) -> String {
    if requests.is_empty() {
        return "  (no requests)".to_string();
    }
    requests.iter().map(|r| format!("  {}", r.summary())).collect::<Vec<_>>().join("\n")
}
