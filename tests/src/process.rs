//! Processes the bed starts inside namespaces, with their output in log files.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);

/// One process the bed started. The bed keeps it and stops it on drop.
pub(crate) struct ProcEntry {
    pid: u32,
    label: String,
    ns: String,
    stdout: PathBuf,
    stderr: PathBuf,
    /// `None` once reaped.
    child: Mutex<Option<Child>>,
    status: Mutex<Option<ExitStatus>>,
}

/// Handle to a process started with [`TestBed::spawn_in`](crate::TestBed::spawn_in).
/// Cheap to clone; the bed still owns the process and stops it when dropped.
#[derive(Clone)]
pub struct ProcessHandle(pub(crate) Arc<ProcEntry>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts `ip netns exec NS PROGRAM ARGS` with stdout/stderr going to
/// `<log_dir>/<label>.stdout|.stderr`. `ip netns exec` execs the program in
/// place, so the child's PID is the program's.
pub(crate) fn spawn(log_dir: &Path, seq: usize, ns: &str, program: &Path, args: &[OsString]) -> Result<Arc<ProcEntry>> {
    let base = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "proc".into());
    let label = format!("{seq:02}-{base}@{ns}");
    let stdout = log_dir.join(format!("{label}.stdout"));
    let stderr = log_dir.join(format!("{label}.stderr"));
    let out = File::create(&stdout).with_context(|| format!("creating {}", stdout.display()))?;
    let err = File::create(&stderr).with_context(|| format!("creating {}", stderr.display()))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Own process group: a Ctrl-C in the terminal reaches the test or
        // demo, which then stops its children in order.
        .process_group(0);
    // If the test process dies without running Drop (SIGKILL, abort), the
    // kernel kills the child too instead of leaving it running in a
    // namespace nobody cleans. Note: the signal fires when the *thread* that
    // spawned the child exits, so spawn from the thread owning the bed.
    // SAFETY: prctl is async-signal-safe; nothing is allocated in the child.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
    let child = cmd.spawn().with_context(|| {
        let args: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        format!("starting `ip netns exec {ns} {} {}`", program.display(), args.join(" "))
    })?;
    Ok(Arc::new(ProcEntry {
        pid: child.id(),
        label,
        ns: ns.to_string(),
        stdout,
        stderr,
        child: Mutex::new(Some(child)),
        status: Mutex::new(None),
    }))
}

impl ProcEntry {
    /// Reaps the child if it has exited; returns its status if so.
    fn poll(&self) -> Option<ExitStatus> {
        let mut child = lock(&self.child);
        if let Some(c) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            *lock(&self.status) = Some(status);
            *child = None;
        }
        *lock(&self.status)
    }

    fn signal(&self, sig: Signal) {
        // Only signal while the child is not reaped: the PID cannot have been
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
}

/// Stops all `procs`: SIGTERM to each, up to [`STOP_GRACE`] for them to exit,
/// then SIGKILL and wait for the rest.
pub(crate) fn stop_all(procs: &[Arc<ProcEntry>]) {
    let running: Vec<_> = procs.iter().filter(|p| p.poll().is_none()).collect();
    for p in &running {
        p.signal(Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline && running.iter().any(|p| p.poll().is_none()) {
        std::thread::sleep(POLL);
    }
    for p in &running {
        if p.poll().is_none() {
            p.kill_and_reap();
        }
    }
}

impl ProcessHandle {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.pid
    }

    /// `NN-program@namespace`, also the log files' base name.
    pub fn label(&self) -> &str {
        &self.0.label
    }

    /// The namespace it runs in.
    pub fn namespace(&self) -> &str {
        &self.0.ns
    }

    /// Its exit status if it has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.0.poll()
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Stops it (SIGTERM, then SIGKILL after the grace period) and returns its status.
    pub fn stop(&self) -> Option<ExitStatus> {
        stop_all(std::slice::from_ref(&self.0));
        self.0.poll()
    }

    /// Paths of the stdout and stderr log files.
    pub fn log_paths(&self) -> (&Path, &Path) {
        (&self.0.stdout, &self.0.stderr)
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.0.stdout).unwrap_or_default()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.0.stderr).unwrap_or_default()
    }

    /// Both outputs (their last `max_bytes` each), labelled, for failure messages.
    pub fn logs(&self, max_bytes: usize) -> String {
        let state = match self.exit_status() {
            Some(s) => format!("exited: {s}"),
            None => "running".to_string(),
        };
        format!(
            "---- {} (pid {}, {state}) stdout ----\n{}\n---- {} stderr ----\n{}",
            self.label(),
            self.pid(),
            tail(&self.stdout(), max_bytes),
            self.label(),
            tail(&self.stderr(), max_bytes)
        )
    }
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
