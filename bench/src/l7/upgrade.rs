//! Upgrading the proxy under load: a new process takes over the ports from
//! the old one, N times in a row, while the reload test's clients run —
//! kept-alive HTTP/1.1 connections, and clients that open a new connection
//! per request (the ones that meet an accept queue when a listener
//! closes). Each subject is upgraded the way its users upgrade it:
//!
//! - lb: a new `lb run` beside the old one with identical flags (the ports
//!   are shared with `SO_REUSEPORT`), ready (its `/readyz` answers with its
//!   PID), then SIGTERM to the old one — a DaemonSet's `maxSurge: 1`
//!   rolling update on one node;
//! - nginx: its binary upgrade — SIGUSR2 to the master starts a new master
//!   that inherits the listening sockets; once its worker runs, SIGQUIT to
//!   the old master (nginx runs as a daemon here: a master whose parent is
//!   its launcher ignores SIGUSR2);
//! - HAProxy: `haproxy -sf OLDPID`, a new process (no master-worker) that
//!   binds the ports beside the old one and then soft-stops it.
//!
//! Each sequence runs with `net.ipv4.tcp_migrate_req` at 0 and at 1 (the
//! bench sets it and restores the value it found): at 1 the kernel moves
//! connections queued on a closing `SO_REUSEPORT` listener to another
//! listener of the port instead of resetting them. lb sets it to 1 when it
//! starts; its `0` runs set it back after the new agent started.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lb_testbed::Process;
use lb_testbed::handover::wait_ready_pid;
use lb_testbed::l7::{Req, send_h1, unique_loopback_ip};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use super::model::IngressSet;
use super::proxy::{ADMIN_PORT, HTTP_PORT, Kind, Placement};
use super::reload::{Counters, Reuse, requests};
use super::{haproxy, lbagent, nginx};

#[derive(Clone, Debug, Serialize)]
pub struct Spec {
    /// Upgrades in a row, each under the load.
    pub upgrades: usize,
    /// `net.ipv4.tcp_migrate_req` values to run each sequence with.
    pub migrate_req: Vec<u8>,
    /// Kept-alive connections, each at `rps_per_connection`.
    pub keep_alive: usize,
    pub rps_per_connection: u32,
    /// Clients opening a new connection per request, each at
    /// `new_connection_rps`.
    pub new_connection: usize,
    pub new_connection_rps: u32,
    /// Load before the first upgrade, between two and after the last.
    pub settle: Duration,
    /// Longest wait for a new process to serve, or an old one to exit.
    pub timeout: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    pub failed: u64,
    pub new_connection_requests: u64,
    pub new_connection_failed: u64,
    pub keep_alive_failed: u64,
    /// Of the kept-alive failures: requests on a kept-alive connection the
    /// server closed before answering.
    pub closed_before_answer: u64,
    /// Kept-alive connections the server closed between requests (reopened).
    pub reconnects: u64,
    /// Time from starting the new process to the old one's exit, median, ms.
    pub handover_ms: f64,
}

/// Sets `net.ipv4.tcp_migrate_req` and puts back the value it found when
/// dropped.
pub struct MigrateReq {
    found: Option<String>,
}

const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

impl MigrateReq {
    pub fn save() -> Self {
        Self { found: std::fs::read_to_string(MIGRATE_REQ).ok() }
    }

    pub fn set(&self, value: u8) -> Result<()> {
        std::fs::write(MIGRATE_REQ, value.to_string()).with_context(|| format!("setting {MIGRATE_REQ}"))
    }
}

impl Drop for MigrateReq {
    fn drop(&mut self) {
        if let Some(found) = &self.found {
            let _ = std::fs::write(MIGRATE_REQ, found.trim());
        }
    }
}

/// One subject being upgraded: what serves its ports now.
enum Running {
    Lb(Process),
    /// The master's PID (a daemon, reparented to the bench).
    Nginx(u32),
    Haproxy(Process),
}

struct Subject {
    kind: Kind,
    ip: Ipv4Addr,
    dir: PathBuf,
    running: Option<Running>,
    generation: usize,
}

