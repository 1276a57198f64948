//! What a bed created and must remove: its namespaces, its cgroups, its
//! agents' bpffs pin directories, its processes and its log directory. Cleanup is idempotent and can run from another thread (a
//! signal handler thread in the demo).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::netns;
use crate::process::{Process, stop_all};

#[derive(Default)]
struct State {
    namespaces: Vec<String>,
    /// cgroup v2 directories, parents before children.
    cgroups: Vec<PathBuf>,
    /// Directories on bpffs its agents pin under (removing them detaches
    /// what the agents left attached).
    pin_roots: Vec<PathBuf>,
    processes: Vec<Arc<Process>>,
    cleaned: bool,
}

pub(crate) struct Resources {
    state: Mutex<State>,
    /// Held for the whole cleanup, so a second caller (Drop racing a signal
    /// handler thread) returns only once everything is gone.
    cleaning: Mutex<()>,
    log_dir: PathBuf,
}

/// Lets another thread remove everything a bed created (e.g. on SIGINT),
/// without owning the bed. Cleaning twice is harmless.
#[derive(Clone)]
pub struct CleanupHandle(pub(crate) Arc<Resources>);

impl CleanupHandle {
    /// Stops the bed's processes and deletes its namespaces now.
    pub fn cleanup(&self) {
        self.0.cleanup(false);
    }
}

