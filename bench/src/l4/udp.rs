//! UDP: the pods' sinks (count every datagram they receive) and the
//! client's generator (`sendmmsg` on several connected sockets — one per
//! flow — from several threads, unpaced or at a fixed rate).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lb_testbed::in_netns;

use super::sys::{RecvBatch, SendBatch, enter_netns, set_rcvbuf_force};

/// Receive buffer of each sink socket.
const SINK_RCVBUF: usize = 8 << 20;
/// Datagrams taken per `recvmmsg`.
const SINK_BATCH: usize = 256;
/// How long a sink that found its queue empty waits before looking again.
/// Polling instead of blocking keeps the sinks' cost per datagram low and
/// constant: a blocked reader would be woken for almost every datagram at
/// low rates (a context switch each), at high rates for batches.
const SINK_POLL: Duration = Duration::from_millis(1);

/// One UDP sink per pod, each on its own thread, counting datagrams.
pub struct UdpSinks {
    /// Datagrams received, per pod (in the order the sinks were started).
    counts: Vec<Arc<AtomicU64>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpSinks {
    /// Binds `0.0.0.0:port` in each of `pod_namespaces` and starts counting.
    pub fn start(pod_namespaces: &[String], port: u16) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut sinks = Self { counts: Vec::new(), stop: stop.clone(), threads: Vec::new() };
        for ns in pod_namespaces {
            let socket = in_netns(ns, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))?
                .with_context(|| format!("binding UDP :{port} in {ns}"))?;
            set_rcvbuf_force(&socket, SINK_RCVBUF).context("sink receive buffer")?;
            let count = Arc::new(AtomicU64::new(0));
            let (c, s) = (count.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name("udp-sink".into())
                .spawn(move || sink_loop(&socket, &c, &s))
                .context("starting a UDP sink thread")?;
            sinks.counts.push(count);
            sinks.threads.push(thread);
        }
        Ok(sinks)
    }

    /// Datagrams received so far, per pod.
    pub fn counts(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// Datagrams received so far, all pods.
    pub fn total(&self) -> u64 {
        self.counts().iter().sum()
    }
}

fn sink_loop(socket: &UdpSocket, count: &AtomicU64, stop: &AtomicBool) {
    let mut batch = RecvBatch::new(SINK_BATCH);
    while !stop.load(Ordering::Relaxed) {
        match batch.recv(socket) {
            Ok(n) if n > 0 => {
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
            _ => std::thread::sleep(SINK_POLL),
        }
    }
}

impl Drop for UdpSinks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What the generator sends.
#[derive(Clone, Debug)]
pub struct Flood {
    pub threads: usize,
    pub flows_per_thread: usize,
    pub payload_bytes: usize,
    /// Datagrams per `sendmmsg`.
    pub batch: usize,
    pub duration: Duration,
    /// Total datagrams per second over all threads; `None`: as fast as possible.
    pub rate: Option<f64>,
}

/// What the generator did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    /// Datagrams the kernel accepted from `sendmmsg`.
    pub packets: u64,
    /// Failed `sendmmsg` calls (e.g. an ICMP error reported on the socket).
    pub errors: u64,
    pub elapsed: Duration,
}

/// Most datagrams one thread sends in one run, whatever the duration.
const MAX_PACKETS_PER_THREAD: u64 = 200_000_000;

impl Flood {
    pub fn flows(&self) -> usize {
        self.threads * self.flows_per_thread
    }

    /// Sends from namespace `ns`: flow `i` goes from `CLIENT:first_port + i`
    /// to `targets[i % targets.len()]`. Returns once every thread is done.
    pub fn run(&self, ns: &str, source: Ipv4Addr, first_port: u16, targets: &[SocketAddrV4]) -> Result<Sent> {
        if targets.is_empty() || self.threads == 0 || self.flows_per_thread == 0 {
            bail!("a flood needs targets, threads and flows");
        }
        let started = Instant::now();
        let deadline = started + self.duration;
        let workers: Vec<JoinHandle<Result<Sent>>> = (0..self.threads)
            .map(|t| {
                let flows: Vec<(SocketAddrV4, SocketAddrV4)> = (0..self.flows_per_thread)
                    .map(|f| {
                        let i = t * self.flows_per_thread + f;
                        let port = first_port.checked_add(i as u16).context("source ports run out")?;
                        Ok((SocketAddrV4::new(source, port), targets[i % targets.len()]))
                    })
                    .collect::<Result<_>>()?;
                let (ns, this) = (ns.to_string(), self.clone());
                std::thread::Builder::new()
                    .name("udp-flood".into())
                    .spawn(move || this.thread(&ns, &flows, deadline))
                    .context("starting a generator thread")
            })
            .collect::<Result<_>>()?;
        let mut total = Sent::default();
        for w in workers {
            let sent = w.join().map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
            total.packets += sent.packets;
            total.errors += sent.errors;
        }
        total.elapsed = started.elapsed();
        Ok(total)
    }

    fn thread(&self, ns: &str, flows: &[(SocketAddrV4, SocketAddrV4)], deadline: Instant) -> Result<Sent> {
        enter_netns(ns)?;
        let sockets: Vec<UdpSocket> = flows
            .iter()
            .map(|(from, to)| {
                let s = UdpSocket::bind(from).with_context(|| format!("binding {from}"))?;
                s.connect(SocketAddr::V4(*to)).with_context(|| format!("connecting {from} to {to}"))?;
                Ok(s)
            })
            .collect::<Result<_>>()?;
        let mut batch = SendBatch::new(vec![0x5a; self.payload_bytes], self.batch);
        let per_thread_rate = self.rate.map(|r| r / self.threads as f64);
        let mut sent = Sent::default();
        let started = Instant::now();
        'outer: while sent.packets < MAX_PACKETS_PER_THREAD {
            for socket in &sockets {
                let now = Instant::now();
                if now >= deadline {
                    break 'outer;
                }
                if let Some(rate) = per_thread_rate {
                    let due = started + Duration::from_secs_f64(sent.packets as f64 / rate);
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                }
                match batch.send(socket, self.batch) {
                    Ok(n) => sent.packets += n as u64,
                    Err(_) => sent.errors += 1,
                }
            }
        }
        Ok(sent)
    }
}