impl Subject {
    fn start(kind: Kind, set: &IngressSet, work: &Path, place: &Placement) -> Result<Self> {
        let ip = unique_loopback_ip();
        let dir = work.join(format!("upgrade-{}-{ip}", kind.subject().to_lowercase()));
        std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
        let running = match kind {
            Kind::Lb | Kind::LbNoRequestMetrics => Running::Lb(lbagent::start(set, ip, &dir, place, &[])?.0),
            Kind::Nginx => Running::Nginx(nginx::start_daemon(set, ip, &dir, place)?),
            Kind::Haproxy => Running::Haproxy(haproxy::start_single(set, ip, &dir, place, None, "haproxy")?),
        };
        Ok(Self { kind, ip, dir, running: Some(running), generation: 0 })
    }

    fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, HTTP_PORT))
    }

    /// Hands the ports to a new process; returns when the old one is gone.
    async fn upgrade(
        &mut self,
        set: &IngressSet,
        place: &Placement,
        migrate: &MigrateReq,
        value: u8,
        spec: &Spec,
    ) -> Result<()> {
        self.generation += 1;
        let label = format!("{}-{}", self.kind.subject().to_lowercase(), self.generation);
        migrate.set(value)?;
        match self.running.take().context("nothing runs")? {
            Running::Lb(old) => {
                let new = lbagent::spawn(self.ip, &self.dir, place, &label)?;
                let admin = SocketAddr::from((self.ip, ADMIN_PORT));
                let ready = wait_ready_pid(admin, new.pid(), spec.timeout, || new.is_running()).await;
                self.running = Some(Running::Lb(new));
                ready?;
                // The new agent set it to 1 when it started.
                migrate.set(value)?;
                kill(Pid::from_raw(old.pid() as i32), Signal::SIGTERM).context("SIGTERM to the old lb")?;
                exited(&old, spec.timeout).await
            }
            Running::Nginx(old) => {
                kill(Pid::from_raw(old as i32), Signal::SIGUSR2).context("SIGUSR2 to the nginx master")?;
                let new = new_nginx_master(&self.dir, old, spec.timeout).await;
                let new = match new {
                    Ok(new) => new,
                    Err(e) => {
                        self.running = Some(Running::Nginx(old));
                        return Err(e);
                    }
                };
                self.running = Some(Running::Nginx(new));
                kill(Pid::from_raw(old as i32), Signal::SIGQUIT).context("SIGQUIT to the old nginx master")?;
                gone(old, spec.timeout).await
            }
            Running::Haproxy(old) => {
                let new = haproxy::start_single(set, self.ip, &self.dir, place, Some(old.pid()), &label)?;
                self.running = Some(Running::Haproxy(new));
                exited(&old, spec.timeout).await
            }
        }
    }

    /// Stops what runs (bounded; SIGKILL after the bound).
    async fn stop(&mut self, timeout: Duration) {
        match self.running.take() {
            Some(Running::Lb(p) | Running::Haproxy(p)) => {
                let _ = kill(Pid::from_raw(p.pid() as i32), Signal::SIGTERM);
                let _ = exited(&p, timeout).await;
            }
            Some(Running::Nginx(master)) => {
                let _ = kill(Pid::from_raw(master as i32), Signal::SIGTERM);
                if gone(master, timeout).await.is_err() {
                    let _ = kill(Pid::from_raw(master as i32), Signal::SIGKILL);
                    let _ = gone(master, timeout).await;
                }
            }
            None => {}
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.join("logs")).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".stderr") || name == "error.log" {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let start = text.len().saturating_sub(2048);
                out.push_str(&format!("---- {name} ----\n{}\n", text.get(start..).unwrap_or(&text)));
            }
        }
        out
    }
}

