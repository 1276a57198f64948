//! The cgroup v2 directory the socket programs are attached to
//! (`--cgroup-root`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tracing::info;

/// Where lb mounts cgroup v2 itself when the machine has it nowhere.
pub const OWN_MOUNT: &str = "/run/lb/cgroupv2";

/// `--cgroup-root` if given, else the first cgroup2 mount of the machine,
/// else a cgroup2 mount lb makes at [`OWN_MOUNT`] (its root is the whole
/// machine's: every process is in it).
pub fn resolve_root(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = machine_mount()? {
        return Ok(path);
    }
    let own = Path::new(OWN_MOUNT);
    std::fs::create_dir_all(own).with_context(|| format!("creating {OWN_MOUNT}"))?;
    nix::mount::mount(Some("cgroup2"), own, Some("cgroup2"), nix::mount::MsFlags::empty(), None::<&str>)
        .with_context(|| format!("mounting cgroup2 at {OWN_MOUNT}"))?;
    info!(path = OWN_MOUNT, "no cgroup2 mount found; mounted one");
    Ok(own.to_path_buf())
}

/// The first cgroup2 mount of the machine, if any (`/proc/mounts`).
pub fn machine_mount() -> Result<Option<PathBuf>> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(first_cgroup2_mount(&mounts))
}

/// The mount point of the first `cgroup2` line of `/proc/mounts` text.
fn first_cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(unescape(target)))
    })
}

/// `/proc/mounts` writes space, tab, newline and backslash as octal
/// escapes (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_cgroup2_mount() {
        let mounts = "sysfs /sys sysfs rw 0 0\n\
                      tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n\
                      cgroup2 /other cgroup2 rw 0 0\n";
        assert_eq!(first_cgroup2_mount(mounts), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(first_cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"), None);
    }

    #[test]
    fn unescapes_octal_fields() {
        assert_eq!(unescape("/mnt/with\\040space"), "/mnt/with space");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
