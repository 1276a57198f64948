//! The l7 run: backends, subjects, interleaved rounds, the report.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lb_testbed::Process;
use lb_testbed::l7::net::wait_for_port;
use lb_testbed::l7::{TestCa, unique_loopback_ip};
use serde_json::json;

use super::backend::{self, StaticBackend};
use super::cpu::{self, Window};
use super::load::{self, Proto};
use super::model::{BACKEND_PORT, IngressSet};
use super::percore::{self, CpuLog, Direct, DirectRun};
use super::plan::{Plan, ReloadRun, SetSize};
use super::proxy::{Kind, Placement, Proxy};
use super::reload;
use super::rows::{
    MAX_RPS, MEMORY, P50, P99, RELOAD_FAILED, RELOAD_VISIBLE, RELOAD_WS, RPS_PER_CPU, Rows, UPGRADE_FAILED,
};
use super::upgrade;
use crate::meta::Meta;
use crate::{Report, RunOptions};

/// The echo pods the Services of the reload, upgrade and memory tests have
/// as endpoints (the throughput and latency runs' Services have the
/// [`StaticBackend`]'s addresses).
struct Pods {
    ips: Vec<Ipv4Addr>,
    _procs: Vec<Process>,
}

fn start_pods(dir: &Path, n: usize) -> Result<Pods> {
    let bin = lb_testbed::lb_echo_bin()?;
    let (mut ips, mut procs) = (Vec::new(), Vec::new());
    for i in 0..n {
        let ip = unique_loopback_ip();
        let addr = SocketAddr::from((ip, BACKEND_PORT)).to_string();
        let name = format!("echo-{i}");
        // No --verbose: a log line per request would cost the backends' CPU.
        let args = ["--name", &name, "--http", &addr, "--udp", &addr];
        let p = Process::spawn(dir, &name, &bin, &args, Duration::ZERO)?;
        wait_for_port(SocketAddr::from((ip, BACKEND_PORT)), Duration::from_secs(10), || p.is_running())
            .with_context(|| format!("echo pod {name}\n{}", p.logs(2048)))?;
        ips.push(ip);
        procs.push(p);
    }
    Ok(Pods { ips, _procs: procs })
}

/// With two CPUs or more: this process (so the load generator and the
/// backends it starts) on CPU 1, the proxies on CPU 0.
fn pin() -> Result<Placement> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cpus < 2 {
        return Ok(Placement { proxy_cpu: None });
    }
    let mut set = nix::sched::CpuSet::new();
    set.set(1).context("CPU set")?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).context("pinning lb-bench to CPU 1")?;
    Ok(Placement { proxy_cpu: Some(0) })
}

/// The set of `size` with Services whose endpoints are `ips`.
fn make_set(size: SetSize, ips: &[Ipv4Addr], ca: &TestCa) -> Result<IngressSet> {
    match size {
        SetSize::Few => IngressSet::few(ips, ca),
        SetSize::Many(n) => IngressSet::many(n, ips, ca),
    }
}

/// Every subject serving `set`.
fn start_all(rt: &tokio::runtime::Runtime, set: &IngressSet, dir: &Path, place: &Placement) -> Result<Vec<Proxy>> {
    Kind::ALL.into_iter().map(|kind| rt.block_on(Proxy::start(kind, set, dir, place))).collect()
}

/// Subjects in the order of round `r`: rotated, so none is always first.
fn order(r: usize) -> Vec<usize> {
    (0..Kind::ALL.len()).map(|i| (i + r) % Kind::ALL.len()).collect()
}

