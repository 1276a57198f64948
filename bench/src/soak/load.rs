//! The constant load, from the bed's client namespace at bounded rates:
//! short TCP connections (an HTTP GET each, read to the end) and UDP
//! exchanges to NodePorts and the LoadBalancer IP — the XDP data path —
//! and HTTP/1.1, h2c and HTTPS requests to the Ingress entry points — the
//! XDP hand-off and the nodes' proxies. Every failure is kept with its time.
//!
//! A kept-alive client whose connection the server closed between requests
//! reopens it (not a failure); a request that met a kept-alive connection
//! closing under it is retried once on a new connection, as HTTP clients
//! retry idempotent requests, and counted in `retried`
//! ([`lb_testbed::handover`] does the same). Everything else is a failure:
//! a refused or reset connection, a timeout, a wrong answer, a non-200.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use lb_testbed::echo::parse_udp_reply;
use lb_testbed::handover::closed_before_answer;
use lb_testbed::l7::{Conn, Req, TestCa, TlsOpts, send_h1, send_tls};
use lb_testbed::{INGRESS_IP, LOADBALANCER_IP, NODE1_IP, NODE2_IP};
use serde::{Deserialize, Serialize};

use super::churn::{CHURN_HOST, STABLE_PATH, TLS_HOST};
use super::params::Params;
use crate::l4::sys::enter_netns;

/// Timeout of every connect, read and request.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Failures kept with their time and error (all are counted).
const KEPT_FAILURES: usize = 500;
/// Largest answer read from a short TCP connection.
const MAX_ANSWER: u64 = 64 * 1024;

/// How a plaintext HTTP client uses its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    NewConnection,
    KeepAliveH1,
    KeepAliveH2c,
}

/// What one load sends, and where.
#[derive(Clone, Debug)]
pub enum Target {
    /// Connect, `GET /`, read the 200 to the end, close.
    Tcp(SocketAddr),
    /// One datagram from a new socket, the pod's echo within the timeout.
    Udp(SocketAddr),
    Http {
        addr: SocketAddr,
        host: &'static str,
        path: &'static str,
        reuse: Reuse,
    },
    /// `GET /` over a new TLS connection, the certificate verified.
    Https {
        addr: SocketAddr,
        sni: &'static str,
    },
}

/// One client of the load.
#[derive(Clone, Debug)]
pub struct Load {
    pub name: &'static str,
    pub target: Target,
    /// Attempts per second.
    pub rate: f64,
}

/// The soak's loads.
pub fn loads(p: &Params) -> Vec<Load> {
    let at = |ip, port| SocketAddr::from((ip, port));
    let http = |addr, host, path, reuse| Target::Http { addr, host, path, reuse };
    vec![
        Load { name: "tcp node1:30007", target: Target::Tcp(at(NODE1_IP, 30007)), rate: p.tcp_rate },
        Load { name: "tcp node2:30007", target: Target::Tcp(at(NODE2_IP, 30007)), rate: p.tcp_rate },
        Load { name: "tcp 192.168.1.150:8088", target: Target::Tcp(at(LOADBALANCER_IP, 8088)), rate: p.tcp_rate },
        Load { name: "udp node1:30053", target: Target::Udp(at(NODE1_IP, 30053)), rate: p.udp_rate },
        Load {
            name: "http a.com via ingress IP (new connections)",
            target: http(at(INGRESS_IP, 80), "a.com", "/", Reuse::NewConnection),
            rate: p.http_rate,
        },
        Load {
            name: "http churn.test via ingress IP (kept alive)",
            target: http(at(INGRESS_IP, 80), CHURN_HOST, STABLE_PATH, Reuse::KeepAliveH1),
            rate: p.http_rate,
        },
        Load {
            name: "h2c b.com via node2:30080 (kept alive)",
            target: http(at(NODE2_IP, 30080), "b.com", "/", Reuse::KeepAliveH2c),
            rate: p.http_rate,
        },
        Load {
            name: "http churn.test via node2:30080 (new connections)",
            target: http(at(NODE2_IP, 30080), CHURN_HOST, STABLE_PATH, Reuse::NewConnection),
            rate: p.http_rate,
        },
        Load {
            name: "https via ingress IP:443",
            target: Target::Https { addr: at(INGRESS_IP, 443), sni: TLS_HOST },
            rate: p.https_rate,
        },
        Load {
            name: "https via node2:30443",
            target: Target::Https { addr: at(NODE2_IP, 30443), sni: TLS_HOST },
            rate: p.https_rate,
        },
    ]
}

