//! TCP: the pods' echo servers, and the client's two loads — short
//! connections (connect, one request/response, close: connections per
//! second, as fast as possible or at a fixed rate) and request/response on
//! open connections (latency). A load goes to one address (a Service's) or
//! spreads over several (the pods', for a baseline without a Service).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use lb_testbed::in_netns;

use super::sys::{enter_netns, set_recv_timeout};

/// How often an idle acceptor looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(100);
/// A connection silent this long is closed by the server.
const SERVER_IDLE: Duration = Duration::from_secs(2);
/// Timeout of every client connect, read and write.
const CLIENT_IO: Duration = Duration::from_secs(1);
/// Most requests one client thread makes in one run, whatever the duration.
const MAX_REQUESTS_PER_THREAD: usize = 5_000_000;

/// Echo servers in the pods: each pod's listener is served by a few
/// threads, each handling one connection at a time to its end.
pub struct EchoServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Connections each pod accepted so far, in the order of the namespaces.
    accepted: Vec<Arc<AtomicU64>>,
}

impl EchoServers {
    /// Listens on `0.0.0.0:port` in each of `pod_namespaces`, with
    /// `acceptors` threads per pod.
    pub fn start(pod_namespaces: &[String], port: u16, acceptors: usize) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut servers = Self { stop: stop.clone(), threads: Vec::new(), accepted: Vec::new() };
        for ns in pod_namespaces {
            let listener = in_netns(ns, || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))?
                .with_context(|| format!("listening on TCP :{port} in {ns}"))?;
            set_recv_timeout(&listener, ACCEPT_POLL).context("accept timeout")?;
            let listener = Arc::new(listener);
            let accepted = Arc::new(AtomicU64::new(0));
            for _ in 0..acceptors {
                let (l, s, a) = (listener.clone(), stop.clone(), accepted.clone());
                let thread = std::thread::Builder::new()
                    .name("tcp-echo".into())
                    .spawn(move || accept_loop(&l, &s, &a))
                    .context("starting an echo server thread")?;
                servers.threads.push(thread);
            }
            servers.accepted.push(accepted);
        }
        Ok(servers)
    }

    /// Connections each pod accepted so far (in the order the pods were given).
    pub fn accepted(&self) -> Vec<u64> {
        self.accepted.iter().map(|a| a.load(Ordering::Relaxed)).collect()
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, accepted: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                serve(stream, stop);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Echoes what arrives until the client closes (or is silent too long).
fn serve(mut stream: TcpStream, stop: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(SERVER_IDLE));
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

impl Drop for EchoServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One client load: `threads` threads in the client's namespace, each for
/// `duration`, sending `request_bytes` and reading as many back.
#[derive(Clone, Debug)]
pub struct TcpLoad {
    pub threads: usize,
    pub duration: Duration,
    pub request_bytes: usize,
    /// Short connections per second over all threads, each thread keeping
    /// its share on a fixed schedule; `None`: as fast as possible.
    pub rate: Option<f64>,
}

/// Short connections: how many completed and how many failed (and why).
#[derive(Clone, Debug, Default)]
pub struct Connections {
    pub completed: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Failures by stage and error.
    pub errors: BTreeMap<String, u64>,
}

impl Connections {
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }
}

/// Request/response on open connections: every round trip's time.
#[derive(Clone, Debug, Default)]
pub struct RoundTrips {
    pub micros: Vec<f64>,
    pub failed: u64,
}