pub fn run(opts: &RunOptions) -> Result<Report> {
    let plan = Plan::new(opts.profile);
    // Before pinning: Meta counts the CPUs this process may use.
    let mut meta = Meta::collect();
    let place = pin()?;
    let work = tempfile::Builder::new().prefix("lb-bench-l7-").tempdir().context("creating the work directory")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    meta.tool("nginx", "nginx", &["-v"]);
    meta.tool("haproxy", "haproxy", &["-v"]);
    meta.tool("h2load", load::H2LOAD, &["--version"]);
    let pods_dir = work.path().join("pods");
    std::fs::create_dir_all(&pods_dir)?;
    let pods = start_pods(&pods_dir, plan.pods)?;
    let ca = TestCa::new()?;
    let mut rows = Rows::default();
    let mut notes = Vec::new();
    let mut cpu_log = CpuLog::default();
    // The static backend of the throughput and latency runs, on this
    // process's CPU (the generator's), and what h2load reaches without a
    // proxy.
    let traffic_backend = if plan.runs("traffic") {
        let b = StaticBackend::start(&work.path().join("backend"), plan.pods)?;
        let direct = direct(&plan, &pods, &b, &place, work.path())?;
        Some((b, direct))
    } else {
        None
    };
    for &size in &plan.sets {
        let started = Instant::now();
        if let Some((backend, _)) = &traffic_backend {
            let set = make_set(size, &backend.ips, &ca)?;
            let proxies = start_all(&rt, &set, work.path(), &place)?;
            // What counting requests costs: lb with them off, beside the
            // others in the few-hosts plain-text max-rate runs.
            let metrics_off = match size {
                SetSize::Few => Some(rt.block_on(Proxy::start(Kind::LbNoRequestMetrics, &set, work.path(), &place))?),
                SetSize::Many(_) => None,
            };
            let env = Traffic { plan: &plan, place: &place, backend, dir: work.path() };
            traffic(&env, &set, &proxies, metrics_off.as_ref(), &mut rows, &mut cpu_log, &mut notes)?;
        }
        let reloads: Vec<&ReloadRun> = plan.reloads.iter().filter(|r| r.set == size && plan.runs("reload")).collect();
        if !reloads.is_empty() {
            // Its WebSockets need lb-echo's echo.
            let set = make_set(size, &pods.ips, &ca)?;
            let mut proxies = start_all(&rt, &set, work.path(), &place)?;
            for reload in reloads {
                changes(&rt, reload, &set, &mut proxies, &mut rows, &mut notes)?;
            }
        }
        eprintln!("[l7] set {size:?} done in {:.0?}", started.elapsed());
    }
    let direct = traffic_backend.map(|(b, direct)| {
        drop(b);
        direct
    });
    if plan.runs("upgrade") {
        let set = make_set(SetSize::Few, &pods.ips, &ca)?;
        upgrades(&rt, &plan, &set, &place, work.path(), &mut rows, &mut notes)?;
    }
    if plan.runs("memory") {
        memory(&rt, &plan, &pods, &ca, &place, work.path(), &mut rows)?;
    }
    let mut report = Report::new("l7", opts.profile, meta, params(&plan, &place, &pods, direct.as_ref()));
    rows.into_report(&mut report);
    let cpu_notes = cpu_log.notes(direct.as_ref());
    for n in standing_notes(&plan, &place).into_iter().chain(cpu_notes).chain(notes) {
        report.note(n);
    }
    Ok(report)
}

/// h2load without a proxy, from this process's CPU (the generator's): to
/// one lb-echo pod (HTTP/1.1, plaintext), and to the static backend with
/// every max-rate shape — the ceiling of the generator and backend's CPU.
fn direct(plan: &Plan, pods: &Pods, backend: &StaticBackend, place: &Placement, dir: &Path) -> Result<Direct> {
    let target = |tls| {
        let t = super::model::Target { host: "direct.test".into(), paths: vec!["/".into()] };
        load::uris_file(dir, &t, tls, if tls { backend::TLS_PORT } else { BACKEND_PORT })
    };
    let echo = SocketAddr::from((pods.ips[0], BACKEND_PORT));
    let echo_h1_rps = load::run(echo, Proto::H1, &plan.max_h1, &target(false)?, None, None)?.ok_rps;
    eprintln!("[l7] h2load straight to one lb-echo pod: {echo_h1_rps:.0} req/s (h1)");
    let mut runs = Vec::new();
    for &(proto, tls) in &plan.max_scenarios {
        let shape = plan.max_shape(proto);
        let mut probe = cpu::Probe::new(shape, Vec::new(), backend.pids());
        let o = load::run(
            backend.addr(tls),
            proto,
            shape,
            &target(tls)?,
            None,
            Some(&mut |pid: u32, t: Duration| probe.poll(pid, t)),
        )?;
        if o.ok == 0 {
            bail!("the static backend answered no request with 2xx ({} {} tls={tls})", o.failed, proto.as_str());
        }
        let w = probe.window().unwrap_or_default();
        let run = DirectRun {
            proto,
            tls,
            rps: o.ok_rps,
            backend_cpu: w.backends_util(),
            h2load_cpu: w.generator_util(),
            generator_cpu_busy: w.busy(generator_cpu(place)),
        };
        eprintln!(
            "[l7] h2load straight to the static backend, {} tls={tls}: {:.0} req/s (backend {:.2} CPU, h2load {:.2}, \
             generator CPU busy {:.2})",
            proto.as_str(),
            run.rps,
            run.backend_cpu,
            run.h2load_cpu,
            run.generator_cpu_busy.unwrap_or(f64::NAN)
        );
        runs.push(run);
    }
    Ok(Direct { echo_h1_rps, backend: runs })
}

