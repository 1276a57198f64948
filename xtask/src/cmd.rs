//! Running external commands: every command is echoed before it runs, and a
//! failure names the command.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A shell-like rendering of `cmd` (working directory and set variables included).
pub fn render(cmd: &Command) -> String {
    let mut out = String::new();
    if let Some(dir) = cmd.get_current_dir() {
        out.push_str(&format!("(cd {}) ", dir.display()));
    }
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            out.push_str(&format!("{}={} ", k.to_string_lossy(), quote(&v.to_string_lossy())));
        }
    }
    out.push_str(&quote(&cmd.get_program().to_string_lossy()));
    for a in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(&a.to_string_lossy()));
    }
    out
}

fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c)) {
        s.to_string()
    } else if s.contains('\n') {
        let escaped = s.replace('\\', r"\\").replace('\'', r"\'").replace('\n', r"\n");
        format!("$'{escaped}'")
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Prints the command the way it is about to run.
pub fn echo(cmd: &Command) {
    eprintln!("[xtask] $ {}", render(cmd));
}

/// Runs `cmd` with inherited stdio; fails if it does not exit 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    echo(cmd);
    let status = cmd.status().with_context(|| format!("could not start `{}`", render(cmd)))?;
    check(cmd, status)
}

/// Runs `cmd` and returns its status without judging it (echoed first).
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    echo(cmd);
    cmd.status().with_context(|| format!("could not start `{}`", render(cmd)))
}

fn check(cmd: &Command, status: ExitStatus) -> Result<()> {
    if status.success() { Ok(()) } else { bail!("`{}` failed ({status})", render(cmd)) }
}

/// What a probe command printed, `None` if it could not start or failed.
/// Used for checks ("is X installed?"); echoed like every command.
pub fn probe(cmd: &mut Command) -> Option<String> {
    echo(cmd);
    let out = cmd.stdin(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether we run as root (installing and privileged tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The workspace root (parent of the xtask crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives inside the workspace").to_path_buf()
}

/// The host target directory (`CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { workspace_root().join(dir) }
        }
        None => workspace_root().join("target"),
    }
}

/// `cargo` for host builds, run from the workspace root. The outer cargo's
/// per-crate build variables are removed, the toolchain choice is kept.
pub fn host_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    crate::ebpf::scrub_cargo_env(&mut cmd, true);
    cmd.current_dir(workspace_root());
    cmd
}

/// Announces a step and times it.
pub struct Step {
    name: String,
    start: Instant,
}

impl Step {
    pub fn start(name: &str) -> Self {
        eprintln!("\n[xtask] ==> {name}");
        Self { name: name.to_string(), start: Instant::now() }
    }

    pub fn done(self) -> Duration {
        let took = self.start.elapsed();
        eprintln!("[xtask] <== {} ok ({})", self.name, fmt_duration(took));
        took
    }
}

pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 { format!("{}m{:02}s", s / 60, s % 60) } else { format!("{:.1}s", d.as_secs_f64()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_quotes_and_shows_env() {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args(["install", "-y", "a b"]);
        assert_eq!(render(&c), "DEBIAN_FRONTEND=noninteractive apt-get install -y 'a b'");
    }
}