impl TcpLoad {
    /// Each thread: connect, one exchange, close — again until the end (at
    /// [`rate`](Self::rate) if set). Connection `i` of a thread goes to
    /// `targets[(thread + i) % len]`.
    pub fn connections(&self, ns: &str, targets: &[SocketAddr]) -> Result<Connections> {
        if targets.is_empty() {
            bail!("no address to connect to");
        }
        let targets: Arc<[SocketAddr]> = targets.into();
        let started = Instant::now();
        let per_thread = self.spawn(ns, "tcp-crr", move |load, thread, deadline| {
            let mut c = Connections::default();
            let request = vec![0x42u8; load.request_bytes];
            let mut reply = vec![0u8; load.request_bytes];
            // Each thread's share of the rate; threads start staggered.
            let interval = load.rate.map(|r| Duration::from_secs_f64(load.threads as f64 / r.max(1.0)));
            let mut next =
                Instant::now() + interval.map_or(Duration::ZERO, |i| i * thread as u32 / load.threads as u32);
            let mut i = thread;
            while Instant::now() < deadline && ((c.completed + c.failed) as usize) < MAX_REQUESTS_PER_THREAD {
                if let Some(interval) = interval {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next += interval;
                }
                let to = targets[i % targets.len()];
                i += 1;
                match exchange_once(to, &request, &mut reply) {
                    Ok(()) => c.completed += 1,
                    Err(e) => {
                        c.failed += 1;
                        *c.errors.entry(e.to_string()).or_default() += 1;
                    }
                }
            }
            c
        })?;
        let mut total = Connections { elapsed: started.elapsed(), ..Connections::default() };
        for c in per_thread {
            total.completed += c.completed;
            total.failed += c.failed;
            for (e, n) in c.errors {
                *total.errors.entry(e).or_default() += n;
            }
        }
        Ok(total)
    }

    /// Each thread: `connections` open connections, one request/response
    /// at a time on each in turn until the end, timing every round trip.
    /// Connection `i` of a thread goes to `targets[(thread + i) % len]`.
    pub fn round_trips(&self, ns: &str, targets: &[SocketAddr], connections: usize) -> Result<RoundTrips> {
        if targets.is_empty() {
            bail!("no address to connect to");
        }
        let targets: Arc<[SocketAddr]> = targets.into();
        let per_thread = self.spawn(ns, "tcp-rr", move |load, thread, deadline| {
            let mut rt = RoundTrips::default();
            let request = vec![0x42u8; load.request_bytes];
            let mut reply = vec![0u8; load.request_bytes];
            let mut streams = Vec::new();
            for i in 0..connections {
                match connect(targets[(thread + i) % targets.len()]) {
                    Ok(s) => streams.push(s),
                    Err(_) => rt.failed += 1,
                }
            }
            'outer: while Instant::now() < deadline && rt.micros.len() < MAX_REQUESTS_PER_THREAD {
                for stream in &mut streams {
                    let t0 = Instant::now();
                    if stream.write_all(&request).and_then(|()| stream.read_exact(&mut reply)).is_err() {
                        rt.failed += 1;
                        break 'outer;
                    }
                    rt.micros.push(t0.elapsed().as_nanos() as f64 / 1000.0);
                }
            }
            rt
        })?;
        let mut total = RoundTrips::default();
        for rt in per_thread {
            total.micros.extend(rt.micros);
            total.failed += rt.failed;
        }
        Ok(total)
    }

    /// Runs `work` on `threads` threads that joined `ns` (given the load,
    /// the thread's index and the deadline); their results.
    fn spawn<T, F>(&self, ns: &str, name: &str, work: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(&TcpLoad, usize, Instant) -> T + Send + Clone + 'static,
    {
        let deadline = Instant::now() + self.duration;
        let workers: Vec<JoinHandle<Result<T>>> = (0..self.threads)
            .map(|thread| {
                let (ns, load, work) = (ns.to_string(), self.clone(), work.clone());
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || -> Result<T> {
                        enter_netns(&ns)?;
                        Ok(work(&load, thread, deadline))
                    })
                    .with_context(|| format!("starting a {name} thread"))
            })
            .collect::<Result<_>>()?;
        workers.into_iter().map(|w| w.join().map_err(|_| anyhow!("a {name} thread panicked"))?).collect()
    }
}

fn connect(to: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&to, CLIENT_IO)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(CLIENT_IO))?;
    stream.set_write_timeout(Some(CLIENT_IO))?;
    Ok(stream)
}

/// One short connection: connect, send, read the echo, close (client first).
pub fn exchange_once(to: SocketAddr, request: &[u8], reply: &mut [u8]) -> std::io::Result<()> {
    let stage = |stage: &'static str| move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{stage}: {e}"));
    let mut stream = connect(to).map_err(stage("connect"))?;
    stream.write_all(request).map_err(stage("write"))?;
    stream.read_exact(reply).map_err(stage("read"))?;
    if reply != request {
        return Err(std::io::Error::other("the echo differs from the request"));
    }
    Ok(())
}
