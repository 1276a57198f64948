//! Problems found in the user's objects: what a source or compiler skipped,
//! and why. Every diagnostic names the object (`Service default/web`, or a
//! file and document) and the field, so the user can find and fix it.

use std::fmt;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The object: `Service default/web`, `services.yaml document 2`,
    /// `Service default/web (services.yaml document 2)`.
    pub object: String,
    /// The field path inside the object (`spec.ports[0].targetPort`), or
    /// empty when the whole object is concerned.
    pub field: String,
    pub message: String,
    /// The Kubernetes object concerned, when there is one: where an Event
    /// about the problem goes.
    pub subject: Option<Subject>,
}

/// A Kubernetes object a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Diagnostic {
    pub fn new(object: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { object: object.into(), field: field.into(), message: message.into(), subject: None }
    }

    /// A diagnostic about a Kubernetes object.
    pub fn for_object(
        kind: &str,
        namespace: &str,
        name: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let subject = Subject { kind: kind.into(), namespace: namespace.into(), name: name.into() };
        Self { subject: Some(subject), ..Self::new(object_ref(kind, namespace, name), field, message) }
    }

    /// The field and the message, without the object (an Event's note: the
    /// Event names the object itself).
    pub fn note(&self) -> String {
        if self.field.is_empty() { self.message.clone() } else { format!("{}: {}", self.field, self.message) }
    }
}

/// `Kind namespace/name`, the way diagnostics name Kubernetes objects.
pub fn object_ref(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind} {namespace}/{name}")
}

/// `file.yaml document 3`, the way diagnostics name a document of a
/// manifest file (documents are counted from 1).
pub fn document_ref(file: &Path, document: usize) -> String {
    format!("{} document {document}", file.display())
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.object)?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_object_field_and_message() {
        let d = Diagnostic::for_object(
            "Service",
            "default",
            "my-svc",
            "spec.ports[0].targetPort",
            "named port \"http\" not found in any EndpointSlice",
        );
        assert_eq!(
            d.to_string(),
            "Service default/my-svc: spec.ports[0].targetPort: named port \"http\" not found in any EndpointSlice"
        );
    }

    #[test]
    fn omits_an_empty_field() {
        let d = Diagnostic::new(document_ref(Path::new("dir/a.yaml"), 2), "", "not YAML");
        assert_eq!(d.to_string(), "dir/a.yaml document 2: not YAML");
    }
}
