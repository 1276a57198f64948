//! `lb cleanup`: uninstalling the pinned data path.

use std::io::Write;

use anyhow::{Result, bail};

use crate::cli::CleanupArgs;
use crate::dataplane::PinDir;

/// Detaches every program pinned under the directory and removes its pins;
/// refuses while an agent holds the directory.
pub fn cleanup(args: &CleanupArgs) -> Result<()> {
    let dir = PinDir::new(&args.bpf_pin_dir);
    let mut out = std::io::stdout();
    if !dir.root().exists() {
        writeln!(out, "nothing pinned at {}", dir.root().display())?;
        return Ok(());
    }
    let Some(_lock) = dir.try_lock()? else {
        bail!("an agent is running on {} (it holds the directory's lock): stop it first", dir.root().display());
    };
    let removed = dir.remove_all()?;
    writeln!(
        out,
        "removed {} program links (detached) and {} maps from {}",
        removed.links,
        removed.maps,
        dir.root().display()
    )?;
    Ok(())
}
