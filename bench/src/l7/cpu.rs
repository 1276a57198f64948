//! CPU time spent inside one max-rate window: by the subject (every
//! process of it — nginx's master and worker, HAProxy, lb with all its
//! threads), by the backends and by h2load, from `/proc/PID/stat`
//! (utime + stime of all the process's threads, in clock ticks), and how
//! busy each CPU was, from `/proc/stat`.
//!
//! The window is the middle of h2load's measured phase: from 10% to 90% of
//! its duration after the warm-up, so connection setup and teardown are
//! left out. h2load's req/s is the rate over the whole measured phase; the
//! proxy's CPU use is a rate over the window (CPU-seconds per second, 1.0
//! = one whole CPU); at a steady load the two describe the same work, and
//! requests per CPU-second of the proxy is their quotient.
//!
//! The kernel charges the TCP work of loopback traffic to the task whose
//! send triggered it (no IRQ time accounting here): the proxy pays for
//! part of the backends' and h2load's receive processing and they for part
//! of its. Every subject is measured the same way.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::load::Shape;

/// Clock ticks per second of `/proc/*/stat` times.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// utime + stime (clock ticks) from the text of `/proc/PID/stat`: the
/// fields after the command name (which may hold spaces and parentheses),
/// utime and stime being fields 14 and 15.
pub fn parse_pid_stat(text: &str) -> Option<u64> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Per-CPU `(busy, total)` ticks from the text of `/proc/stat`, indexed by
/// CPU number (a CPU missing from the text gets `(0, 0)`); busy is all but
/// idle and iowait.
pub fn parse_cpu_lines(text: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        let Some(cpu) = name.strip_prefix("cpu").and_then(|n| n.parse::<usize>().ok()) else { continue };
        // user nice system idle iowait irq softirq steal (guest time is
        // already counted in user).
        let v: Vec<u64> = words.take(8).filter_map(|w| w.parse().ok()).collect();
        if v.len() < 5 {
            continue;
        }
        let total: u64 = v.iter().sum();
        let busy = total - v[3] - v[4];
        if out.len() <= cpu {
            out.resize(cpu + 1, (0, 0));
        }
        out[cpu] = (busy, total);
    }
    out
}

