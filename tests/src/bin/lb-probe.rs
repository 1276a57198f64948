//! `lb-probe`: a client that runs where the cluster's own clients run,
//! inside a pod's (or a node's) network namespace and in that node's
//! cgroup (`--cgroup`, joined before any socket is made), so the agent's
//! socket programs see its connects and sends. It talks to lb-echo pods
//! and prints one JSON line per exchange ([`lb_testbed::probe::Exchange`]).
//!
//! - `tcp ADDR`: new TCP connections (`--count`, `--interval-ms` apart),
//!   `GET /` on each; the answering pod and `getpeername()`.
//! - `udp ADDR`: datagrams from an unconnected socket (`sendto`,
//!   `recvfrom`), or with `--connected` from one connected socket.
//! - `resolver ADDR`: a DNS-style client: one connected UDP socket asking
//!   every `--interval-ms`, replaced by a new one when it fails, for
//!   `--seconds`.
//! - `hold ADDR`: one kept-alive TCP connection asking `GET /` every
//!   `--interval-ms` for `--seconds`.
//!
//! Every loop is bounded by its count or duration.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lb_testbed::echo::parse_udp_reply;
use lb_testbed::probe::{Exchange, error_name};

#[derive(Parser)]
struct Args {
    /// The cgroup v2 directory to join first.
    #[arg(long)]
    cgroup: Option<PathBuf>,
    /// How long one exchange may take.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Talk to the IPv4 address from an IPv6 socket, as `::ffff:a.b.c.d`
    /// (what dual-stack clients such as the JVM do).
    #[arg(long)]
    mapped: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Tcp {
        addr: SocketAddr,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Pause between two connections.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
    },
    Udp {
        addr: SocketAddr,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long)]
        connected: bool,
    },
    Resolver {
        addr: SocketAddr,
        #[arg(long)]
        seconds: u64,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
    },
    Hold {
        addr: SocketAddr,
        #[arg(long)]
        seconds: u64,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
    },
}

impl Command {
    /// The same command with its address IPv4-mapped.
    fn mapped(self) -> Self {
        let map = |addr: SocketAddr| match addr {
            SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
            v6 => v6,
        };
        match self {
            Command::Tcp { addr, count, interval_ms } => Command::Tcp { addr: map(addr), count, interval_ms },
            Command::Udp { addr, count, connected } => Command::Udp { addr: map(addr), count, connected },
            Command::Resolver { addr, seconds, interval_ms } => {
                Command::Resolver { addr: map(addr), seconds, interval_ms }
            }
            Command::Hold { addr, seconds, interval_ms } => Command::Hold { addr: map(addr), seconds, interval_ms },
        }
    }
}

const MAX_COUNT: u32 = 10_000;
const MAX_SECONDS: u64 = 120;

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(cgroup) = &args.cgroup {
        let procs = cgroup.join("cgroup.procs");
        std::fs::write(&procs, std::process::id().to_string())
            .with_context(|| format!("joining the cgroup {}", cgroup.display()))?;
    }
    let probe = Probe { start: Instant::now(), timeout: Duration::from_millis(args.timeout_ms), mapped: args.mapped };
    let command = match args.mapped {
        true => args.command.mapped(),
        false => args.command,
    };
    match command {
        Command::Tcp { addr, count, interval_ms } => (0..count.min(MAX_COUNT)).for_each(|_| {
            probe.report(probe.tcp(addr));
            std::thread::sleep(Duration::from_millis(interval_ms));
        }),
        Command::Udp { addr, count, connected } => probe.udp(addr, count.min(MAX_COUNT), connected),
        Command::Resolver { addr, seconds, interval_ms } => {
            probe.resolver(addr, Duration::from_secs(seconds.min(MAX_SECONDS)), Duration::from_millis(interval_ms))
        }
        Command::Hold { addr, seconds, interval_ms } => {
            probe.hold(addr, Duration::from_secs(seconds.min(MAX_SECONDS)), Duration::from_millis(interval_ms))
        }
    }
    Ok(())
}

struct Probe {
    start: Instant,
    timeout: Duration,
    /// IPv6 sockets (`--mapped`).
    mapped: bool,
}

impl Probe {
    fn exchange(&self) -> Exchange {
        let at_ms = self.start.elapsed().as_millis() as u64;
        Exchange { pod: None, peer: None, from: None, seen_from: None, error: None, at_ms }
    }

    fn failed(&self, e: &std::io::Error) -> Exchange {
        Exchange { error: Some(error_name(e)), ..self.exchange() }
    }

