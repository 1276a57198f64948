//! The manifests source: a directory of Kubernetes YAML or JSON files,
//! loaded into a [`Snapshot`](crate::snapshot::Snapshot) and watched for
//! changes.
//!
//! Every `*.yaml`, `*.yml` and `*.json` file of the directory is read (not
//! subdirectories; hidden and editor temporary files are ignored), each
//! possibly holding several documents separated by `---`, and `kind: List`
//! documents are expanded. Services, EndpointSlices, Ingresses,
//! IngressClasses, Secrets, Nodes, Namespaces (their name and labels) and
//! MetalLB's IPAddressPools and L2Advertisements are kept; other kinds are
//! skipped. A
//! document that does not parse is reported as a
//! [`Diagnostic`](crate::diagnostics::Diagnostic) naming the file, the
//! document and the field, and skipped: the rest still loads. An object
//! defined twice (same kind, namespace and name) keeps its first
//! definition, in file name order; the others are diagnosed.
//!
//! Watching: a file system event in the directory (inotify) wakes the
//! watcher, which lets the burst end — 15 ms without a new event, but no
//! longer than 150 ms after its first event, so a steady stream of writes
//! still publishes — then reloads. A reload lists the directory and
//! compares each file's stamp (inode, size, modification time) with the one
//! it had when last read: only new and changed files, and the files the
//! events named, are read and parsed again; the others keep their objects,
//! the very same `Arc`s, so the new snapshot shares them with the last one
//! and consumers diff by pointer. Every 2 s the stamps are compared even
//! without an event, in case one was lost. A new snapshot is published only
//! when it differs from the last.

mod cache;
mod documents;
mod loader;
mod watcher;

#[cfg(test)]
mod tests;

pub use loader::{load_dir, load_text, manifest_files};
pub use watcher::watch_dir;