fn pid_ticks(pid: u32) -> Option<u64> {
    parse_pid_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid` and its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let mut i = 0;
    while i < pids.len() {
        let path = format!("/proc/{0}/task/{0}/children", pids[i]);
        let text = std::fs::read_to_string(path).unwrap_or_default();
        pids.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        i += 1;
    }
    pids
}

/// Which processes are counted together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Proxy,
    Backends,
    Generator,
}

/// Cumulative counters at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    at: Instant,
    /// `(group, pid)` → utime + stime ticks.
    ticks: BTreeMap<(Group, u32), u64>,
    /// Per CPU `(busy, total)` ticks.
    cpus: Vec<(u64, u64)>,
}

impl Snapshot {
    pub fn take(groups: &[(Group, &[u32])]) -> Self {
        let mut ticks = BTreeMap::new();
        for (group, pids) in groups {
            for &pid in *pids {
                if let Some(t) = pid_ticks(pid) {
                    ticks.insert((*group, pid), t);
                }
            }
        }
        let cpus = parse_cpu_lines(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
        Self { at: Instant::now(), ticks, cpus }
    }
}

/// What was spent between two snapshots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    /// Wall-clock length, seconds.
    pub wall_s: f64,
    /// CPU-seconds of each group.
    pub proxy_s: f64,
    pub backends_s: f64,
    pub generator_s: f64,
    /// Busy fraction of each CPU (0–1; everything that ran on it, other
    /// programs on the machine included).
    pub cpu_busy: Vec<f64>,
}

impl Window {
    /// From `a` to `b`, ticks of `1 / ticks_per_s` seconds. A process seen
    /// only in `b` started inside the window: all its time counts; one seen
    /// only in `a` ended inside it: its last ticks are lost (the subjects'
    /// processes stay for the whole run).
    pub fn between(a: &Snapshot, b: &Snapshot, ticks_per_s: u64) -> Self {
        let mut w = Window { wall_s: b.at.saturating_duration_since(a.at).as_secs_f64(), ..Default::default() };
        let tick = 1.0 / ticks_per_s as f64;
        for (key, &later) in &b.ticks {
            let spent = later.saturating_sub(a.ticks.get(key).copied().unwrap_or(0)) as f64 * tick;
            match key.0 {
                Group::Proxy => w.proxy_s += spent,
                Group::Backends => w.backends_s += spent,
                Group::Generator => w.generator_s += spent,
            }
        }
        w.cpu_busy = b
            .cpus
            .iter()
            .zip(a.cpus.iter().chain(std::iter::repeat(&(0, 0))))
            .map(|(&(busy_b, total_b), &(busy_a, total_a))| {
                let total = total_b.saturating_sub(total_a);
                if total == 0 { 0.0 } else { busy_b.saturating_sub(busy_a) as f64 / total as f64 }
            })
            .collect();
        w
    }

    /// CPU-seconds per second of the window (1.0 = one whole CPU).
    pub fn rate(&self, cpu_s: f64) -> f64 {
        if self.wall_s > 0.0 { cpu_s / self.wall_s } else { 0.0 }
    }

    pub fn proxy_util(&self) -> f64 {
        self.rate(self.proxy_s)
    }

    pub fn backends_util(&self) -> f64 {
        self.rate(self.backends_s)
    }

    pub fn generator_util(&self) -> f64 {
        self.rate(self.generator_s)
    }

    /// Busy fraction of CPU `cpu`, if known.
    pub fn busy(&self, cpu: Option<usize>) -> Option<f64> {
        self.cpu_busy.get(cpu?).copied()
    }
}

/// Requests per CPU-second from a rate (req/s) and the CPU-seconds per
/// second spent on it; none when no CPU time was seen.
pub fn per_cpu_second(rps: f64, cpu_per_s: f64) -> Option<f64> {
    (cpu_per_s > 0.0 && rps.is_finite()).then(|| rps / cpu_per_s)
}

/// Takes the window's two snapshots while h2load runs: called at every
/// poll with h2load's PID and the time since it started.
pub struct Probe {
    from: Duration,
    to: Duration,
    proxy: Vec<u32>,
    backends: Vec<u32>,
    first: Option<Snapshot>,
    last: Option<Snapshot>,
}

impl Probe {
    /// For a run of `shape`: the window is 10%–90% of the measured phase.
    pub fn new(shape: &Shape, proxy: Vec<u32>, backends: Vec<u32>) -> Self {
        let (from, to) = window_bounds(shape.warm_up, shape.duration);
        Self { from, to, proxy, backends, first: None, last: None }
    }

    pub fn poll(&mut self, h2load: u32, elapsed: Duration) {
        let due = match (&self.first, &self.last) {
            (None, _) => elapsed >= self.from,
            (Some(_), None) => elapsed >= self.to,
            _ => false,
        };
        if !due {
            return;
        }
        let generator = [h2load];
        let snap = Snapshot::take(&[
            (Group::Proxy, &self.proxy),
            (Group::Backends, &self.backends),
            (Group::Generator, &generator),
        ]);
        if self.first.is_none() { self.first = Some(snap) } else { self.last = Some(snap) }
    }

    /// The window, once both snapshots were taken.
    pub fn window(&self) -> Option<Window> {
        Some(Window::between(self.first.as_ref()?, self.last.as_ref()?, clock_ticks()))
    }
}

/// From 10% to 90% of the measured phase, which starts after the warm-up.
pub fn window_bounds(warm_up: Duration, duration: Duration) -> (Duration, Duration) {
    (warm_up + duration / 10, warm_up + duration * 9 / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_stat() {
        // A command with spaces and a parenthesis; utime 1234, stime 567.
        let text = "4242 (nginx: worker (x)) S 4241 4241 4241 0 -1 4194624 1203 0 0 0 1234 567 0 0 20 0 1 0 \
                    8911 1000 200 18446744073709551615\n";
        assert_eq!(parse_pid_stat(text), Some(1801));
        assert_eq!(parse_pid_stat("4242 (x) S 1 2"), None);
        let stat = "cpu  300 0 100 500 100 0 0 0 0 0\n\
                    cpu0 200 0 50 100 50 0 10 5 0 0\n\
                    cpu1 100 0 50 400 50 0 0 0 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(parse_cpu_lines(stat), vec![(265, 415), (150, 600)]);
    }

    #[test]
    fn a_window_gives_cpu_rates_and_requests_per_cpu_second() {
        let at = Instant::now();
        let a = Snapshot {
            at,
            ticks: [((Group::Proxy, 10), 100), ((Group::Proxy, 11), 50), ((Group::Backends, 20), 7)].into(),
            cpus: vec![(1000, 2000), (500, 2000)],
        };
        let b = Snapshot {
            at: at + Duration::from_secs(2),
            // Proxy: 150 + 40 ticks; a new generator process: all 60 count.
            ticks: [
                ((Group::Proxy, 10), 250),
                ((Group::Proxy, 11), 90),
                ((Group::Backends, 20), 47),
                ((Group::Generator, 30), 60),
            ]
            .into(),
            cpus: vec![(1190, 2200), (600, 2200)],
        };
        let w = Window::between(&a, &b, 100);
        assert!((w.wall_s - 2.0).abs() < 1e-9);
        assert!((w.proxy_s - 1.9).abs() < 1e-9, "{w:?}");
        assert!((w.backends_s - 0.4).abs() < 1e-9);
        assert!((w.generator_s - 0.6).abs() < 1e-9);
        assert!((w.proxy_util() - 0.95).abs() < 1e-9);
        assert!((w.backends_util() - 0.2).abs() < 1e-9);
        assert_eq!(w.busy(Some(0)), Some(0.95));
        assert_eq!(w.busy(Some(1)), Some(0.5));
        assert_eq!(w.busy(None), None);
        // 19,000 req/s at 0.95 CPU-s per s: 20,000 requests per CPU-second.
        assert!((per_cpu_second(19_000.0, w.proxy_util()).unwrap() - 20_000.0).abs() < 1e-6);
        assert_eq!(per_cpu_second(19_000.0, 0.0), None);
        assert_eq!(Window::default().proxy_util(), 0.0);
    }

    #[test]
    fn the_window_is_the_middle_of_the_measured_phase() {
        let (from, to) = window_bounds(Duration::from_secs(1), Duration::from_secs(4));
        assert_eq!((from, to), (Duration::from_millis(1400), Duration::from_millis(4600)));
    }

    #[test]
    fn this_process_is_seen_spending_cpu() {
        let me = [std::process::id()];
        let a = Snapshot::take(&[(Group::Proxy, &me)]);
        let started = Instant::now();
        let mut x = 0u64;
        // Spins until a tick is charged (at most 5 s on a crowded machine).
        let w = loop {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
            }
            let w = Window::between(&a, &Snapshot::take(&[(Group::Proxy, &me)]), clock_ticks());
            if w.proxy_s > 0.0 || started.elapsed() > Duration::from_secs(5) {
                break w;
            }
        };
        assert!(w.proxy_s > 0.0 && w.wall_s > 0.0, "{w:?}");
        assert!(!w.cpu_busy.is_empty());
        assert_eq!(tree(std::process::id())[0], std::process::id());
    }
}
