//! Watching a directory of manifests and publishing a new [`Snapshot`]
//! whenever what it holds changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::loader::try_load_dir;
use crate::diagnostics::Diagnostic;
use crate::snapshot::Snapshot;

/// How long to wait after a change for the rest of a burst (an editor's
/// write-rename-chmod, `kubectl`-like tools writing several files).
const DEBOUNCE: Duration = Duration::from_millis(150);

/// A re-scan interval, in case the file system lost an event (network
/// file systems, a directory that was replaced, queue overflows). A re-scan
/// only reads the files' metadata; the files are parsed again only when
/// that changed (with 10,000 Services, parsing them all every 2 s would
/// keep a core busy).
const RESCAN: Duration = Duration::from_secs(2);

/// Loads `dir`, sends the snapshot, then reloads it whenever a file in it
/// changes (or every [`RESCAN`] interval, as a safety net) and sends the new
/// snapshot when it differs from the last one. Diagnostics are logged as
/// warnings each time they change. Returns when every receiver is gone.
///
/// Fails if `dir` is not a directory at start. If it becomes unreadable
/// later, the last snapshot stays in force until it is readable again.
pub async fn watch_dir(dir: PathBuf, tx: watch::Sender<Arc<Snapshot>>) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("manifests directory {} does not exist or is not a directory", dir.display());
    }
    let (changed_tx, mut changed) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| match event {
        Ok(event) if is_change(&event) => {
            let _ = changed_tx.try_send(());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("watching manifests: {e}"),
    })
    .context("cannot watch the manifests directory")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch manifests directory {}", dir.display()))?;

    let mut reloader =
        Reloader { watched: directory_identity(&dir), dir, diagnostics: None, readable: true, fingerprint: None };
    if let Some(snapshot) = reloader.reload().await {
        tx.send_replace(Arc::new(snapshot));
    }
    let mut rescan = tokio::time::interval_at(tokio::time::Instant::now() + RESCAN, RESCAN);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            Some(()) = changed.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while changed.try_recv().is_ok() {}
            }
            _ = rescan.tick() => {
                reloader.rewatch(&mut watcher);
                if !reloader.files_changed() {
                    continue;
                }
            }
        }
        if let Some(snapshot) = reloader.reload().await {
            publish(&tx, snapshot);
        }
    }
}

/// Whether a file system event may have changed what the directory holds
/// (opening and reading files, which loading does itself, does not).
fn is_change(event: &Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn publish(tx: &watch::Sender<Arc<Snapshot>>, snapshot: Snapshot) {
    tx.send_if_modified(|current| {
        let changed = **current != snapshot;
        if changed {
            tracing::info!(
                services = snapshot.services.len(),
                endpoint_slices = snapshot.endpoint_slices.len(),
                "manifests changed"
            );
            *current = Arc::new(snapshot);
        }
        changed
    });
}

/// Reloads the directory, remembering the last diagnostics so that a
/// re-scan that finds nothing new does not log them again.
struct Reloader {
    dir: PathBuf,
    diagnostics: Option<Vec<Diagnostic>>,
    /// Whether the directory was readable at the last load.
    readable: bool,
    /// The identity of the directory being watched.
    watched: Option<(u64, u64)>,
    /// The files' metadata at the last load.
    fingerprint: Option<Vec<FileStamp>>,
}

/// What a re-scan compares: a file's name, inode, size and modification time.
type FileStamp = (PathBuf, u64, u64, i64, i64);

impl Reloader {
    /// Whether the files' metadata differs from the last load's (or cannot
    /// be read: then the load reports why).
    fn files_changed(&self) -> bool {
        let now = fingerprint(&self.dir);
        now.is_none() || now != self.fingerprint
    }

    /// The directory's snapshot, or `None` (logged) when it cannot be read.
    async fn reload(&mut self) -> Option<Snapshot> {
        // Taken before reading, so a write during the load shows at the next re-scan.
        self.fingerprint = fingerprint(&self.dir);
        let dir = self.dir.clone();
        let loaded = tokio::task::spawn_blocking(move || try_load_dir(&dir)).await;
        match loaded {
            Ok(Ok((snapshot, diagnostics))) => {
                self.log(diagnostics);
                self.readable = true;
                Some(snapshot)
            }
            Ok(Err(e)) => {
                if self.readable {
                    tracing::warn!(
                        "cannot read manifests directory {}: {e}; keeping the last objects",
                        self.dir.display()
                    );
                }
                self.readable = false;
                None
            }
            Err(e) => {
                tracing::error!("loading manifests panicked: {e}");
                None
            }
        }
    }

    /// Watches the directory again when it was removed or replaced by
    /// another one (the old watch died with the old directory).
    fn rewatch(&mut self, watcher: &mut RecommendedWatcher) {
        let current = directory_identity(&self.dir);
        if current.is_none() || current == self.watched {
            return;
        }
        let _ = watcher.unwatch(&self.dir);
        match watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
            Ok(()) => self.watched = current,
            Err(e) => tracing::warn!("cannot watch manifests directory {}: {e}", self.dir.display()),
        }
    }

    fn log(&mut self, diagnostics: Vec<Diagnostic>) {
        if self.diagnostics.as_ref() == Some(&diagnostics) {
            return;
        }
        for diagnostic in &diagnostics {
            tracing::warn!("{diagnostic}");
        }
        self.diagnostics = Some(diagnostics);
    }
}

/// The metadata of the directory's manifest files, sorted by name; `None`
/// when the directory cannot be listed.
fn fingerprint(dir: &Path) -> Option<Vec<FileStamp>> {
    use std::os::unix::fs::MetadataExt;
    let files = super::loader::manifest_files(dir).ok()?;
    let mut stamps: Vec<FileStamp> = files
        .into_iter()
        .filter_map(|path| {
            let m = std::fs::metadata(&path).ok()?;
            Some((path, m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
        })
        .collect();
    stamps.sort();
    Some(stamps)
}

/// (device, inode) of a directory, to notice that it was replaced.
fn directory_identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod fingerprint_tests {
    use super::fingerprint;

    #[test]
    fn a_rescan_sees_only_changed_manifest_metadata() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: Service\n").unwrap();
        let first = fingerprint(dir.path()).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(fingerprint(dir.path()), Some(first.clone()), "nothing changed");
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        assert_eq!(fingerprint(dir.path()), Some(first.clone()), "other files do not count");
        std::fs::write(dir.path().join("a.yaml"), "kind: Service\n# longer\n").unwrap();
        assert_ne!(fingerprint(dir.path()), Some(first.clone()), "a rewrite counts");
        std::fs::write(dir.path().join("b.yml"), "").unwrap();
        assert_eq!(fingerprint(dir.path()).unwrap().len(), 2, "a new file counts");
        assert_eq!(fingerprint(&dir.path().join("missing")), None);
    }
}
