//! `lb-bench soak`: lb under constant L4 and L7 load on the netns bed while
//! its configuration changes every second and node1's agent is replaced
//! every minute; the agents' fds and RSS, and conntrack fill, over the run.
//! It passes when nothing failed and node2's agent (never restarted) kept
//! flat fds and RSS after the warm-up ([`verdict`]).
//!
//! - [`churn`]: the manifests directory and its changes;
//! - [`load`]: the clients and their failures;
//! - [`agents`]: starting and replacing agents, reading their processes;
//! - [`verdict`]: the flatness rule; [`record`], `chart`: the report.

pub mod agents;
mod chart;
pub mod churn;
pub mod load;
pub mod params;
pub mod record;
pub mod verdict;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use lb_testbed::TestBed;
use lb_testbed::l7::TestCa;

use self::agents::{Agents, ConntrackSample, LONG_LIVED, NODES, Restart, Sample};
use self::churn::Churn;
use self::load::{Failures, LoadTally, Window};
use self::params::Params;
use self::verdict::{Allowance, flatness};
use crate::RunOptions;
use crate::meta::Meta;

pub use record::SoakReport;

/// How long the agents may take to serve every load's target at start.
const SERVED_TIMEOUT: Duration = Duration::from_secs(60);

/// What the threads of one run brought back.
struct Recorded {
    load_s: f64,
    loads: Vec<LoadTally>,
    restarts: Vec<Restart>,
    samples: Vec<Sample>,
    conntrack: Vec<ConntrackSample>,
    /// Files written, and when each step was (seconds from the start).
    changes: (u64, Vec<f64>),
}