/// The CPU h2load and the backends run on (this process's), if pinned.
fn generator_cpu(place: &Placement) -> Option<usize> {
    place.proxy_cpu.map(|_| 1)
}

fn scenario(set: &IngressSet, proto: Proto, tls: bool) -> Vec<(&'static str, String)> {
    vec![("set", set.label.clone()), ("proto", proto.as_str().into()), ("tls", if tls { "on" } else { "off" }.into())]
}

/// What the traffic runs share.
struct Traffic<'a> {
    plan: &'a Plan,
    place: &'a Placement,
    backend: &'a StaticBackend,
    dir: &'a Path,
}

/// The max-rate and fixed-rate runs, subjects interleaved.
fn traffic(
    env: &Traffic,
    set: &IngressSet,
    proxies: &[Proxy],
    metrics_off: Option<&Proxy>,
    rows: &mut Rows,
    cpu_log: &mut CpuLog,
    notes: &mut Vec<String>,
) -> Result<()> {
    let (plan, dir) = (env.plan, env.dir);
    let backend_pids = env.backend.pids();
    for r in 0..plan.rounds {
        for &(proto, tls) in &plan.max_scenarios {
            let port = proxies[0].addr(tls).port();
            let uris = load::uris_file(dir, set.target(tls), tls, port)?;
            let mut subjects: Vec<&Proxy> = order(r).into_iter().map(|i| &proxies[i]).collect();
            if let Some(off) = metrics_off {
                // Right after lb in odd rounds, last in even ones.
                let at = if r % 2 == 1 {
                    subjects.iter().position(|p| p.kind == Kind::Lb).map_or(0, |i| i + 1)
                } else {
                    subjects.len()
                };
                subjects.insert(at, off);
            }
            for p in subjects {
                let shape = plan.max_shape(proto);
                let Some((o, window)) = measure(p, tls, proto, shape, &uris, None, Some(&backend_pids), notes) else {
                    continue;
                };
                max_rate_sample(env, set, p, proto, tls, &o, window, rows, cpu_log, notes);
                p.truncate_logs();
            }
        }
        for &(proto, tls) in &plan.latency_scenarios {
            let port = proxies[0].addr(tls).port();
            let uris = load::uris_file(dir, set.target(tls), tls, port)?;
            for i in order(r) {
                let p = &proxies[i];
                let log = dir.join("h2load-requests.log");
                let shape = plan.latency_shape(proto);
                let Some((o, _)) = measure(p, tls, proto, shape, &uris, Some(&log), None, notes) else {
                    continue;
                };
                if o.ok_rps < 0.9 * f64::from(plan.latency_rps) {
                    notes.push(format!(
                        "{} {} tls={tls} on {}: the fixed-rate run reached {:.0} of {} req/s, so its latency is \
                         measured at saturation",
                        p.kind.subject(),
                        proto.as_str(),
                        set.label,
                        o.ok_rps,
                        plan.latency_rps
                    ));
                }
                let mut scen = scenario(set, proto, tls);
                scen.push(("rate", format!("{} req/s", plan.latency_rps)));
                let extra = [("failed", o.failed as f64), ("achieved_rps", o.ok_rps)];
                rows.add(P50, &scen, p.kind, o.p50_ms, &extra);
                rows.add(P99, &scen, p.kind, o.p99_ms, &extra);
                p.truncate_logs();
            }
        }
    }
    Ok(())
}