impl Resources {
    pub(crate) fn new(log_dir: PathBuf) -> Self {
        Self { state: Mutex::new(State::default()), cleaning: Mutex::new(()), log_dir }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn log_dir(&self) -> &PathBuf {
        &self.log_dir
    }

    /// Creates namespace `ns` and records it for deletion.
    pub(crate) fn add_namespace(&self, ns: &str) -> Result<()> {
        netns::ip(&["netns", "add", ns])?;
        self.state().namespaces.push(ns.to_string());
        Ok(())
    }

    /// Creates the cgroup directory `path` and records it for removal.
    pub(crate) fn add_cgroup(&self, path: &Path) -> Result<()> {
        std::fs::create_dir(path).with_context(|| format!("creating cgroup {}", path.display()))?;
        self.state().cgroups.push(path.to_path_buf());
        Ok(())
    }

    /// Records `path` (which agents create) for removal.
    pub(crate) fn add_pin_root(&self, path: &Path) {
        self.state().pin_roots.push(path.to_path_buf());
    }

    pub(crate) fn add_process(&self, p: Arc<Process>) {
        self.state().processes.push(p);
    }

    pub(crate) fn process_count(&self) -> usize {
        self.state().processes.len()
    }

    pub(crate) fn processes(&self) -> Vec<Arc<Process>> {
        self.state().processes.clone()
    }

    /// Stops every process (SIGTERM, grace, SIGKILL), deletes every namespace,
    /// and removes the log directory unless `keep_logs`.
    pub(crate) fn cleanup(&self, keep_logs: bool) {
        let _cleaning = self.cleaning.lock().unwrap_or_else(|p| p.into_inner());
        let (procs, namespaces, cgroups, pin_roots) = {
            let mut st = self.state();
            if st.cleaned {
                return;
            }
            st.cleaned = true;
            (
                std::mem::take(&mut st.processes),
                std::mem::take(&mut st.namespaces),
                std::mem::take(&mut st.cgroups),
                std::mem::take(&mut st.pin_roots),
            )
        };
        stop_all(&procs);
        for root in &pin_roots {
            if let Err(e) = remove_pins(root) {
                eprintln!("[testbed] warning: could not remove pins {}: {e:#}", root.display());
            }
        }
        // Children first; a cgroup empties as soon as its processes are reaped.
        for cgroup in cgroups.iter().rev() {
            if let Err(e) = remove_cgroup(cgroup) {
                eprintln!("[testbed] warning: could not remove cgroup {}: {e:#}", cgroup.display());
            }
        }
        // Pods first, the LAN last: deleting a namespace destroys its veth
        // ends and their peers.
        for ns in namespaces.iter().rev() {
            if let Err(e) = netns::ip(&["netns", "del", ns]) {
                eprintln!("[testbed] warning: could not delete namespace {ns}: {e:#}");
            }
        }
        if !keep_logs && std::env::var_os("LB_TESTBED_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// Deletes namespaces left by crashed runs of this crate's naming scheme
/// (`{prefix}{pid}-{n}-...`) whose owning process is gone. Namespaces of live
/// processes (parallel tests) and names of any other form are never touched,
/// and processes are never killed: any still inside a stale namespace are
/// reported. Returns the names deleted.
pub fn cleanup_stale(prefix: &str) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    let entries = match std::fs::read_dir("/run/netns") {
        Ok(e) => e,
        Err(_) => return Ok(deleted),
    };
    let own_pid = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(prefix, &name) else {
            continue;
        };
        if pid == own_pid || PathBuf::from(format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(out) = netns::ip(&["netns", "pids", &name]) {
            let pids = String::from_utf8_lossy(&out.stdout).trim().replace('\n', " ");
            if !pids.is_empty() {
                eprintln!(
                    "[testbed] warning: stale namespace {name} still has processes {pids}; \
                     deleting its name only"
                );
            }
        }
        match netns::ip(&["netns", "del", &name]) {
            Ok(_) => deleted.push(name),
            Err(e) => eprintln!("[testbed] warning: could not delete stale {name}: {e:#}"),
        }
    }
    if !deleted.is_empty() {
        eprintln!("[testbed] removed {} stale namespaces of crashed runs", deleted.len());
    }
    Ok(deleted)
}

/// Removes a pin directory tree (unpinning detaches the programs whose
/// links were pinned there).
fn remove_pins(root: &Path) -> Result<()> {
    match std::fs::remove_dir_all(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the pin directories (`/sys/fs/bpf/{prefix}{pid}-{n}`) of
/// crashed runs whose owning process is gone.
pub fn cleanup_stale_pins(prefix: &str, bpffs: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for dir in stale_dirs(prefix, bpffs) {
        match remove_pins(&dir) {
            Ok(()) => removed.push(dir),
            Err(e) => eprintln!("[testbed] warning: stale pins {} stay: {e:#}", dir.display()),
        }
    }
    removed
}

/// The directories `{prefix}{pid}-{n}` in `parent` whose owning process is
/// gone.
fn stale_dirs(prefix: &str, parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            owner_pid(prefix, &format!("{name}-dir"))
                .is_some_and(|pid| pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists())
        })
        .map(|entry| entry.path())
        .collect()
}

/// Removes an empty cgroup directory, retrying while the processes that
/// just left it are still being torn down (`EBUSY`).
fn remove_cgroup(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(nix::libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Removes the bed cgroups (`<cgroup2 mount>/{prefix}{pid}-{n}` and their
/// node directories) of crashed runs whose owning process is gone. A
/// cgroup that still holds processes stays (and is reported).
pub fn cleanup_stale_cgroups(prefix: &str, mount: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for dir in stale_dirs(prefix, mount) {
        let children: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()).collect())
            .unwrap_or_default();
        for cgroup in children.iter().chain([&dir]) {
            match remove_cgroup(cgroup) {
                Ok(()) => removed.push(cgroup.clone()),
                Err(e) => eprintln!("[testbed] warning: stale cgroup {} stays: {e:#}", cgroup.display()),
            }
        }
    }
    removed
}

/// The pid in `{prefix}{pid}-{n}-{role}`, if `name` follows the scheme.
fn owner_pid(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let mut parts = rest.splitn(3, '-');
    let pid: u32 = parts.next()?.parse().ok()?;
    let _seq: u32 = parts.next()?.parse().ok()?;
    parts.next().filter(|role| !role.is_empty())?;
    Some(pid)
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn owner_pid_only_for_our_scheme() {
        assert_eq!(owner_pid("lbt", "lbt1234-0-lan"), Some(1234));
        assert_eq!(owner_pid("lbt", "lbt1234-12-pod-nginx-x"), Some(1234));
        assert_eq!(owner_pid("lbt", "lbt1234-lan"), None);
        assert_eq!(owner_pid("lbt", "lbtx-0-lan"), None);
        assert_eq!(owner_pid("lbt", "cni-1234-0-lan"), None);
        assert_eq!(owner_pid("lbt", "lbt1234-0-"), None);
    }
}
