//! Processes the L7 harness starts on the host (no namespace, no root):
//! output in log files, stopped by PID when dropped.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::process::tail;

/// One process started by the harness. Dropping it stops it: SIGTERM, then
/// SIGKILL after its grace period.
pub struct LocalProcess {
    pid: u32,
    label: String,
    stdout: PathBuf,
    stderr: PathBuf,
    grace: Duration,
    /// `None` once reaped.
    child: Mutex<Option<Child>>,
    status: Mutex<Option<ExitStatus>>,
}

impl LocalProcess {
    /// Starts `program args` with stdout/stderr in `<log_dir>/<label>.stdout|.stderr`.
    /// `grace` is how long a stop waits between SIGTERM and SIGKILL (zero: SIGKILL at once).
    pub fn spawn(
        log_dir: &Path,
        label: &str,
        program: &Path,
        args: &[impl AsRef<OsStr>],
        grace: Duration,
    ) -> Result<Self> {
        let stdout = log_dir.join(format!("{label}.stdout"));
        let stderr = log_dir.join(format!("{label}.stderr"));
        let out = File::create(&stdout).with_context(|| format!("creating {}", stdout.display()))?;
        let err = File::create(&stderr).with_context(|| format!("creating {}", stderr.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        // If the test process dies without running Drop, the kernel kills
        // the child too. The signal fires when the spawning *thread* exits:
        // spawn from the thread that owns the handle.
        // SAFETY: prctl is async-signal-safe; nothing is allocated in the child.
        unsafe {
            cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
        }
        let child = cmd.spawn().with_context(|| {
            let args: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
            format!("starting `{} {}`", program.display(), args.join(" "))
        })?;
        Ok(Self {
            pid: child.id(),
            label: label.to_string(),
            stdout,
            stderr,
            grace,
            child: Mutex::new(Some(child)),
            status: Mutex::new(None),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its exit status if it has exited (reaps it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
            *child = None;
        }
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// SIGTERM, up to the grace period, then SIGKILL; returns the exit status.
    pub fn stop(&self) -> Option<ExitStatus> {
        if self.exit_status().is_some() {
            return self.exit_status();
        }
        if !self.grace.is_zero() {
            // Signal only while unreaped: the PID cannot have been reused yet.
            let child = self.child.lock().unwrap_or_else(|p| p.into_inner());
            if child.is_some() {
                let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
            }
            drop(child);
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline && self.exit_status().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            if let Ok(status) = c.wait() {
                *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
            }
        }
        drop(child);
        self.exit_status()
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

impl Drop for LocalProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