/// A max-rate run's samples: req/s, and req per CPU-second of the proxy
/// with the CPU figures of its window.
#[allow(clippy::too_many_arguments)]
fn max_rate_sample(
    env: &Traffic,
    set: &IngressSet,
    p: &Proxy,
    proto: Proto,
    tls: bool,
    o: &load::Outcome,
    window: Option<Window>,
    rows: &mut Rows,
    cpu_log: &mut CpuLog,
    notes: &mut Vec<String>,
) {
    let scen = scenario(set, proto, tls);
    let mut extra = vec![("failed", o.failed as f64), ("requests", o.done as f64)];
    let per_cpu = window.as_ref().and_then(|w| Some((w, cpu::per_cpu_second(o.ok_rps, w.proxy_util())?)));
    let Some((w, per_cpu)) = per_cpu else {
        eprintln!("[l7] {} {} {} tls={tls}: {:.0} req/s", set.label, p.kind.subject(), proto.as_str(), o.ok_rps);
        notes.push(format!(
            "{} {} tls={tls} on {}: no CPU window this round (h2load ended early or the proxy's CPU time was not seen)",
            p.kind.subject(),
            proto.as_str(),
            set.label
        ));
        rows.add(MAX_RPS, &scen, p.kind, o.ok_rps, &extra);
        return;
    };
    let (proxy_cpu, gen_cpu) = (env.place.proxy_cpu, generator_cpu(env.place));
    eprintln!(
        "[l7] {} {} {} tls={tls}: {:.0} req/s, proxy {:.2} CPU → {per_cpu:.0} req per CPU-s (backend {:.2}, h2load \
         {:.2}, generator CPU busy {:.2})",
        set.label,
        p.kind.subject(),
        proto.as_str(),
        o.ok_rps,
        w.proxy_util(),
        w.backends_util(),
        w.generator_util(),
        w.busy(gen_cpu).unwrap_or(f64::NAN)
    );
    extra.push(("proxy_cpu", w.proxy_util()));
    rows.add(MAX_RPS, &scen, p.kind, o.ok_rps, &extra);
    let mut extra = vec![
        ("req_s", o.ok_rps),
        ("proxy_cpu", w.proxy_util()),
        ("backend_cpu", w.backends_util()),
        ("h2load_cpu", w.generator_util()),
        ("window_s", w.wall_s),
    ];
    extra.extend(w.busy(proxy_cpu).map(|b| ("proxy_cpu_busy", b)));
    extra.extend(w.busy(gen_cpu).map(|b| ("generator_cpu_busy", b)));
    rows.add(RPS_PER_CPU, &scen, p.kind, per_cpu, &extra);
    cpu_log.add(percore::Sample {
        scenario: percore::label(&set.label, proto, tls),
        proto,
        tls,
        subject: p.kind.subject(),
        rps: o.ok_rps,
        window: w.clone(),
        proxy_cpu,
        generator_cpu: gen_cpu,
    });
}