/// What one load did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadTally {
    pub name: String,
    /// `L4` or `L7`.
    pub layer: String,
    pub rate: f64,
    pub attempts: u64,
    pub failed: u64,
    /// Requests retried once because a kept-alive connection closed under them.
    pub retried: u64,
    /// Kept-alive connections the server closed between requests (reopened).
    pub reopened: u64,
}

/// One failure: when (seconds from the start of the load), which load, why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    pub t_s: f64,
    pub load: String,
    pub error: String,
    /// What happened just before: the last change step and, if one was
    /// under way, a restart (filled in by the report).
    #[serde(default)]
    pub context: String,
}

impl Failure {
    /// `error` of `load`, now in `window`'s time (its context is filled in
    /// by the report).
    fn now(window: &Window, load: &str, error: &anyhow::Error) -> Self {
        Self { t_s: window.t(), load: load.into(), error: format!("{error:#}"), context: String::new() }
    }
}

/// Failures of every load, the first [`KEPT_FAILURES`] kept.
#[derive(Default)]
pub struct Failures(Mutex<Vec<Failure>>);

impl Failures {
    fn push(&self, f: Failure) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT_FAILURES {
            kept.push(f);
        }
    }

    /// How many were kept so far.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn take(&self) -> Vec<Failure> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// When the load runs: from `start` until `until` or `stop`.
#[derive(Clone)]
pub struct Window {
    pub start: Instant,
    pub until: Instant,
    pub stop: Arc<AtomicBool>,
}

impl Window {
    pub fn open(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.until
    }

    pub fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The most attempts a load at `rate` may make in this window.
    fn max_attempts(&self, rate: f64) -> u64 {
        (self.until.saturating_duration_since(self.start).as_secs_f64() * rate * 1.2) as u64 + 10
    }
}

/// Runs every load in namespace `ns` until the window closes; their tallies.
pub fn run(
    ns: &str,
    loads: &[Load],
    ca: &Arc<TestCa>,
    window: &Window,
    failures: &Arc<Failures>,
) -> Result<Vec<LoadTally>> {
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        let (l4, l7): (Vec<&Load>, Vec<&Load>) =
            loads.iter().partition(|l| matches!(l.target, Target::Tcp(_) | Target::Udp(_)));
        for load in l4 {
            threads.push(s.spawn(move || -> Result<Vec<LoadTally>> {
                enter_netns(ns)?;
                Ok(vec![l4_load(load, window, failures)])
            }));
        }
        let l7: Vec<Load> = l7.into_iter().cloned().collect();
        threads.push(s.spawn(move || -> Result<Vec<LoadTally>> {
            enter_netns(ns)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let tasks: Vec<_> = l7
                    .into_iter()
                    .map(|load| tokio::spawn(l7_load(load, ca.clone(), window.clone(), failures.clone())))
                    .collect();
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.context("an L7 load task")?);
                }
                Ok(out)
            })
        }));
        let mut out = Vec::new();
        for t in threads {
            out.extend(t.join().map_err(|_| anyhow!("a load thread panicked"))??);
        }
        Ok(out)
    })
}

/// Tries every load (from namespace `ns`) until each has answered once, for
/// at most `timeout`: the agents are serving what the load will ask.
pub fn wait_until_served(ns: &str, loads: &[Load], ca: &TestCa, timeout: Duration) -> Result<()> {
    enter_and(ns, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let deadline = Instant::now() + timeout;
        for load in loads {
            let mut conn = None;
            let mut tally = LoadTally::default();
            loop {
                let tried = match &load.target {
                    Target::Tcp(addr) => tcp_exchange(*addr),
                    Target::Udp(addr) => udp_exchange(*addr, 0),
                    _ => rt.block_on(l7_exchange(&load.target, ca, &mut conn, &mut tally)),
                };
                match tried {
                    Ok(()) => break,
                    Err(e) if Instant::now() > deadline => {
                        bail!("{} is not served within {timeout:?}: {e:#}", load.name)
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
        Ok(())
    })
}

/// Runs `f` on a thread of its own that joined namespace `ns`.
fn enter_and<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(ns)?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("a thread in {ns} panicked"))?
    })
}

