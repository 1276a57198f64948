//! `Status` objects: the API server's error bodies.

use serde_json::{Value, json};

use super::resources::ResourceType;

/// An error answered with a `Status` body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `BadRequest`, `Expired`, …
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` (`name`, `group`, `kind`), when about one object.
    pub details: Option<Value>,
}

fn details(res: &ResourceType, name: &str) -> Option<Value> {
    Some(json!({"name": name, "group": res.group, "kind": res.plural}))
}

impl ApiError {
    /// A plain error without details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 NotFound for an object.
    pub fn not_found(res: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", res.qualified());
        Self { details: details(res, name), ..Self::new(404, "NotFound", message) }
    }

    /// 409 AlreadyExists.
    pub fn already_exists(res: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", res.qualified());
        Self { details: details(res, name), ..Self::new(409, "AlreadyExists", message) }
    }

    /// 409 Conflict (a stale `resourceVersion` or failed precondition).
    pub fn conflict(res: &ResourceType, name: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your \
             changes to the latest version and try again",
            res.qualified()
        );
        Self { details: details(res, name), ..Self::new(409, "Conflict", message) }
    }

    /// 422 Invalid.
    pub fn invalid(res: &ResourceType, name: &str, message: impl Into<String>) -> Self {
        Self { details: details(res, name), ..Self::new(422, "Invalid", message) }
    }

    /// 410 Expired: a watch or continue token older than the compaction point.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}
