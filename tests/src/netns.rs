//! Entering network namespaces and running `ip`/tools inside them.

use std::ffi::OsStr;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};

/// Where `ip netns add` mounts a namespace.
pub fn ns_path(ns: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(ns)
}

/// Whether a named namespace exists.
pub fn ns_exists(ns: &str) -> bool {
    ns_path(ns).exists()
}

/// Runs `f` on a new thread that first joins network namespace `ns`, and
/// returns its result. Sockets created inside `f` belong to `ns` and keep
/// working from any thread afterwards. A panic in `f` is propagated.
pub fn in_netns<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let file = File::open(ns_path(ns)).with_context(|| format!("opening network namespace {ns}"))?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || -> Result<T> {
            setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into network namespace {ns}"))?;
            Ok(f())
        });
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Writes a sysctl (`net.ipv4.ip_forward`) inside `ns` through /proc/sys, from
/// a thread that joined the namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    in_netns(ns, || std::fs::write(&path, value))?.with_context(|| format!("sysctl {key}={value} in {ns}"))
}

/// Reads a sysctl inside `ns`.
pub fn read_sysctl(ns: &str, key: &str) -> Result<String> {
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    let v =
        in_netns(ns, || std::fs::read_to_string(&path))?.with_context(|| format!("reading sysctl {key} in {ns}"))?;
    Ok(v.trim().to_string())
}

fn verbose() -> bool {
    std::env::var_os("LB_TESTBED_VERBOSE").is_some_and(|v| v != "0")
}

/// Runs a command to completion; fails with its stderr if it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    run_cmd(Command::new(program).args(args))
}

fn run_cmd(cmd: &mut Command) -> Result<Output> {
    let line = render(cmd);
    if verbose() {
        eprintln!("[testbed] $ {line}");
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{line}` (is it installed? `cargo xtask setup`)"))?;
    if !out.status.success() {
        bail!("`{line}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

fn render(cmd: &Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(OsStr::to_string_lossy).collect::<Vec<_>>().join(" ")
}

/// `ip ARGS...` in the caller's namespace.
pub fn ip(args: &[&str]) -> Result<Output> {
    run("ip", args)
}

/// `ip -n NS ARGS...`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<Output> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// `ip netns exec NS PROGRAM ARGS...`, waiting for it.
pub fn exec_in(ns: &str, program: &str, args: &[&str]) -> Result<Output> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Checks that a tool the bed needs is installed.
pub fn require_tool(program: &str, package: &str) -> Result<()> {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false);
    if found {
        Ok(())
    } else {
        bail!("`{program}` not found in PATH: install Debian package {package} (`cargo xtask setup`)")
    }
}
