//! The agents under soak: `lb run` on both nodes of the bed, node1's
//! replaced every minute as an upgrade replaces it (a new agent beside the
//! old one with the same flags; once it is ready — its proxy listening,
//! its data path standing by — SIGTERM to the old one, and the new one
//! takes the data path over), node2's never restarted; and the sampler that
//! reads each agent's fds, RSS and conntrack fill.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lb_testbed::{ProcessHandle, TestBed};
use serde::{Deserialize, Serialize};

/// The node whose agent is restarted.
pub const RESTARTED: &str = "node1";
/// The node whose agent runs from start to end (judged for flatness).
pub const LONG_LIVED: &str = "node2";
/// The bed's nodes, in the order of [`Agents::pids`].
pub const NODES: [&str; 2] = [RESTARTED, LONG_LIVED];

/// How long a new agent may take to be ready, and to take over.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// What an agent logs once it holds the data path it stood by for.
const TOOK_OVER: &str = "took over the data path";

/// One replacement of node1's agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Restart {
    /// When it began, seconds from the start of the load.
    pub t_s: f64,
    pub node: String,
    pub old_pid: u32,
    pub new_pid: u32,
    /// From the new agent's start until it was ready (standing by).
    pub ready_s: f64,
    /// How long the old agent took to exit after SIGTERM (its drain).
    pub stop_s: f64,
    /// From SIGTERM to the old agent until the new one held the data path.
    pub takeover_s: f64,
    /// How the old agent ended (`exit status: 0`; a SIGKILL after the
    /// harness's grace would show here).
    pub old_exit: String,
}

/// The running agents.
pub struct Agents<'a> {
    bed: &'a TestBed,
    manifests: PathBuf,
    running: [ProcessHandle; 2],
    generation: u32,
    /// The PID of each node's current agent, for the sampler.
    pids: Arc<[AtomicU32; 2]>,
}

impl<'a> Agents<'a> {
    /// Starts an agent on each node and waits until both are ready.
    pub fn start(bed: &'a TestBed, manifests: &Path) -> Result<Self> {
        let start = |node: &str| -> Result<ProcessHandle> {
            let ready = ready_file(bed, node, 0);
            let lb = bed.start_lb_with(node, manifests, &["--ready-file", &ready.to_string_lossy()])?;
            bed.wait_for_ready(node, &lb, READY_TIMEOUT)?;
            Ok(lb)
        };
        let running = [start(NODES[0])?, start(NODES[1])?];
        let pids = Arc::new([AtomicU32::new(running[0].pid()), AtomicU32::new(running[1].pid())]);
        Ok(Self { bed, manifests: manifests.to_path_buf(), running, generation: 0, pids })
    }

    pub fn pids(&self) -> Arc<[AtomicU32; 2]> {
        self.pids.clone()
    }

    /// Fails, with its logs, if an agent exited.
    pub fn check_running(&self) -> Result<()> {
        for (node, lb) in NODES.iter().zip(&self.running) {
            if let Some(status) = lb.exit_status() {
                bail!("the agent on {node} exited ({status})\n{}", lb.logs(16 * 1024));
            }
        }
        Ok(())
    }

    /// Replaces node1's agent; `t_s` is when (for the record).
    pub fn restart(&mut self, t_s: f64) -> Result<Restart> {
        self.generation += 1;
        let ready = ready_file(self.bed, RESTARTED, self.generation);
        let began = Instant::now();
        let new = self.bed.start_lb_with(RESTARTED, &self.manifests, &["--ready-file", &ready.to_string_lossy()])?;
        wait_for(&new, READY_TIMEOUT, || ready.exists()).context("the new agent getting ready")?;
        let ready_s = began.elapsed().as_secs_f64();
        let old = std::mem::replace(&mut self.running[0], new);
        let sigterm = Instant::now();
        let old_exit = old.stop().map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
        let stop_s = sigterm.elapsed().as_secs_f64();
        let new = &self.running[0];
        wait_for(new, TAKEOVER_TIMEOUT, || new.logs(64 * 1024).contains(TOOK_OVER))
            .context("the new agent taking the data path over")?;
        self.pids[0].store(new.pid(), Ordering::Relaxed);
        Ok(Restart {
            t_s,
            node: RESTARTED.into(),
            old_pid: old.pid(),
            new_pid: new.pid(),
            ready_s,
            stop_s,
            takeover_s: sigterm.elapsed().as_secs_f64(),
            old_exit,
        })
    }
}

fn ready_file(bed: &TestBed, node: &str, generation: u32) -> PathBuf {
    bed.log_dir().join(format!("{node}-agent-{generation}.ready"))
}

/// Polls `done` every 50 ms until it holds; fails if `lb` exits or
/// `timeout` passes.
fn wait_for(lb: &ProcessHandle, timeout: Duration, done: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if let Some(status) = lb.exit_status() {
            bail!("it exited ({status})\n{}", lb.logs(16 * 1024));
        }
        if Instant::now() > deadline {
            bail!("not within {timeout:?}\n{}", lb.logs(16 * 1024));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// One reading of one agent's process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    pub t_s: f64,
    pub node: String,
    pub pid: u32,
    /// Open file descriptors (`/proc/PID/fd`).
    pub fds: u64,
    /// Resident memory (`VmRSS` of `/proc/PID/status`), KiB.
    pub rss_kib: u64,
}

/// One reading of a node's conntrack, from its agent's `/metrics`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConntrackSample {
    pub t_s: f64,
    pub node: String,
    /// Entries in the table (two per flow, idle ones included until the
    /// LRU evicts them).
    pub entries: u64,
    pub capacity: u64,
    /// `lb_xdp_verdicts_total{reason="flow_backend_gone"}`: packets of
    /// tracked flows whose backend had left the tables (the flow was
    /// balanced again), since the data path was loaded.
    pub backend_gone: u64,
}

/// Reads `pid`'s fd count and RSS; `None` if it is gone.
pub fn read_process(pid: u32) -> Option<(u64, u64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some((fds, rss))
}

/// `lb_conntrack_entries`, `lb_conntrack_capacity` and the
/// `flow_backend_gone` verdicts from node `node`'s `/metrics`; `None` when
/// the answer has none (an agent standing by answered the shared admin
/// port) or the scrape failed.
pub fn read_conntrack(bed: &TestBed, node: &str) -> Option<(u64, u64, u64)> {
    let resp = bed.admin_get(node, "/metrics").ok()?;
    if resp.status != 200 {
        return None;
    }
    let gauge = |name: &str| {
        resp.body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
    };
    Some((
        gauge("lb_conntrack_entries")? as u64,
        gauge("lb_conntrack_capacity")? as u64,
        gauge("lb_xdp_verdicts_total{reason=\"flow_backend_gone\"}")? as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let (fds, rss) = read_process(std::process::id()).expect("our own /proc entry");
        assert!(fds >= 3 && rss > 1000, "{fds} fds, {rss} KiB");
        assert!(read_process(u32::MAX).is_none());
    }
}
