//! CPU accounting for "CPU per packet".
//!
//! On one machine the generator, the node and the pods share the CPUs, and
//! most forwarding work (veth, bridge, XDP, routing, netfilter) runs in
//! softirq context on the CPU of the thread whose send triggered it. The
//! kernel charges softirq work to the task it interrupted (no
//! `IRQ_TIME_ACCOUNTING` here) or to `ksoftirqd` when deferred. So the bed's
//! cost is this process's CPU time (generator, sinks and the softirq work
//! they carried) plus `ksoftirqd/*` plus the lb agent's process — other
//! programs on the machine (compilers…) are not counted. `/proc/stat`'s
//! machine-wide busy time is recorded alongside for comparison.

use std::sync::OnceLock;
use std::time::Duration;

use super::sys::{clock_ticks, own_cpu};

/// Cumulative CPU counters at one instant.
#[derive(Clone, Copy, Debug)]
pub struct CpuSnapshot {
    /// This process (every thread).
    own: Duration,
    /// `ksoftirqd/*` threads and the extra processes (lb), from /proc/PID/stat.
    others_ticks: u64,
    /// Machine-wide busy ticks from /proc/stat.
    stat_busy: u64,
}

/// CPU spent between two snapshots.
#[derive(Clone, Copy, Debug)]
pub struct CpuSpent {
    /// The bed's CPU time (see the module doc).
    pub bed: Duration,
    /// Machine-wide busy time (all CPUs), from /proc/stat.
    pub machine: Duration,
}

impl CpuSnapshot {
    /// Reads the counters; `extra_pids` are processes of the subject (lb).
    pub fn take(extra_pids: &[u32]) -> Self {
        static KSOFTIRQD: OnceLock<Vec<u32>> = OnceLock::new();
        let ksoftirqd = KSOFTIRQD.get_or_init(ksoftirqd_pids);
        let others_ticks = ksoftirqd.iter().chain(extra_pids).filter_map(|p| process_ticks(*p)).sum();
        let stat_busy = machine_busy_ticks().unwrap_or(0);
        Self { own: own_cpu(), others_ticks, stat_busy }
    }

    /// What was spent from `self` to `later`.
    pub fn until(&self, later: &CpuSnapshot) -> CpuSpent {
        let tick = Duration::from_secs(1) / clock_ticks() as u32;
        let others = tick * later.others_ticks.saturating_sub(self.others_ticks) as u32;
        let machine = tick * later.stat_busy.saturating_sub(self.stat_busy) as u32;
        CpuSpent { bed: later.own.saturating_sub(self.own) + others, machine }
    }
}

/// Waits until the machine is quiet — less than `QUIET_BUSY` of its CPUs
/// busy in two consecutive half-second windows — or `limit` has passed;
/// returns how long it waited. Whatever a subject's start or teardown
/// leaves running (kernel work after a large rule set is loaded or
/// flushed, an agent still compiling) must not be measured against the
/// next measurement.
pub fn wait_until_quiet(limit: Duration) -> Duration {
    const QUIET_BUSY: f64 = 0.15;
    const WINDOW: Duration = Duration::from_millis(500);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let window_ticks = WINDOW.as_secs_f64() * clock_ticks() as f64 * cpus;
    let started = std::time::Instant::now();
    let mut quiet_windows = 0;
    let Some(mut last) = machine_busy_ticks() else { return Duration::ZERO };
    while quiet_windows < 2 && started.elapsed() < limit {
        std::thread::sleep(WINDOW);
        let Some(now) = machine_busy_ticks() else { break };
        let busy = now.saturating_sub(last) as f64 / window_ticks;
        quiet_windows = if busy < QUIET_BUSY { quiet_windows + 1 } else { 0 };
        last = now;
    }
    started.elapsed()
}

/// CPU time (user + system) process `pid` has used so far, if it exists.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let tick = Duration::from_secs(1) / clock_ticks() as u32;
    Some(tick * u32::try_from(process_ticks(pid)?).ok()?)
}

fn ksoftirqd_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("ksoftirqd/")))
        .collect()
}

/// utime + stime of a process, in clock ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    crate::l7::cpu::parse_pid_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Busy ticks of all CPUs: everything but idle and iowait.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some(total - idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_only_grow() {
        let a = CpuSnapshot::take(&[std::process::id()]);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuSnapshot::take(&[std::process::id()]);
        let spent = a.until(&b);
        assert!(spent.bed > Duration::ZERO, "{spent:?}");
        assert!(machine_busy_ticks().is_some());
    }
}