/// Waits (asynchronously, at most `timeout`) until `p` exited; the caller
/// drops it (reaps it, SIGKILL first if it still runs).
async fn exited(p: &Process, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while p.is_running() {
        if start.elapsed() > timeout {
            bail!("{} (pid {}) still runs {timeout:?} after it was asked to stop", p.label(), p.pid());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Waits until process `pid` is gone: reaped by us (the bench is a child
/// subreaper, so orphaned nginx masters are ours), or, if it is not our
/// child, no longer in /proc or a zombie.
async fn gone(pid: u32, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return Ok(()),
            Err(_) => {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
                if matches!(state, None | Some('Z' | 'X')) {
                    return Ok(());
                }
            }
        }
        if start.elapsed() > timeout {
            bail!("process {pid} still runs {timeout:?} after it was asked to stop");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After SIGUSR2 to `old`: the new master's PID once it has written its
/// pid file and started its worker (it inherited the listening sockets).
async fn new_nginx_master(dir: &Path, old: u32, timeout: Duration) -> Result<u32> {
    let start = Instant::now();
    loop {
        if let Ok(new) = nginx::master_pid(dir)
            && new != old
            && dir.join("nginx.pid.oldbin").exists()
            && !children(new).is_empty()
        {
            return Ok(new);
        }
        if start.elapsed() > timeout {
            bail!("no new nginx master {timeout:?} after SIGUSR2 to {old}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// Waits until the subject answers the plain target with 200.
async fn serving(subject: &Subject, set: &IngressSet, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let target = &set.plain;
    let req = Req::get(&target.paths[0]).host(&target.host).timeout(Duration::from_secs(2));
    loop {
        if matches!(send_h1(subject.http_addr(), &req).await, Ok(r) if r.status == 200) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("{} does not serve after {timeout:?}\n{}", subject.kind.subject(), subject.logs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `kind` on a fresh address, runs the load, upgrades it
/// `spec.upgrades` times with `tcp_migrate_req` at `value`, and stops it.
pub async fn run(
    kind: Kind,
    set: &IngressSet,
    work: &Path,
    place: &Placement,
    migrate: &MigrateReq,
    value: u8,
    spec: &Spec,
) -> Result<Outcome> {
    let mut subject = Subject::start(kind, set, work, place)?;
    let result = measure(&mut subject, set, place, migrate, value, spec).await;
    subject.stop(spec.timeout).await;
    let result = result.map_err(|e| e.context(subject.logs()));
    let _ = std::fs::remove_dir_all(&subject.dir);
    result
}

async fn measure(
    subject: &mut Subject,
    set: &IngressSet,
    place: &Placement,
    migrate: &MigrateReq,
    value: u8,
    spec: &Spec,
) -> Result<Outcome> {
    serving(subject, set, spec.timeout).await?;
    let addr = subject.http_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (kept, fresh) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
    let mut clients = Vec::new();
    let every = |rps: u32| Duration::from_secs_f64(1.0 / f64::from(rps.max(1)));
    for i in 0..spec.keep_alive {
        let c = requests(
            addr,
            set.plain.clone(),
            i,
            every(spec.rps_per_connection),
            Reuse::KeepAlive,
            kept.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(c));
    }
    for i in 0..spec.new_connection {
        let c = requests(
            addr,
            set.plain.clone(),
            i,
            every(spec.new_connection_rps),
            Reuse::NewConnection,
            fresh.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(c));
    }
    tokio::time::sleep(spec.settle).await;
    let mut times = Vec::new();
    let mut upgraded = Ok(());
    for _ in 0..spec.upgrades {
        let started = Instant::now();
        upgraded = subject.upgrade(set, place, migrate, value, spec).await;
        if upgraded.is_err() {
            break;
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(spec.settle).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    upgraded.with_context(|| format!("upgrading {}", subject.kind.subject()))?;
    let get = |c: &Counters, f: fn(&Counters) -> &std::sync::atomic::AtomicU64| f(c).load(Ordering::Relaxed);
    let keep_alive_failed = get(&kept, |c| &c.failed);
    let new_connection_failed = get(&fresh, |c| &c.failed);
    let new_connection_requests = get(&fresh, |c| &c.requests);
    Ok(Outcome {
        requests: get(&kept, |c| &c.requests) + new_connection_requests,
        failed: keep_alive_failed + new_connection_failed,
        new_connection_requests,
        new_connection_failed,
        keep_alive_failed,
        closed_before_answer: get(&kept, |c| &c.closed_before_answer),
        reconnects: get(&kept, |c| &c.reconnects),
        handover_ms: crate::stats::median(&times),
    })
}
