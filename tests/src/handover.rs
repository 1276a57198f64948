//! Handing the proxy over from one agent to another (an upgrade): which
//! agent answers the admin port, and request loads that count failures
//! the way clients see them.
//!
//! Two agents share the ports (`SO_REUSEPORT`), so a request to the admin
//! port reaches either; [`wait_ready_pid`] waits until the agent with a
//! given PID answers `/readyz` with 200 (the answer's `x-lb-pid` names it).
//!
//! [`load`] runs one client until told to stop (bounded in count and time):
//! a new connection per request, or kept-alive HTTP/1.1 or h2c connections.
//! A kept-alive connection the server closed between requests is reopened
//! before the next request (not a failure). A request that fails because
//! the server closed its kept-alive connection while the request was on its
//! way is retried once on a new connection, as HTTP clients retry
//! idempotent requests (RFC 9110 §9.2.2); every other error, and every
//! non-2xx answer, is a failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::l7::{Conn, Req, send_h1};

/// Header of the admin answers naming the agent's PID.
pub const PID_HEADER: &str = "x-lb-pid";

/// Waits (at most `timeout`) until the agent with PID `pid` answers
/// `GET /readyz` on `admin` with 200; `alive` says whether it still runs.
pub async fn wait_ready_pid(admin: SocketAddr, pid: u32, timeout: Duration, alive: impl Fn() -> bool) -> Result<()> {
    let start = Instant::now();
    let want = pid.to_string();
    loop {
        let req = Req::get("/readyz").timeout(Duration::from_secs(1));
        if let Ok(r) = send_h1(admin, &req).await
            && r.status == 200
            && r.header(PID_HEADER) == Some(want.as_str())
        {
            return Ok(());
        }
        if !alive() {
            bail!("the agent with PID {pid} exited");
        }
        if start.elapsed() > timeout {
            bail!("the agent with PID {pid} did not answer /readyz with 200 within {timeout:?}");
        }
        // New connections spread over both agents: ask again soon.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How a load client talks to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// A new HTTP/1.1 connection per request.
    NewConnection,
    /// One kept-alive HTTP/1.1 connection, reopened when the server ends it.
    KeepAliveH1,
    /// One kept-alive h2c connection, reopened when the server ends it.
    KeepAliveH2c,
}

/// What one client saw.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub failed: u64,
    /// Requests retried once on a new connection because the server closed
    /// the kept-alive connection while they were on their way.
    pub retried: u64,
    /// Kept-alive connections the server closed between requests (reopened).
    pub reopened: u64,
    /// Requests answered after `mark` was set (see [`load`]).
    pub after_mark: u64,
    /// The first few failures.
    pub errors: Vec<String>,
}

impl Tally {
    /// Adds `other` to this one.
    pub fn add(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.failed += other.failed;
        self.retried += other.retried;
        self.reopened += other.reopened;
        self.after_mark += other.after_mark;
        self.errors.extend(other.errors.iter().take(10usize.saturating_sub(self.errors.len())).cloned());
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.errors.len() < 10 {
            self.errors.push(what);
        }
    }
}

/// Sends `req` to `addr` every `every` until `stop` is set, `max` requests
/// were sent or `limit` passed; counts in the returned tally, and counts
/// the answers after `mark` is set in `after_mark`.
pub async fn load(
    client: Client,
    addr: SocketAddr,
    req: Req,
    every: Duration,
    (max, limit): (u64, Duration),
    stop: Arc<AtomicBool>,
    mark: Arc<AtomicBool>,
) -> Tally {
    let start = Instant::now();
    let mut tally = Tally::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) && tally.requests < max && start.elapsed() < limit {
        tick.tick().await;
        tally.requests += 1;
        let answered = match client {
            Client::NewConnection => match send_h1(addr, &req).await {
                Ok(r) => Ok(r),
                Err(e) => Err(format!("{e:#}")),
            },
            Client::KeepAliveH1 | Client::KeepAliveH2c => {
                let h2 = client == Client::KeepAliveH2c;
                if conn.as_ref().is_some_and(Conn::is_closed) {
                    conn = None;
                    tally.reopened += 1;
                }
                let reused = conn.is_some();
                let first = match conn.take() {
                    Some(c) => Ok(c),
                    None => open(addr, h2).await,
                };
                match first {
                    Err(e) => Err(format!("connecting: {e:#}")),
                    Ok(mut c) => match c.send(&req).await {
                        Ok(r) => {
                            conn = Some(c);
                            Ok(r)
                        }
                        Err(e) if reused && closed_before_answer(&e) => {
                            tally.retried += 1;
                            match open(addr, h2).await {
                                Err(e) => Err(format!("reconnecting to retry: {e:#}")),
                                Ok(mut c) => {
                                    let r = c.send(&req).await.map_err(|e| format!("retried: {e:#}"));
                                    conn = Some(c);
                                    r
                                }
                            }
                        }
                        Err(e) => Err(format!("{}: {e:#}", if reused { "kept-alive" } else { "new connection" })),
                    },
                }
            }
        };
        match answered {
            Ok(r) if (200..300).contains(&r.status) => {
                if mark.load(Ordering::Relaxed) {
                    tally.after_mark += 1;
                }
            }
            Ok(r) => tally.fail(format!("{client:?}: answered {}", r.status)),
            Err(e) => {
                conn = None;
                tally.fail(format!("{client:?}: {e}"));
            }
        }
    }
    tally
}

async fn open(addr: SocketAddr, h2: bool) -> Result<Conn> {
    if h2 { Conn::h2c(addr).await } else { Conn::h1(addr).await }
}

/// The connection ended before an answer: hyper saw it close (or refuse a
/// stream after GOAWAY) while the request was on its way, or it was reset.
pub fn closed_before_answer(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_incomplete_message() || h.is_canceled() || h.is_closed())
            || c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
            })
    })
}