pub fn run(opts: &RunOptions) -> Result<SoakReport> {
    lb_testbed::require_root()?;
    let params = Params::for_profile(opts.profile);
    let mut meta = Meta::collect();
    let lb = lb_testbed::lb_bin()?;
    meta.tool("lb", &lb.to_string_lossy(), &["--version"]);
    let manifests = tempfile::tempdir()?;
    let ca = Arc::new(TestCa::new()?);
    let mut churn = Churn::prepare(manifests.path(), ca.clone()).context("writing the manifests")?;
    let bed = TestBed::new().context("building the bed")?;
    bed.start_echo_pods()?;
    let mut agents = Agents::start(&bed, manifests.path())?;
    let loads = load::loads(&params);
    load::wait_until_served(bed.client_ns(), &loads, &ca, SERVED_TIMEOUT)?;
    eprintln!(
        "[soak] {} s of load, changes every {} ms, node1's agent replaced at {:?} s",
        params.duration_s,
        params.change_every_ms,
        params.restart_times()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let window = Window { start, until: start + params.duration(), stop: stop.clone() };
    let failures = Arc::new(Failures::default());
    let pids = agents.pids();
    let recorded = std::thread::scope(|s| -> Result<Recorded> {
        // However this scope ends, the threads are told to stop first.
        let _stop = StopOnDrop(&stop);
        let load = s.spawn(|| stopping_on_error(&stop, load::run(bed.client_ns(), &loads, &ca, &window, &failures)));
        let processes = s.spawn(|| sample_processes(&pids, &params, &window));
        let conntrack = s.spawn(|| sample_conntrack(&bed, &params, &window));
        let changes = s.spawn(|| stopping_on_error(&stop, change(&mut churn, &params, &window)));
        let restarts = replace_agents(&mut agents, &params, &window, &failures);
        let load_s = start.elapsed().as_secs_f64().min(params.duration_s as f64);
        stop.store(true, Ordering::Relaxed);
        let joined = |what: &str| anyhow!("the {what} thread panicked");
        let loads = load.join().map_err(|_| joined("load"))?.context("the load")?;
        let samples = processes.join().map_err(|_| joined("sampler"))?;
        let conntrack = conntrack.join().map_err(|_| joined("conntrack"))?;
        let changes = changes.join().map_err(|_| joined("change"))?.context("the changes")?;
        Ok(Recorded { load_s, loads, restarts: restarts?, samples, conntrack, changes })
    })?;
    agents.check_running()?;
    drop(agents);
    drop(bed);
    Ok(report(opts, meta, &params, recorded, failures.take()))
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `result`, and if it is an error, every thread told to stop.
fn stopping_on_error<T>(stop: &AtomicBool, result: Result<T>) -> Result<T> {
    if result.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    result
}

/// Replaces node1's agent at each restart time until the window closes;
/// fails if an agent exits.
fn replace_agents(agents: &mut Agents<'_>, p: &Params, window: &Window, failures: &Failures) -> Result<Vec<Restart>> {
    let mut due = p.restart_times().into_iter().peekable();
    let mut restarts = Vec::new();
    let mut next_log = 0u64;
    while window.open() {
        agents.check_running()?;
        let t = window.t();
        if let Some(&at) = due.peek()
            && t >= at as f64
        {
            due.next();
            let r = agents.restart(t).with_context(|| format!("replacing node1's agent at {t:.0} s"))?;
            eprintln!(
                "[soak] {t:.0} s: node1's agent {} → {} (ready after {:.2} s, old one drained in {:.2} s, data path taken over {:.2} s after SIGTERM)",
                r.old_pid, r.new_pid, r.ready_s, r.stop_s, r.takeover_s
            );
            restarts.push(r);
        }
        if t as u64 >= next_log {
            eprintln!("[soak] {t:.0} s: {} failures so far", failures.count());
            next_log += 30;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(restarts)
}

/// One step of changes every `change_every` while the window is open:
/// (files written, when each step was).
fn change(churn: &mut Churn, p: &Params, window: &Window) -> Result<(u64, Vec<f64>)> {
    let every = p.change_every();
    let max_steps = p.duration().as_millis() as usize / p.change_every_ms.max(1) as usize + 2;
    let mut files = 0;
    let mut steps = Vec::new();
    let mut next = window.start + every;
    while window.open() && steps.len() < max_steps {
        sleep_until(next);
        next += every;
        if !window.open() {
            break;
        }
        steps.push(window.t());
        files += churn.step().with_context(|| format!("change step {}", steps.len()))?;
    }
    Ok((files, steps))
}

/// What happened just before `t_s`: the last change step (and what it did
/// to the pods), and a restart of node1's agent if one was under way.
fn context(t_s: f64, steps: &[f64], restarts: &[Restart]) -> String {
    let mut out = match steps.iter().rposition(|s| *s <= t_s) {
        Some(i) => format!("{:.2} s after step {} ({})", t_s - steps[i], i + 1, churn::describe_step(i as u64 + 1)),
        None => "before the first change".into(),
    };
    if let Some(r) = restarts.iter().rev().find(|r| r.t_s <= t_s && t_s <= r.t_s + r.ready_s + r.takeover_s + 1.0) {
        out.push_str(&format!("; {:.2} s into the replacement of node1's agent", t_s - r.t_s));
    }
    out
}

/// Each node's agent's fds and RSS every `sample_every` (the PIDs follow
/// the restarts); a reading of a process that just ended is skipped.
fn sample_processes(pids: &[AtomicU32; 2], p: &Params, window: &Window) -> Vec<Sample> {
    let every = p.sample_every();
    let max = 2 * p.duration().as_millis() as usize / p.sample_every_ms.max(1) as usize + 10;
    let mut samples = Vec::new();
    let mut next = window.start;
    while window.open() && samples.len() < max {
        let t_s = window.t();
        for (node, pid) in NODES.iter().zip(pids) {
            let pid = pid.load(Ordering::Relaxed);
            if let Some((fds, rss_kib)) = agents::read_process(pid) {
                samples.push(Sample { t_s, node: node.to_string(), pid, fds, rss_kib });
            }
        }
        next += every;
        sleep_until(next);
    }
    samples
}

/// Each node's conntrack fill every `conntrack_every_s` seconds.
fn sample_conntrack(bed: &TestBed, p: &Params, window: &Window) -> Vec<ConntrackSample> {
    let every = Duration::from_secs(p.conntrack_every_s.max(1));
    let mut samples = Vec::new();
    let mut next = window.start;
    let max = 2 * (p.duration_s / p.conntrack_every_s.max(1)) as usize + 10;
    while window.open() && samples.len() < max {
        for node in NODES {
            if let Some((entries, capacity, backend_gone)) = agents::read_conntrack(bed, node) {
                samples.push(ConntrackSample { t_s: window.t(), node: node.into(), entries, capacity, backend_gone });
            }
        }
        next += every;
        while window.open() && Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    samples
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// The report: the criteria judged, the notes written.
fn report(opts: &RunOptions, meta: Meta, p: &Params, r: Recorded, mut failures: Vec<load::Failure>) -> SoakReport {
    for f in &mut failures {
        f.context = context(f.t_s, &r.changes.1, &r.restarts);
    }
    let warm_up = p.warm_up_s as f64;
    let fds = record::long_lived_series(&r.samples, |s| s.fds as f64);
    let rss = record::long_lived_series(&r.samples, |s| s.rss_kib as f64 / 1024.0);
    let flat = vec![
        flatness(LONG_LIVED, "fds", &fds, warm_up, r.load_s, Allowance::Absolute(p.fd_slack as f64)),
        flatness(LONG_LIVED, "rss_mib", &rss, warm_up, r.load_s, Allowance::Fraction(p.rss_growth)),
    ];
    let mut failed_criteria = Vec::new();
    let failed: u64 = r.loads.iter().map(|l| l.failed).sum();
    if failed > 0 {
        failed_criteria.push(format!("{failed} connections, exchanges or requests failed (0 allowed)"));
    }
    for f in flat.iter().filter(|f| !f.pass) {
        failed_criteria.push(format!("{}'s {} is not flat: {}", f.agent, f.metric, f.reason));
    }
    let expected = p.restart_times().iter().filter(|t| (**t as f64) < r.load_s).count();
    if r.restarts.len() < expected {
        failed_criteria.push(format!("{} of {expected} restarts happened", r.restarts.len()));
    }
    let mut report = SoakReport {
        profile: opts.profile,
        meta,
        params: serde_json::to_value(p).unwrap_or_default(),
        load_s: r.load_s,
        loads: r.loads,
        failures,
        changes: r.changes.0,
        change_steps: r.changes.1.len() as u64,
        restarts: r.restarts,
        samples: r.samples,
        conntrack: r.conntrack,
        flatness: flat,
        pass: failed_criteria.is_empty(),
        failed_criteria,
        notes: Vec::new(),
    };
    report.notes = notes(p);
    report
}

fn notes(p: &Params) -> Vec<String> {
    vec![
        "The bed: the client, two nodes and three echo pods (two on node1, one on node2) in network namespaces; `lb run --manifests` on both nodes, watching one directory (a copy of manifests/examples).".into(),
        format!(
            "Load, from the client: short TCP connections (an HTTP GET each) at {} /s to each of node1's and node2's NodePort 30007 and the LoadBalancer IP 192.168.1.150:8088 (routed via node1), UDP exchanges at {} /s to node1's NodePort 30053; HTTP at {} /s per client to the ingress IP (via node1's proxy; a new connection per request, and one kept alive) and to node2's NodePort 30080 (h2c kept alive, and new connections), HTTPS at {} /s per client to the ingress IP:443 and node2's 30443, each a new TLS connection verified against the CA that signs the rotated Secret. A kept-alive request that meets its connection closing is retried once (counted as retried); every other error or non-200 answer is a failure.",
            p.tcp_rate, p.udp_rate, p.http_rate, p.https_rate
        ),
        "Changes every second, all four kinds each step: every EndpointSlice of the loaded Services takes one pod (rotating) through ready → terminating (ready: false, serving: true) → removed → ready over three steps; a Service churn-N with its slice is added on even steps and removed on odd ones; the churn.test Ingress's second path is renamed while the /stable path the load asks stays; the TLS Secret of https-example.foo.com gets a new certificate.".into(),
        "node1's agent is replaced as an upgrade replaces it: a new agent beside it with the same flags and its own --ready-file; once the file exists (proxy listening, data path standing by), SIGTERM to the old one; the new one then takes the data path over. node2's agent runs from start to end: its series are the ones judged for flatness.".into(),
        format!(
            "Flat: after the {} s warm-up the samples are cut by time into thirds; the last third's highest fd count may exceed the first third's highest by at most {} fds, its highest RSS the first third's highest by at most {:.0}%.",
            p.warm_up_s, p.fd_slack, p.rss_growth * 100.0
        ),
        "Conntrack fill is reported, not judged: entries of finished flows stay in the LRU table until it needs their room (a closed TCP flow is ignored after 10 s, a UDP one after 60 s, but not deleted), so the count rises with the number of flows seen until the table is full.".into(),
    ]
}