/// One h2load run against `p`; with `backends`, the CPU of `p`, of those
/// and of h2load in the middle of the run. A run that fails (ran over its
/// time, no 2xx answer) is repeated once after a pause; if that fails too,
/// the round has no sample of `p` (noted; a subject with no sample at all
/// makes the report invalid).
#[allow(clippy::too_many_arguments)]
fn measure(
    p: &Proxy,
    tls: bool,
    proto: Proto,
    shape: &load::Shape,
    uris: &Path,
    log: Option<&Path>,
    backends: Option<&[u32]>,
    notes: &mut Vec<String>,
) -> Option<(load::Outcome, Option<Window>)> {
    let what = if shape.rps_per_client.is_some() { "fixed rate" } else { "max rate" };
    let once = || {
        let mut probe = backends.map(|b| cpu::Probe::new(shape, p.pids(), b.to_vec()));
        let mut poll = |pid: u32, t: Duration| {
            if let Some(probe) = probe.as_mut() {
                probe.poll(pid, t)
            }
        };
        let o = load::run(p.addr(tls), proto, shape, uris, log, Some(&mut poll))?;
        check(p, &o, what)?;
        anyhow::Ok((o, probe.and_then(|probe| probe.window())))
    };
    let mut first_error = None;
    for attempt in 0..2 {
        match once() {
            Ok(o) => return Some(o),
            Err(e) => {
                eprintln!("[l7] {} {what} run failed (attempt {}): {e:#}", p.kind.subject(), attempt + 1);
                first_error.get_or_insert_with(|| format!("{e:#}").lines().next().unwrap_or("").to_string());
                if attempt == 0 {
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        }
    }
    let e = first_error.unwrap_or_default();
    notes.push(format!("{} {} tls={tls} {what}: no sample this round, twice: {e}", p.kind.subject(), proto.as_str()));
    None
}

/// A run where nothing succeeded measured nothing: fail with the logs.
fn check(p: &Proxy, o: &load::Outcome, what: &str) -> Result<()> {
    if o.ok == 0 {
        bail!(
            "{} answered no request with 2xx in the {what} run ({} failed)\n{}",
            p.kind.subject(),
            o.failed,
            p.logs()
        );
    }
    Ok(())
}

fn changes(
    rt: &tokio::runtime::Runtime,
    plan: &ReloadRun,
    set: &IngressSet,
    proxies: &mut [Proxy],
    rows: &mut Rows,
    notes: &mut Vec<String>,
) -> Result<()> {
    let scen = [("set", set.label.clone()), ("changes", plan.spec.changes.to_string())];
    for r in 0..plan.rounds {
        for i in order(r) {
            let p = &mut proxies[i];
            let o = rt.block_on(reload::run(p, set, &plan.spec))?;
            let name = p.kind.subject();
            eprintln!(
                "[l7] reload {name}: {}/{} changes took effect (median {:.0} ms), {} of {} requests failed \
                 ({} on a kept-alive connection closed before the answer), {} of {} WebSockets closed",
                o.applied,
                plan.spec.changes,
                o.apply_ms,
                o.failed,
                o.requests,
                o.closed_before_answer,
                o.ws_closed,
                o.websockets
            );
            if o.applied < plan.spec.changes {
                notes.push(format!(
                    "{name}: only {} of {} changes took effect within {:?} in round {r}",
                    o.applied, plan.spec.changes, plan.spec.change_timeout
                ));
            }
            let extra = [
                ("requests", o.requests as f64),
                ("reconnects", o.reconnects as f64),
                ("failed_closed_before_answer", o.closed_before_answer as f64),
                ("changes_applied", o.applied as f64),
                ("change_visible_ms", o.apply_ms),
            ];
            rows.add(RELOAD_FAILED, &scen, p.kind, o.failed as f64, &extra);
            let extra = [("websockets", o.websockets as f64)];
            rows.add(RELOAD_WS, &scen, p.kind, o.ws_closed as f64, &extra);
            rows.add(RELOAD_VISIBLE, &scen[..1], p.kind, o.apply_ms, &[]);
            p.truncate_logs();
        }
    }
    Ok(())
}

/// Upgrades under load: each subject in turn, with `tcp_migrate_req` at
/// each of the plan's values.
fn upgrades(
    rt: &tokio::runtime::Runtime,
    plan: &Plan,
    set: &IngressSet,
    place: &Placement,
    dir: &Path,
    rows: &mut Rows,
    notes: &mut Vec<String>,
) -> Result<()> {
    let spec = &plan.upgrade.spec;
    // nginx's new master outlives the old one, its parent: reparented to
    // this process, which reaps it.
    nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    let migrate = upgrade::MigrateReq::save();
    for r in 0..plan.upgrade.rounds {
        for &value in &spec.migrate_req {
            let scen = [("tcp_migrate_req", value.to_string()), ("upgrades", spec.upgrades.to_string())];
            for i in order(r) {
                let kind = Kind::ALL[i];
                let o = rt.block_on(upgrade::run(kind, set, dir, place, &migrate, value, spec))?;
                eprintln!(
                    "[l7] upgrade {} x{} (tcp_migrate_req={value}): {} of {} requests failed ({} of {} on new \
                     connections, {} kept-alive of which {} closed before the answer), handover {:.0} ms",
                    kind.subject(),
                    spec.upgrades,
                    o.failed,
                    o.requests,
                    o.new_connection_failed,
                    o.new_connection_requests,
                    o.keep_alive_failed,
                    o.closed_before_answer,
                    o.handover_ms
                );
                let extra = [
                    ("requests", o.requests as f64),
                    ("new_connection_requests", o.new_connection_requests as f64),
                    ("new_connection_failed", o.new_connection_failed as f64),
                    ("keep_alive_failed", o.keep_alive_failed as f64),
                    ("failed_closed_before_answer", o.closed_before_answer as f64),
                    ("reconnects", o.reconnects as f64),
                    ("handover_ms", o.handover_ms),
                ];
                rows.add(UPGRADE_FAILED, &scen, kind, o.failed as f64, &extra);
            }
        }
    }
    drop(migrate);
    notes.push(format!(
        "Upgrade test: {} upgrades in a row per subject under the reload test's load ({} kept-alive connections at {} \
         req/s each) plus {} clients opening a new connection per request ({} req/s each), counted with the reload \
         test's rules. lb: a new `lb run` beside the old one with identical flags, ready, then SIGTERM to the old \
         one; nginx: binary upgrade (SIGUSR2 to the master, then SIGQUIT to the old master once the new one's worker \
         runs; nginx as a daemon); HAProxy: `haproxy -sf OLDPID` (no master-worker, no `-x`). Each with \
         net.ipv4.tcp_migrate_req at {:?}.",
        spec.upgrades,
        spec.keep_alive,
        spec.rps_per_connection,
        spec.new_connection,
        spec.new_connection_rps,
        spec.migrate_req
    ));
    Ok(())
}

/// Each subject alone with N Ingresses: started, a few requests served,
/// then the RSS of all its processes.
fn memory(
    rt: &tokio::runtime::Runtime,
    plan: &Plan,
    pods: &Pods,
    ca: &TestCa,
    place: &Placement,
    dir: &Path,
    rows: &mut Rows,
) -> Result<()> {
    for r in 0..plan.memory_rounds {
        for &n in &plan.memory_ingresses {
            let set = IngressSet::many(n, &pods.ips, ca)?;
            for i in order(r) {
                let kind = Kind::ALL[i];
                let started = Instant::now();
                let p = rt.block_on(Proxy::start(kind, &set, dir, place))?;
                let ready_s = started.elapsed().as_secs_f64();
                rt.block_on(async {
                    for tls in [false, true, false, true] {
                        for path in &set.target(tls).paths {
                            p.status(&set.target(tls).host, path, tls).await?;
                        }
                    }
                    anyhow::Ok(())
                })?;
                let mib = p.rss_mib();
                eprintln!(
                    "[l7] memory {} with {n} Ingresses: {mib:.1} MiB (serving after {ready_s:.1} s)",
                    kind.subject()
                );
                let scen = [("ingresses", n.to_string())];
                rows.add(MEMORY, &scen, kind, mib, &[("processes", p.pids().len() as f64), ("ready_s", ready_s)]);
                let pdir = p.dir.clone();
                drop(p);
                let _ = std::fs::remove_dir_all(pdir);
            }
        }
    }
    Ok(())
}

fn params(plan: &Plan, place: &Placement, pods: &Pods, direct: Option<&Direct>) -> serde_json::Value {
    let uris = Path::new("URIS");
    let addr: SocketAddr = "127.0.0.1:8000".parse().expect("address");
    let cmd = |proto, shape| format!("h2load {}", load::args(addr, proto, shape, uris, None).join(" "));
    json!({
        "plan": plan,
        "proxy_cpu": place.proxy_cpu,
        "generator_and_backends_cpu": place.proxy_cpu.map(|_| 1),
        "echo_pods": pods.ips.len(),
        "traffic_backend": format!("nginx, worker_processes 1, on the generator CPU, `return 200 \"{}\"` on {} loopback addresses, no access log", backend::BODY.escape_default(), plan.pods),
        "direct": direct,
        "cpu_window": "utime+stime from /proc/PID/stat of every process of the subject, the backend and h2load, and /proc/stat per CPU, from 10% to 90% of h2load's measured phase",
        "h2load_max_h1": cmd(Proto::H1, &plan.max_h1),
        "h2load_max_h2": cmd(Proto::H2, &plan.max_h2),
        "h2load_latency_h1": cmd(Proto::H1, &plan.latency_h1),
        "h2load_latency_h2": cmd(Proto::H2, &plan.latency_h2),
        "lb": "lb run --no-xdp --manifests DIR --worker-threads 1 (other flags default; access log at info)",
        "nginx": "nginx.conf as ingress-nginx generates it: worker_processes 1, upstream keepalive 320, access log",
        "haproxy": format!("haproxy -W -db: nbthread 1, maxconn {}, map-file routing, http-reuse safe, access log to stdout", super::haproxy::MAXCONN),
    })
}

fn standing_notes(plan: &Plan, place: &Placement) -> Vec<String> {
    let mut notes = vec![
        format!(
            "Each proxy is pinned to CPU {} (taskset); h2load and the backends share the other CPU. The throughput and \
             latency runs' Services point at a static backend: one nginx worker answering every request with a fixed \
             3-byte body on {} loopback addresses (no access log, keep-alive without a request limit), much cheaper \
             per request than the lb-echo pods, which answer with a JSON echo of the request and, sharing the \
             generator's CPU, capped the faster proxies. The reload, upgrade and memory tests keep {} lb-echo pods: \
             their WebSockets need an echo.",
            place.proxy_cpu.unwrap_or(0),
            plan.pods,
            plan.pods
        ),
        "Requests per CPU-second of the proxy: each max-rate run's req/s divided by the CPU-seconds per second that \
         all the subject's processes (nginx master and worker, HAProxy, lb with all its threads) spent in the middle \
         80% of h2load's measured phase (utime + stime from /proc/PID/stat). Unlike req/s it does not depend on the \
         proxy having its CPU to itself or being the bottleneck: it is the per-core comparison."
            .into(),
        "One worker each: lb --worker-threads 1, nginx worker_processes 1, HAProxy nbthread 1.".into(),
        "Latency is measured by h2load --rps from each request's start (closed loop per connection: a stall delays the \
         next request instead of queueing it, so p99 under stalls is understated equally for every subject)."
            .into(),
        "Requests go to one host of the set (the middle TLS host of N hosts) and rotate over its paths; in the N-host \
         set every host has use-regex, so nginx and lb scan that host's regex locations and HAProxy scans its \
         regex map (one list for all hosts, with HAProxy's pattern cache)."
            .into(),
        "All three log every request (lb at info level to a file, nginx's access_log in ingress-nginx's format, \
         HAProxy's httplog to stdout)."
            .into(),
        "nginx gets an SSL context per server block, as ingress-nginx's template gives it (`listen 443 ssl` in every \
         server, the default certificate inherited from the http block, ingress-nginx then picks certificates in Lua): \
         with OpenSSL 3 these contexts dominate nginx's memory and load time with many hosts."
            .into(),
        "nginx's keepalive_requests is raised from ingress-nginx's 1000 to 1000000: h2load does not reopen a \
         connection the server ends (nginx closes HTTP/1.1 and sends GOAWAY on h2 after that many requests), so with \
         the default the clients stop mid-run; lb and HAProxy set no such limit."
            .into(),
        "Memory: one round (RSS varies little between rounds); each subject alone, after serving a few requests."
            .into(),
        "Reload test: a request on a kept-alive connection the server closed cleanly between requests is reopened and \
         not counted as failed (clients do that); a request that was sent and then lost, or answered non-2xx, is."
            .into(),
    ];
    if place.proxy_cpu.is_none() {
        notes.push("One CPU only: nothing is pinned.".into());
    }
    notes
}
