//! One running subject — lb, nginx or HAProxy — serving an
//! [`IngressSet`] on its own loopback address, pinned to a CPU; how it is
//! reconfigured, checked and measured (RSS of all its processes).

use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lb_testbed::Process;
use lb_testbed::l7::{Req, TlsOpts, send_h1, send_tls, unique_loopback_ip};

use super::model::IngressSet;
use super::{haproxy, lbagent, nginx};

/// Plain HTTP port of every subject (on its own address).
pub const HTTP_PORT: u16 = 8000;
/// HTTPS port of every subject.
pub const HTTPS_PORT: u16 = 8443;
/// lb's admin port.
pub const ADMIN_PORT: u16 = 9000;
/// How long a subject gets to serve its set (10,000 hosts take a while).
const READY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Lb,
    Nginx,
    Haproxy,
    /// lb with `--request-metrics=false`: the max-rate runs' measure of
    /// what counting requests costs (not among [`Kind::ALL`]).
    LbNoRequestMetrics,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Lb, Kind::Nginx, Kind::Haproxy];

    /// The subject's name in the report.
    pub fn subject(self) -> &'static str {
        match self {
            Kind::Lb => "lb",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "HAProxy",
            Kind::LbNoRequestMetrics => "lb, request metrics off",
        }
    }
}

/// Where and how the subjects run.
#[derive(Clone, Debug)]
pub struct Placement {
    /// CPU the proxy is pinned to (`taskset -c`), if any.
    pub proxy_cpu: Option<usize>,
}

impl Placement {
    /// `env K=V… taskset -c CPU program args…` (both exec: the PID is the program's).
    pub fn spawn(
        &self,
        log_dir: &Path,
        label: &str,
        env: &[(&str, &str)],
        program: &Path,
        args: &[impl AsRef<OsStr>],
        grace: Duration,
    ) -> Result<Process> {
        let mut all: Vec<OsString> = env.iter().map(|(k, v)| format!("{k}={v}").into()).collect();
        if let Some(cpu) = self.proxy_cpu {
            all.extend(["taskset".into(), "-c".into(), cpu.to_string().into()]);
        }
        all.push(program.into());
        all.extend(args.iter().map(|a| a.as_ref().to_owned()));
        Process::spawn(log_dir, label, Path::new("/usr/bin/env"), &all, grace)
    }
}

/// A running subject.
pub struct Proxy {
    pub kind: Kind,
    pub ip: Ipv4Addr,
    /// Its configuration, certificates and logs.
    pub dir: PathBuf,
    pub process: Process,
    /// lb's manifests as last written (file → content).
    written: std::collections::BTreeMap<String, String>,
}