fn l4_load(load: &Load, window: &Window, failures: &Failures) -> LoadTally {
    let mut tally = LoadTally { name: load.name.into(), layer: "L4".into(), rate: load.rate, ..LoadTally::default() };
    let every = Duration::from_secs_f64(1.0 / load.rate);
    let max = window.max_attempts(load.rate);
    let mut next = Instant::now();
    while window.open() && tally.attempts < max {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            // Far behind (a stall): start the schedule again, no burst.
            next = now;
        }
        next += every;
        tally.attempts += 1;
        let tried = match load.target {
            Target::Tcp(addr) => tcp_exchange(addr),
            Target::Udp(addr) => udp_exchange(addr, tally.attempts),
            _ => Err(anyhow!("not an L4 load")),
        };
        if let Err(e) = tried {
            tally.failed += 1;
            failures.push(Failure::now(window, load.name, &e));
        }
    }
    tally
}

/// A short connection: connect, `GET /`, the whole answer, a 200.
fn tcp_exchange(addr: SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).context("connect")?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n").context("sending the request")?;
    let mut answer = Vec::new();
    (&mut s).take(MAX_ANSWER).read_to_end(&mut answer).context("reading the answer")?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        let head = String::from_utf8_lossy(&answer[..answer.len().min(40)]).into_owned();
        bail!("answered {head:?}");
    }
    Ok(())
}

/// One datagram from a new socket; the echo names a pod and carries it back.
fn udp_exchange(addr: SocketAddr, n: u64) -> Result<()> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let payload = format!("soak-{n}");
    s.send_to(payload.as_bytes(), addr).context("send")?;
    let mut buf = [0u8; 2048];
    let (len, _) = s.recv_from(&mut buf).context("no echo")?;
    match parse_udp_reply(&buf[..len]) {
        Some((_, echoed)) if echoed == payload.as_bytes() => Ok(()),
        _ => bail!("wrong echo {:?}", String::from_utf8_lossy(&buf[..len])),
    }
}

async fn l7_load(load: Load, ca: Arc<TestCa>, window: Window, failures: Arc<Failures>) -> LoadTally {
    let mut tally = LoadTally { name: load.name.into(), layer: "L7".into(), rate: load.rate, ..LoadTally::default() };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / load.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max = window.max_attempts(load.rate);
    let mut conn: Option<Conn> = None;
    while window.open() && tally.attempts < max {
        tick.tick().await;
        tally.attempts += 1;
        if let Err(e) = l7_exchange(&load.target, &ca, &mut conn, &mut tally).await {
            conn = None;
            tally.failed += 1;
            failures.push(Failure::now(&window, load.name, &e));
        }
    }
    tally
}

async fn l7_exchange(target: &Target, ca: &TestCa, conn: &mut Option<Conn>, tally: &mut LoadTally) -> Result<()> {
    let resp = match target {
        Target::Https { addr, sni } => {
            let req = Req::get("/").timeout(IO_TIMEOUT);
            send_tls(*addr, TlsOpts::new(sni).verify(ca), &req).await?.1
        }
        Target::Http { addr, host, path, reuse } => {
            let req = Req::get(path).host(host).timeout(IO_TIMEOUT);
            match reuse {
                Reuse::NewConnection => send_h1(*addr, &req).await?,
                Reuse::KeepAliveH1 | Reuse::KeepAliveH2c => {
                    kept_alive(*addr, *reuse == Reuse::KeepAliveH2c, &req, conn, tally).await?
                }
            }
        }
        Target::Tcp(_) | Target::Udp(_) => bail!("not an L7 load"),
    };
    if resp.status != 200 || resp.pod().is_none() {
        bail!("answered {} (pod {:?})", resp.status, resp.pod());
    }
    Ok(())
}

/// `req` on the kept-alive connection (opened or reopened as needed).
async fn kept_alive(
    addr: SocketAddr,
    h2: bool,
    req: &Req,
    conn: &mut Option<Conn>,
    tally: &mut LoadTally,
) -> Result<lb_testbed::l7::Resp> {
    if conn.as_ref().is_some_and(Conn::is_closed) {
        *conn = None;
        tally.reopened += 1;
    }
    let reused = conn.is_some();
    let mut c = match conn.take() {
        Some(c) => c,
        None => open(addr, h2).await.context("connecting")?,
    };
    match c.send(req).await {
        Ok(r) => {
            *conn = Some(c);
            Ok(r)
        }
        Err(e) if reused && closed_before_answer(&e) => {
            tally.retried += 1;
            let mut c = open(addr, h2).await.context("reconnecting to retry")?;
            let r = c.send(req).await.context("retried")?;
            *conn = Some(c);
            Ok(r)
        }
        Err(e) => Err(e.context(if reused { "kept-alive connection" } else { "new connection" })),
    }
}

async fn open(addr: SocketAddr, h2: bool) -> Result<Conn> {
    if h2 { Conn::h2c(addr).await } else { Conn::h1(addr).await }
}
