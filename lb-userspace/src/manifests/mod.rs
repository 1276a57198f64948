//! The manifests source: a directory of Kubernetes YAML or JSON files,
//! loaded into a [`Snapshot`](crate::snapshot::Snapshot) and watched for
//! changes.
//!
//! Every `*.yaml`, `*.yml` and `*.json` file of the directory is read (not
//! subdirectories; hidden and editor temporary files are ignored), each
//! possibly holding several documents separated by `---`, and `kind: List`
//! documents are expanded. `v1` Services and `discovery.k8s.io/v1`
//! EndpointSlices are kept; other kinds are skipped. A document that does
//! not parse is reported as a [`Diagnostic`](crate::diagnostics::Diagnostic)
//! naming the file, the document and the field, and skipped: the rest still
//! loads.

mod documents;
mod loader;
mod watcher;

#[cfg(test)]
mod tests;

pub use loader::{load_dir, manifest_files};
pub use watcher::watch_dir;