impl Proxy {
    /// Starts `kind` serving `set` in a fresh directory under `work`, and
    /// waits until it routes the set's plain and TLS targets.
    pub async fn start(kind: Kind, set: &IngressSet, work: &Path, place: &Placement) -> Result<Self> {
        let ip = unique_loopback_ip();
        let dir = work.join(format!("{}-{}", kind.subject().to_lowercase(), ip));
        std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
        let started = Instant::now();
        let (process, written) = match kind {
            Kind::Lb => lbagent::start(set, ip, &dir, place, &[])?,
            Kind::LbNoRequestMetrics => lbagent::start(set, ip, &dir, place, &["--request-metrics=false"])?,
            Kind::Nginx => (nginx::start(set, ip, &dir, place)?, Default::default()),
            Kind::Haproxy => (haproxy::start(set, ip, &dir, place)?, Default::default()),
        };
        let proxy = Self { kind, ip, dir, process, written };
        proxy.wait_serving(set).await.with_context(|| format!("{} serving {}", kind.subject(), set.label))?;
        eprintln!("[l7] {} serves {} on {ip} after {:.1?}", kind.subject(), set.label, started.elapsed());
        Ok(proxy)
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, HTTP_PORT))
    }

    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, HTTPS_PORT))
    }

    pub fn addr(&self, tls: bool) -> SocketAddr {
        if tls { self.https_addr() } else { self.http_addr() }
    }

    async fn wait_serving(&self, set: &IngressSet) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for tls in [false, true] {
            let t = set.target(tls);
            for path in &t.paths {
                loop {
                    let status = self.status(&t.host, path, tls).await;
                    if matches!(status, Ok(200)) {
                        break;
                    }
                    if !self.process.is_running() {
                        bail!("{} exited\n{}", self.kind.subject(), self.logs());
                    }
                    if Instant::now() > deadline {
                        bail!("GET {}{path} (tls {tls}): {status:?} after {READY_TIMEOUT:?}\n{}", t.host, self.logs());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // The same routes: a path no rule matches is 404 everywhere (on a
        // host without TLS: lb redirects unmatched paths of TLS hosts).
        if let Some(host) = set.hosts.iter().find(|h| h.cert.is_none()) {
            let status = self.status(&host.name, "/no-such-route", false).await?;
            if status != 404 {
                bail!("GET {}/no-such-route answered {status}, not 404", host.name);
            }
        }
        Ok(())
    }

    /// The status of `GET path` for `host` on a fresh connection.
    pub async fn status(&self, host: &str, path: &str, tls: bool) -> Result<u16> {
        let req = Req::get(path).host(host).timeout(Duration::from_secs(2));
        if tls {
            Ok(send_tls(self.https_addr(), TlsOpts::new(host), &req).await?.1.status)
        } else {
            Ok(send_h1(self.http_addr(), &req).await?.status)
        }
    }

    /// Serves `set` from now on: lb rewrites the changed manifests, nginx
    /// regenerates its config and runs `nginx -s reload`, HAProxy its config
    /// and gets SIGUSR2 (master-worker reload).
    pub fn apply(&mut self, set: &IngressSet) -> Result<()> {
        match self.kind {
            Kind::Lb | Kind::LbNoRequestMetrics => lbagent::apply(set, &self.dir, &mut self.written),
            Kind::Nginx => nginx::reload(set, self.ip, &self.dir),
            Kind::Haproxy => haproxy::reload(set, self.ip, &self.dir, self.process.pid()),
        }
        .with_context(|| format!("reconfiguring {}", self.kind.subject()))
    }

    /// The PIDs of the subject: the process and its children (nginx's and
    /// HAProxy's masters and workers, old workers still draining included).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.process.pid()];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        pids
    }

    /// Resident memory of all its processes, MiB.
    pub fn rss_mib(&self) -> f64 {
        self.pids().iter().filter_map(|p| rss_kib(*p)).sum::<u64>() as f64 / 1024.0
    }

    /// Empties the access logs (they grow by gigabytes over a run).
    pub fn truncate_logs(&self) {
        for entry in std::fs::read_dir(self.dir.join("logs")).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".stdout") || name.ends_with(".stderr") || name == "access.log" {
                let _ = std::fs::OpenOptions::new().write(true).open(entry.path()).and_then(|f| f.set_len(0));
            }
        }
    }

    pub fn logs(&self) -> String {
        let mut out = self.process.logs(8 * 1024);
        if let Ok(err) = std::fs::read_to_string(self.dir.join("logs").join("error.log")) {
            out.push_str("\n---- error.log ----\n");
            let start = err.len().saturating_sub(4096);
            out.push_str(err.get(start..).unwrap_or(&err));
        }
        out
    }
}

impl Drop for Proxy {
    /// Stops the process; then any of its children still there (nginx and
    /// HAProxy workers outlive a master that was killed).
    fn drop(&mut self) {
        let pids = self.pids();
        self.process.stop();
        for pid in pids.into_iter().skip(1) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if !(comm.starts_with("nginx") || comm.starts_with("haproxy")) {
                continue;
            }
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `name` if it holds only characters that need no quoting in nginx or
/// HAProxy configuration (letters, digits, `. - _ / * [ ] +`), else an error:
/// configuration text is built from the typed set, never pasted.
pub fn safe(name: &str) -> Result<&str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || ".-_/*[]+".contains(c);
    if name.is_empty() || !name.chars().all(ok) {
        bail!("{name:?} is not safe in configuration text");
    }
    Ok(name)
}

/// Writes `content` to `path`, creating its directory.
pub fn write(path: &Path, content: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}