    fn report(&self, exchange: Exchange) {
        println!("{}", serde_json::to_string(&exchange).expect("serializable"));
    }

    /// One new connection and `GET /` on it.
    fn tcp(&self, addr: SocketAddr) -> Exchange {
        let mut stream = match TcpStream::connect_timeout(&addr, self.timeout) {
            Ok(stream) => stream,
            Err(e) => return self.failed(&e),
        };
        let peer = stream.peer_addr().ok();
        match self.get(&mut stream, "close") {
            Ok((pod, seen_from)) => Exchange { pod, peer, seen_from, ..self.exchange() },
            Err(e) => Exchange { peer, ..self.failed(&e) },
        }
    }

    /// `GET /` on `stream`; the answering pod and the address it saw.
    fn get(&self, stream: &mut TcpStream, connection: &str) -> std::io::Result<(Option<String>, Option<SocketAddr>)> {
        stream.set_read_timeout(Some(self.timeout))?;
        write!(stream, "GET / HTTP/1.1\r\nHost: probe\r\nConnection: {connection}\r\n\r\n")?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte)? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before the answer"));
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_string()))
        };
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body)?;
        Ok((header("x-pod-name"), header("x-remote-addr").and_then(|a| a.parse().ok())))
    }

    fn udp(&self, addr: SocketAddr, count: u32, connected: bool) {
        let socket = match self.udp_socket(connected.then_some(addr)) {
            Ok(socket) => socket,
            Err(e) => return self.report(self.failed(&e)),
        };
        for i in 0..count {
            self.report(self.ask(&socket, addr, connected, &format!("probe {i}")));
        }
    }

    fn udp_socket(&self, connect: Option<SocketAddr>) -> std::io::Result<UdpSocket> {
        let socket = UdpSocket::bind(if self.mapped { "[::]:0" } else { "0.0.0.0:0" })?;
        socket.set_read_timeout(Some(self.timeout))?;
        if let Some(addr) = connect {
            socket.connect(addr)?;
        }
        Ok(socket)
    }

    /// One datagram and its answer.
    fn ask(&self, socket: &UdpSocket, addr: SocketAddr, connected: bool, payload: &str) -> Exchange {
        let sent = if connected { socket.send(payload.as_bytes()) } else { socket.send_to(payload.as_bytes(), addr) };
        if let Err(e) = sent {
            return self.failed(&e);
        }
        let mut buf = [0u8; 2048];
        let peer = if connected { socket.peer_addr().ok() } else { None };
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let pod = parse_udp_reply(&buf[..n]).map(|(pod, _)| pod);
                Exchange { pod, peer, from: Some(from), ..self.exchange() }
            }
            Err(e) => Exchange { peer, ..self.failed(&e) },
        }
    }

    /// A DNS-style client: a connected socket, replaced when it fails.
    fn resolver(&self, addr: SocketAddr, duration: Duration, interval: Duration) {
        let mut socket = None;
        let mut i = 0u64;
        while self.start.elapsed() < duration {
            if socket.is_none() {
                match self.udp_socket(Some(addr)) {
                    Ok(s) => socket = Some(s),
                    Err(e) => self.report(self.failed(&e)),
                }
            }
            if let Some(s) = &socket {
                let exchange = self.ask(s, addr, true, &format!("query {i}"));
                // A resolver gives up on a socket that errs (a destroyed
                // socket says ECONNABORTED or EDESTADDRREQ); a lost answer
                // is retried on the same one.
                if exchange.error.as_deref().is_some_and(|e| e != "timeout") {
                    socket = None;
                }
                self.report(exchange);
            }
            i += 1;
            std::thread::sleep(interval);
        }
    }

    /// One kept-alive connection asked again and again.
    fn hold(&self, addr: SocketAddr, duration: Duration, interval: Duration) {
        let mut stream = match TcpStream::connect_timeout(&addr, self.timeout) {
            Ok(stream) => stream,
            Err(e) => return self.report(self.failed(&e)),
        };
        let peer = stream.peer_addr().ok();
        while self.start.elapsed() < duration {
            let exchange = match self.get(&mut stream, "keep-alive") {
                Ok((pod, seen_from)) => Exchange { pod, peer, seen_from, ..self.exchange() },
                Err(e) => Exchange { peer, ..self.failed(&e) },
            };
            let failed = exchange.error.is_some();
            self.report(exchange);
            if failed {
                return;
            }
            std::thread::sleep(interval);
        }
    }
}
