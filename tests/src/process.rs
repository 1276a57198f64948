//! Processes the harnesses start — on the host (the L7 harness, the
//! benches) or inside a network namespace (the netns bed) — with their
//! output in log files, stopped by their own PID.

use std::borrow::Borrow;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns;

/// How long a process of the netns bed gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);

/// One process a harness started, with stdout and stderr in
/// `<log_dir>/<label>.stdout|.stderr`, in its own process group, killed by
/// the kernel if the thread that started it dies (`PR_SET_PDEATHSIG`).
///
/// [`stop`](Self::stop) sends SIGTERM, waits up to the grace period given at
/// spawn, then sends SIGKILL, and reaps it. Dropping it stops it. Signals go
/// only to its own PID, and only while it is not reaped (so the PID cannot
/// belong to another process yet).
pub struct Process {
    pid: u32,
    label: String,
    netns: Option<String>,
    stdout: PathBuf,
    stderr: PathBuf,
    grace: Duration,
    /// `None` once reaped.
    child: Mutex<Option<Child>>,
    status: Mutex<Option<ExitStatus>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Process {
    /// Starts `program args` on the host (the caller's namespaces). See
    /// [`spawn_in`](Self::spawn_in).
    pub fn spawn(
        log_dir: &Path,
        label: &str,
        program: &Path,
        args: &[impl AsRef<OsStr>],
        grace: Duration,
    ) -> Result<Self> {
        Self::spawn_in(None, log_dir, label, program, args, grace)
    }

    /// Starts `program args` with stdout/stderr in
    /// `<log_dir>/<label>.stdout|.stderr`; `grace` is how long
    /// [`stop`](Self::stop) waits between SIGTERM and SIGKILL (zero: SIGKILL
    /// at once).
    ///
    /// With `netns`, the program runs in that named network namespace
    /// (`/run/netns/NS`), started as `nsenter --net=/run/netns/NS -- PROGRAM
    /// ARGS`, not `ip netns exec`: `ip netns exec` also unshares the mount
    /// namespace and remounts `/sys` for the namespace, so the machine's
    /// `/sys/fs/cgroup` and `/sys/fs/bpf` (cgroups to attach to, BPF pins)
    /// are invisible to the program. `nsenter --net` only joins the network
    /// namespace and execs the program in place (no `--fork`), so the PID is
    /// the program's and its mount namespace is the machine's — what an
    /// agent of a DaemonSet with hostPath mounts of those directories sees.
    /// In exchange `/sys/class/net` shows the machine's interfaces, not the
    /// namespace's (`/proc/net` and `/proc/sys/net` do follow the namespace).
    pub fn spawn_in(
        netns: Option<&str>,
        log_dir: &Path,
        label: &str,
        program: &Path,
        args: &[impl AsRef<OsStr>],
        grace: Duration,
    ) -> Result<Self> {
        let mut cmd = match netns {
            None => Command::new(program),
            Some(ns) => {
                if !netns::ns_exists(ns) {
                    bail!("network namespace {ns} does not exist");
                }
                netns::require_tool("nsenter", "util-linux")?;
                let mut enter = OsString::from("--net=");
                enter.push(netns::ns_path(ns));
                let mut cmd = Command::new("nsenter");
                cmd.arg(enter).arg("--").arg(program);
                cmd
            }
        };
        cmd.args(args);
        let line = command_line(&cmd);
        let stdout = log_dir.join(format!("{label}.stdout"));
        let stderr = log_dir.join(format!("{label}.stderr"));
        let out = File::create(&stdout).with_context(|| format!("creating {}", stdout.display()))?;
        let err = File::create(&stderr).with_context(|| format!("creating {}", stderr.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Own process group: a Ctrl-C in the terminal reaches the test or
            // demo, which then stops its children in order.
            .process_group(0);
        // If the test process dies without running Drop (SIGKILL, abort), the
        // kernel kills the child too instead of leaving it running (in a
        // namespace nobody cleans). The setting survives nsenter's exec. Note:
        // the signal fires when the *thread* that spawned the child exits, so
        // spawn from the thread owning the process (or the bed).
        // SAFETY: prctl is async-signal-safe; nothing is allocated in the child.
        unsafe {
            cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
        }
        let child = cmd.spawn().with_context(|| format!("starting `{line}`"))?;
        Ok(Self {
            pid: child.id(),
            label: label.to_string(),
            netns: netns.map(str::to_string),
            stdout,
            stderr,
            grace,
            child: Mutex::new(Some(child)),
            status: Mutex::new(None),
        })
    }

    /// The process id (the program's: nothing stays in between).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its label, also the log files' base name.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The network namespace it runs in, if not the host's.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// How long [`stop`](Self::stop) waits between SIGTERM and SIGKILL.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Its exit status if it has exited (reaps it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = lock(&self.child);
        if let Some(c) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            *lock(&self.status) = Some(status);
            *child = None;
        }
        *lock(&self.status)
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Stops it (SIGTERM, then SIGKILL after the grace period) and returns
    /// its exit status.
    pub fn stop(&self) -> Option<ExitStatus> {
        stop_all(std::slice::from_ref(self));
        self.exit_status()
    }

    /// Kills it with SIGKILL at once (no chance to clean up, as a crash or
    /// an OOM kill) and returns its exit status.
    pub fn kill(&self) -> Option<ExitStatus> {
        self.kill_and_reap();
        self.exit_status()
    }

    fn signal(&self, sig: Signal) {
        // Only while the child is not reaped: its PID cannot have been
        // reused by another process before we wait for it.
        let child = lock(&self.child);
        if child.is_some() {
            let _ = kill(Pid::from_raw(self.pid as i32), sig);
        }
    }

    fn kill_and_reap(&self) {
        let mut child = lock(&self.child);
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            if let Ok(status) = c.wait() {
                *lock(&self.status) = Some(status);
            }
        }
    }

    /// Paths of the stdout and stderr log files.
    pub fn log_paths(&self) -> (&Path, &Path) {
        (&self.stdout, &self.stderr)
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Both outputs (the last `max_bytes` of each), labelled, for failure messages.
    pub fn logs(&self, max_bytes: usize) -> String {
        let state = match self.exit_status() {
            Some(s) => format!("exited: {s}"),
            None => "running".to_string(),
        };
        format!(
            "---- {} (pid {}, {state}) stdout ----\n{}\n---- {} stderr ----\n{}",
            self.label,
            self.pid,
            tail(&self.stdout(), max_bytes),
            self.label,
            tail(&self.stderr(), max_bytes)
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops all `procs` together: SIGTERM to each that has a grace period,
/// up to its grace period for each to exit, then SIGKILL to the rest and
/// reap them.
pub fn stop_all<P: Borrow<Process>>(procs: &[P]) {
    let running: Vec<&Process> = procs.iter().map(Borrow::borrow).filter(|p| p.is_running()).collect();
    for p in running.iter().filter(|p| !p.grace.is_zero()) {
        p.signal(Signal::SIGTERM);
    }
    let start = Instant::now();
    while running.iter().any(|p| start.elapsed() < p.grace && p.is_running()) {
        std::thread::sleep(POLL);
    }
    for p in &running {
        if p.is_running() {
            p.kill_and_reap();
        }
    }
}

/// Handle to a process of the netns bed, started with
/// [`TestBed::spawn_in`](crate::TestBed::spawn_in) or
/// [`TestBed::start_lb_run`](crate::TestBed::start_lb_run). Cheap to clone;
/// the bed owns the process too and stops it when dropped. Dereferences to
/// [`Process`].
#[derive(Clone)]
pub struct ProcessHandle(pub(crate) Arc<Process>);

impl ProcessHandle {
    /// The namespace it runs in.
    pub fn namespace(&self) -> &str {
        self.0.netns().unwrap_or_default()
    }

    /// The shared process.
    pub fn process(&self) -> &Arc<Process> {
        &self.0
    }
}

impl Deref for ProcessHandle {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.0
    }
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(OsStr::to_string_lossy).collect::<Vec<_>>().join(" ")
}

/// The last `max` bytes of `s` (from a character boundary).
pub(crate) fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    /// Waits until `/proc/PID/exe` is `program` (the exec has happened).
    fn wait_exe(pid: u32, program: &Path) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe == program || Instant::now() >= deadline {
                return exe;
            }
            std::thread::sleep(POLL);
        }
    }

    fn sleep_bin() -> PathBuf {
        std::fs::canonicalize("/bin/sleep").expect("/bin/sleep")
    }

    #[test]
    fn host_process_logs_and_stops_by_sigterm() {
        let logs = tempfile::tempdir().unwrap();
        let sh = Path::new("/bin/sh");
        let p = Process::spawn(logs.path(), "sh", sh, &["-c", "echo out; echo err >&2; exec sleep 30"], STOP_GRACE)
            .unwrap();
        assert_eq!(p.netns(), None);
        assert_eq!(wait_exe(p.pid(), &sleep_bin()), sleep_bin());
        assert_eq!(p.log_paths().0, logs.path().join("sh.stdout"));
        assert_eq!(p.stdout(), "out\n");
        assert_eq!(p.stderr(), "err\n");
        assert!(p.is_running());
        let status = p.stop().expect("reaped");
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status}");
        assert!(!p.is_running());
        assert!(p.logs(100).contains("(pid"), "{}", p.logs(100));
    }

