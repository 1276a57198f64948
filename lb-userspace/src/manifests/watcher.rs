//! Watching a directory of manifests and publishing a new [`Snapshot`]
//! whenever what it holds changes.
//!
//! A burst of events (an editor's write-rename-chmod, a tool writing
//! several files) is loaded once: the watcher waits until [`QUIET`] passed
//! without an event, or [`CAP`] after the burst's first event when events
//! keep coming (see [`settle_deadline`]). So a change shows in about 15 ms,
//! and a steady stream of writes still publishes every 150 ms.
//!
//! The files are remembered between loads ([`DirCache`]): a load re-reads
//! only the files whose stamp changed and those the events named.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::cache::DirCache;
use crate::diagnostics::Diagnostic;
use crate::snapshot::Snapshot;

/// How long the directory must stay quiet after an event before it is
/// loaded: the rest of a burst comes within this.
const QUIET: Duration = Duration::from_millis(15);

/// The longest wait after a burst's first event, however long it goes on.
const CAP: Duration = Duration::from_millis(150);

/// A re-scan interval, in case the file system lost an event (network
/// file systems, a directory that was replaced, queue overflows). A re-scan
/// only reads the files' metadata; a file is parsed again only when its
/// metadata changed (with 10,000 Services, parsing them all every 2 s would
/// keep a core busy).
const RESCAN: Duration = Duration::from_secs(2);

/// When to load after a burst whose first event came at `first` and latest
/// at `last`: once [`QUIET`] passed since the latest, and at the latest
/// [`CAP`] after the first.
fn settle_deadline(first: Instant, last: Instant) -> Instant {
    (last + QUIET).min(first + CAP)
}

/// The names of the files that events named since the last load: they are
/// read again even when their stamp looks unchanged.
type Named = Arc<Mutex<BTreeSet<OsString>>>;

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
    let named = Named::default();
    let events_named = named.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| match event {
        Ok(event) if is_change(&event) => {
            let names = event.paths.iter().filter_map(|path| path.file_name());
            events_named.lock().unwrap_or_else(|e| e.into_inner()).extend(names.map(OsString::from));
            let _ = changed_tx.try_send(());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("watching manifests: {e}"),
    })
    .context("cannot watch the manifests directory")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch manifests directory {}", dir.display()))?;

    let mut reloader = Reloader {
        watched: directory_identity(&dir),
        dir,
        named,
        cache: DirCache::default(),
        diagnostics: None,
        readable: true,
    };
    if let Some(snapshot) = reloader.reload(true).await {
        tx.send_replace(Arc::new(snapshot));
    }
    let mut rescan = tokio::time::interval_at(Instant::now() + RESCAN, RESCAN);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            Some(()) = changed.recv() => settle(&mut changed).await,
            _ = rescan.tick() => reloader.rewatch(&mut watcher),
        }
        if let Some(snapshot) = reloader.reload(false).await {
            publish(&tx, snapshot);
        }
    }
}

/// Waits for the end of a burst of events, the first of which just came
/// (see [`settle_deadline`]).
async fn settle(changed: &mut mpsc::Receiver<()>) {
    let first = Instant::now();
    let mut last = first;
    while let Ok(Some(())) = tokio::time::timeout_at(settle_deadline(first, last), changed.recv()).await {
        last = Instant::now();
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
        let changed = !current.same_as(&snapshot);
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

/// Reloads the directory through its cache, remembering the last
/// diagnostics so that a reload that finds nothing new does not log them
/// again.
struct Reloader {
    dir: PathBuf,
    /// The files events named since the last reload.
    named: Named,
    cache: DirCache,
    diagnostics: Option<Vec<Diagnostic>>,
    /// Whether the directory was readable at the last load.
    readable: bool,
    /// The identity of the directory being watched.
    watched: Option<(u64, u64)>,
}

impl Reloader {
    /// The directory's snapshot when its files changed since the last
    /// reload (or always, with `always`), or `None`: nothing changed, or
    /// the directory cannot be read (logged).
    async fn reload(&mut self, always: bool) -> Option<Snapshot> {
        // Taken before reading: an event during the load names its file for the next one.
        let named = std::mem::take(&mut *self.named.lock().unwrap_or_else(|e| e.into_inner()));
        let dir = self.dir.clone();
        let mut cache = std::mem::take(&mut self.cache);
        let loaded = tokio::task::spawn_blocking(move || {
            let refreshed = cache.refresh(&dir, &named);
            let snapshot = match &refreshed {
                Ok(refresh) if refresh.changed || always => Some(cache.snapshot()),
                _ => None,
            };
            (cache, refreshed.map(|refresh| (refresh, snapshot)))
        })
        .await;
        match loaded {
            Ok((cache, Ok((refresh, snapshot)))) => {
                self.cache = cache;
                self.readable = true;
                tracing::debug!(files_parsed = refresh.parsed, changed = refresh.changed, "manifests reloaded");
                let (snapshot, diagnostics) = snapshot?;
                self.log(diagnostics);
                Some(snapshot)
            }
            Ok((cache, Err(e))) => {
                self.cache = cache;
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
                // The cache is lost: the next reload reads every file again.
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

/// (device, inode) of a directory, to notice that it was replaced.
fn directory_identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod settle_tests {
    use super::*;

    #[test]
    fn a_burst_is_loaded_once_quiet_or_at_the_cap() {
        let first = Instant::now();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(settle_deadline(first, first), first + QUIET, "a lone event waits QUIET");
        assert_eq!(settle_deadline(first, first + ms(5)), first + ms(5) + QUIET, "each event restarts the wait");
        assert_eq!(settle_deadline(first, first + ms(140)), first + CAP, "but not past the cap");
        assert_eq!(settle_deadline(first, first + ms(500)), first + CAP);
        assert!(QUIET < ms(20) && CAP <= ms(150));
    }
}
