//! The network namespaces of the processes in a cgroup v2 tree.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::NetNs;

/// Network namespaces of the processes in `cgroup_root` and every cgroup
/// below it (cgroup v2 `cgroup.procs` files, recursively), deduplicated by
/// (dev, inode) of `/proc/PID/ns/net`, each found through its lowest PID.
/// Processes that exit meanwhile, and cgroups removed meanwhile, are
/// skipped; `cgroup_root` itself must be readable.
pub fn namespaces_in_cgroup(cgroup_root: &Path) -> Result<Vec<NetNs>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for pid in pids_in_tree(cgroup_root)? {
        match NetNs::of_process(pid) {
            Ok(ns) => {
                if seen.insert(ns.id()) {
                    out.push(ns);
                }
            }
            Err(e) if exited(&e) => tracing::trace!(pid, "process exited before its network namespace was opened"),
            Err(e) => return Err(e).with_context(|| format!("opening /proc/{pid}/ns/net")),
        }
    }
    Ok(out)
}

/// The PIDs in the `cgroup.procs` of `root` and of every cgroup below it.
fn pids_in_tree(root: &Path) -> Result<BTreeSet<u32>> {
    let mut pids = BTreeSet::new();
    let mut stack = read_cgroup(root, &mut pids).with_context(|| format!("reading cgroup {}", root.display()))?;
    while let Some(dir) = stack.pop() {
        match read_cgroup(&dir, &mut pids) {
            Ok(children) => stack.extend(children),
            Err(e) if removed(&e) => tracing::trace!(cgroup = %dir.display(), "cgroup removed while reading it"),
            Err(e) => return Err(e).with_context(|| format!("reading cgroup {}", dir.display())),
        }
    }
    Ok(pids)
}

/// Adds the PIDs of cgroup `dir` to `pids`; returns its child cgroups.
fn read_cgroup(dir: &Path, pids: &mut BTreeSet<u32>) -> io::Result<Vec<PathBuf>> {
    pids.extend(parse_procs(&std::fs::read_to_string(dir.join("cgroup.procs"))?)?);
    let mut children = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // file_type does not follow symlinks (cgroupfs has none anyway).
        if entry.file_type()?.is_dir() {
            children.push(entry.path());
        }
    }
    Ok(children)
}

/// A `cgroup.procs` file: one PID a line.
fn parse_procs(text: &str) -> io::Result<Vec<u32>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            line.parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad PID {line:?} in cgroup.procs")))
        })
        .collect()
}

/// The process is gone: `/proc/PID` is absent, or its namespaces are
/// already released (a zombie).
fn exited(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ESRCH)
}

/// The cgroup was removed: its directory is absent, or its files answer
/// `ENODEV`.
fn removed(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ENODEV)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_procs() {
        assert_eq!(parse_procs("12\n 345 \n\n6\n").unwrap(), vec![12, 345, 6]);
        assert!(parse_procs("").unwrap().is_empty());
        assert!(parse_procs("12\nx\n").is_err());
    }

    /// A cgroup-like tree of plain directories: the walk goes down every
    /// level, skips PIDs that do not exist and counts one namespace once.
    #[test]
    fn finds_each_namespace_once_through_the_whole_tree() {
        let root = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let write = |dir: &str, text: String| {
            let dir = root.path().join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cgroup.procs"), text).unwrap();
        };
        write("", String::new());
        write("kubepods", String::new());
        write("kubepods/pod1", format!("{me}\n"));
        // u32::MAX is above any pid_max: a process that "exited".
        write("kubepods/pod1/ctr", format!("{}\n{me}\n", u32::MAX));
        write("other", format!("{me}\n"));

        assert_eq!(pids_in_tree(root.path()).unwrap(), BTreeSet::from([me, u32::MAX]));
        let found = namespaces_in_cgroup(root.path()).unwrap();
        let mine = NetNs::open(Path::new("/proc/self/ns/net")).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id(), mine.id());
        assert_eq!(found[0].pid(), Some(me));
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let err = namespaces_in_cgroup(&root.path().join("absent")).unwrap_err();
        assert!(format!("{err:#}").contains("absent"), "{err:#}");
    }
}