    #[test]
    fn zero_grace_kills_at_once() {
        let logs = tempfile::tempdir().unwrap();
        let p = Process::spawn(logs.path(), "sleep", &sleep_bin(), &["30"], Duration::ZERO).unwrap();
        let status = p.stop().expect("reaped");
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status}");
    }

    /// In a namespace the PID is the program's (nsenter execs in place), its
    /// network namespace is the named one and its mount namespace the
    /// machine's (unlike `ip netns exec`).
    #[test]
    fn netns_process_is_the_program_in_the_namespace_with_the_machines_mounts() {
        crate::require_root().unwrap();
        let ns = format!("{}{}-4000000000-proctest", crate::NAMESPACE_SCHEME_PREFIX, std::process::id());
        netns::ip(&["netns", "add", &ns]).unwrap();
        struct Del(String);
        impl Drop for Del {
            fn drop(&mut self) {
                let _ = netns::ip(&["netns", "del", &self.0]);
            }
        }
        let _del = Del(ns.clone());
        let logs = tempfile::tempdir().unwrap();
        let p = Process::spawn_in(Some(&ns), logs.path(), "sleep", &sleep_bin(), &["30"], STOP_GRACE).unwrap();
        assert_eq!(p.netns(), Some(ns.as_str()));
        assert_eq!(wait_exe(p.pid(), &sleep_bin()), sleep_bin(), "{}", p.logs(1000));
        let inode = |path: PathBuf| std::fs::metadata(&path).map(|m| m.ino()).unwrap();
        let proc_ns = |which: &str| PathBuf::from(format!("/proc/{}/ns/{which}", p.pid()));
        assert_eq!(inode(proc_ns("net")), inode(netns::ns_path(&ns)));
        assert_eq!(inode(proc_ns("mnt")), inode(PathBuf::from("/proc/self/ns/mnt")));
        let status = p.stop().expect("reaped");
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status}");
    }

    #[test]
    fn missing_namespace_is_an_error() {
        let logs = tempfile::tempdir().unwrap();
        let err = Process::spawn_in(Some("lb-no-such-ns"), logs.path(), "x", &sleep_bin(), &["1"], Duration::ZERO)
            .err()
            .expect("fails");
        assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
    }
}
