//! The pin directory (`--bpf-pin-dir`, default `/sys/fs/bpf/lb`): where the
//! data path outlives the agent.
//!
//! ```text
//! DIR/maps/FRONTENDS, …, CONNTRACK, …   every map (lb_common::PINNED_MAPS)
//! DIR/maps/NAME_new                     a replacement map, until its program is live
//! DIR/links/xdp-IFACE                   XDP on an uplink (a bpf link)
//! DIR/links/tc_egress-IFACE             TC (TCX) egress, and tc_ingress-IFACE
//! DIR/links/lb_sock_connect4, …         the socket programs on the cgroup
//! ```
//!
//! bpffs refuses names with a dot (reserved for the kernel's own files): a
//! dot in an interface name (`eth0.100`) is written `:`, which interface
//! names cannot hold.
//!
//! The agent that writes the maps holds an exclusive `flock` on `DIR`: a
//! second agent with the same directory waits for it (the kernel drops the
//! lock when its holder exits, however it exits).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MsFlags, mount};
use nix::sys::statfs::{BPF_FS_MAGIC, statfs};
use tracing::info;

/// Where bpffs is mounted on a node.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The default `--bpf-pin-dir`.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lb";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinDir {
    root: PathBuf,
}

/// The exclusive right to the pin directory's data path; released when
/// dropped or when the process ends.
#[derive(Debug)]
pub struct PinLock {
    _lock: Flock<File>,
    dir: PinDir,
}

impl PinLock {
    pub fn dir(&self) -> &PinDir {
        &self.dir
    }
}

impl PinDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }

    /// Where a replacement of map `name` waits until its program is live.
    pub fn staged_map(&self, name: &str) -> PathBuf {
        self.maps().join(staged(name))
    }

    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn link(&self, name: &str) -> PathBuf {
        self.links().join(name)
    }

    /// The link of program `kind` (`xdp`, `tc_egress`, `tc_ingress`) on
    /// `interface`.
    pub fn interface_link(&self, kind: &str, interface: &str) -> PathBuf {
        self.links().join(format!("{kind}-{}", interface.replace('.', ":")))
    }

    /// Makes sure the directory exists on a bpf filesystem, mounting bpffs
    /// at `/sys/fs/bpf` when nothing is mounted there.
    pub fn prepare(&self) -> Result<()> {
        if !on_bpffs(&self.root)? {
            if self.root.starts_with(BPFFS) {
                mount_bpffs()?;
            }
            if !on_bpffs(&self.root)? {
                bail!("--bpf-pin-dir {}: not on a bpf filesystem (mount -t bpf bpf DIR)", self.root.display());
            }
        }
        for dir in [self.maps(), self.links()] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// Takes the lock if no other agent holds it.
    pub fn try_lock(&self) -> Result<Option<PinLock>> {
        self.lock_with(FlockArg::LockExclusiveNonblock)
    }

    /// Waits for the lock (blocking the thread).
    pub fn lock(&self) -> Result<PinLock> {
        self.lock_with(FlockArg::LockExclusive)?.context("locking the pin directory")
    }

    fn lock_with(&self, arg: FlockArg) -> Result<Option<PinLock>> {
        let dir = File::open(&self.root).with_context(|| format!("opening {}", self.root.display()))?;
        match Flock::lock(dir, arg) {
            Ok(lock) => Ok(Some(PinLock { _lock: lock, dir: self.clone() })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).with_context(|| format!("locking {}", self.root.display())),
        }
    }

    /// Removes every pin (detaching the programs whose links are pinned
    /// only here) and the directory. For `lb cleanup`.
    pub fn remove_all(&self) -> Result<Removed> {
        let mut removed = Removed::default();
        for (dir, count) in [(self.links(), &mut removed.links), (self.maps(), &mut removed.maps)] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries {
                let path = entry?.path();
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                *count += 1;
            }
            std::fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        match std::fs::remove_dir(&self.root) {
            Ok(()) => Ok(removed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(removed),
            Err(e) => Err(e).with_context(|| format!("removing {}", self.root.display())),
        }
    }
}

/// Mounts bpffs at `/sys/fs/bpf` unless it is there. Agents starting
/// together take turns (a `flock` on the directory under the mount point),
/// so bpffs is never mounted twice, one mount hiding the other's pins.
fn mount_bpffs() -> Result<()> {
    std::fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
    let dir = File::open(BPFFS).with_context(|| format!("opening {BPFFS}"))?;
    let _turn = Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, e)| e).context("locking /sys/fs/bpf")?;
    if !on_bpffs(Path::new(BPFFS))? {
        mount(Some("bpf"), BPFFS, Some("bpf"), MsFlags::empty(), None::<&str>)
            .with_context(|| format!("mounting bpffs at {BPFFS}"))?;
        info!("mounted bpffs at {BPFFS}");
    }
    Ok(())
}

/// The name under which a replacement for pin `name` waits.
pub fn staged(name: &str) -> String {
    format!("{name}_new")
}

/// What [`PinDir::remove_all`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub links: usize,
    pub maps: usize,
}

/// Whether `path` (or, if it does not exist yet, its nearest existing
/// ancestor) is on bpffs.
fn on_bpffs(path: &Path) -> Result<bool> {
    let mut at = path;
    while !at.exists() {
        match at.parent() {
            Some(parent) => at = parent,
            None => return Ok(false),
        }
    }
    let stat = statfs(at).with_context(|| format!("statfs {}", at.display()))?;
    Ok(stat.filesystem_type() == BPF_FS_MAGIC)
}
