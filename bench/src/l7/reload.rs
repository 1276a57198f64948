//! Configuration changes under load: a steady, bounded request load
//! (HTTP/1.1 keep-alive connections, each at a fixed rate) and open
//! WebSockets (a round trip every interval) through one subject, while the
//! set is changed N times — the churn host gains `/churn-k` and loses
//! `/churn-(k-1)`. Each change is checked to take effect (the new path
//! answers 200) before the next. Counted: failed requests (errors after a
//! request was sent, non-2xx answers) and WebSockets that stopped echoing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use lb_testbed::l7::{Conn, Req, Ws, ws_connect, ws_roundtrip};
use serde::Serialize;

use super::model::{IngressSet, Target, churn_path};
use super::proxy::Proxy;
use crate::stats::median;

#[derive(Clone, Debug, Serialize)]
pub struct Spec {
    pub changes: usize,
    /// Keep-alive connections of the request load.
    pub connections: usize,
    /// Requests per second on each connection.
    pub rps_per_connection: u32,
    pub websockets: usize,
    /// Time between two round trips on each WebSocket.
    pub ws_interval: Duration,
    /// Wait after a change took effect before the next one.
    pub pause: Duration,
    /// Longest wait for a change to take effect.
    pub change_timeout: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    pub failed: u64,
    /// Connections the server closed cleanly between requests (reopened,
    /// not counted as failures).
    pub reconnects: u64,
    /// Of the failed: requests on a kept-alive connection that the server
    /// closed before answering (the keep-alive race; a client that
    /// retries idempotent requests would hide these).
    pub closed_before_answer: u64,
    pub websockets: u64,
    pub ws_closed: u64,
    /// Changes that took effect within the timeout.
    pub applied: usize,
    /// Median time from writing a change to its path answering, ms.
    pub apply_ms: f64,
}

/// What the clients saw (shared with the upgrade test, which uses the
/// same clients).
#[derive(Default)]
pub(super) struct Counters {
    pub requests: AtomicU64,
    pub failed: AtomicU64,
    pub reconnects: AtomicU64,
    pub closed_before_answer: AtomicU64,
    pub ws_closed: AtomicU64,
}

/// Runs the changes against `proxy` (serving `set`) under load; leaves it
/// serving `set` again.
pub async fn run(proxy: &mut Proxy, set: &IngressSet, spec: &Spec) -> Result<Outcome> {
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let target = set.plain.clone();
    let addr = proxy.http_addr();
    let mut sockets = Vec::new();
    for i in 0..spec.websockets {
        let ws = open_websocket(addr, &target).await?;
        sockets.push(tokio::spawn(websocket(ws, i, spec.ws_interval, counters.clone(), stop.clone())));
    }
    let mut loads = Vec::new();
    for i in 0..spec.connections {
        let every = Duration::from_secs_f64(1.0 / f64::from(spec.rps_per_connection.max(1)));
        let client = requests(addr, target.clone(), i, every, Reuse::KeepAlive, counters.clone(), stop.clone());
        loads.push(tokio::spawn(client));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changed = changes(proxy, set, spec).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in loads.into_iter().chain(sockets) {
        let _ = t.await;
    }
    proxy.apply(set)?;
    let times = changed?;
    if times.is_empty() {
        bail!("{}: no change took effect", proxy.kind.subject());
    }
    Ok(Outcome {
        requests: counters.requests.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        reconnects: counters.reconnects.load(Ordering::Relaxed),
        closed_before_answer: counters.closed_before_answer.load(Ordering::Relaxed),
        websockets: spec.websockets as u64,
        ws_closed: counters.ws_closed.load(Ordering::Relaxed),
        applied: times.len(),
        apply_ms: median(&times),
    })
}

/// Applies the changes one by one; the times (ms) of those that took effect.
async fn changes(proxy: &mut Proxy, set: &IngressSet, spec: &Spec) -> Result<Vec<f64>> {
    let host = set.hosts[set.churn_host].name.clone();
    let mut times = Vec::new();
    for k in 1..=spec.changes {
        let next = set.with_churn(k);
        let started = Instant::now();
        proxy.apply(&next)?;
        let path = churn_path(k);
        loop {
            if matches!(proxy.status(&host, &path, false).await, Ok(200)) {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if started.elapsed() > spec.change_timeout {
                eprintln!("[l7] {}: change {k} did not take effect in {:?}", proxy.kind.subject(), spec.change_timeout);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(spec.pause).await;
    }
    Ok(times)
}

/// How a client uses its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reuse {
    /// One connection kept alive, reopened when the server closed it
    /// between requests.
    KeepAlive,
    /// A new connection per request (closed after the answer).
    NewConnection,
}

/// One client: a request to `target` every `every` until `stop`.
pub(super) async fn requests(
    addr: SocketAddr,
    target: Target,
    offset: usize,
    every: Duration,
    reuse: Reuse,
    c: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<Conn> = None;
    // Whether the connection has answered a request (it is kept alive).
    let mut reused = false;
    let mut n = offset;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if conn.as_ref().is_some_and(Conn::is_closed) {
            conn = None;
            c.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        if conn.is_none() {
            reused = false;
            match Conn::h1(addr).await {
                Ok(new) => conn = Some(new),
                Err(_) => {
                    c.requests.fetch_add(1, Ordering::Relaxed);
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let Some(open) = conn.as_mut() else { continue };
        let path = &target.paths[n % target.paths.len()];
        n += 1;
        let req = Req::get(path).host(&target.host).timeout(Duration::from_secs(5));
        c.requests.fetch_add(1, Ordering::Relaxed);
        let answer = open.send(&req).await;
        if reuse == Reuse::NewConnection {
            conn = None;
        }
        match answer {
            Ok(r) if (200..300).contains(&r.status) => reused = true,
            Ok(_) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                if reused && closed_before_answer(&e) {
                    c.closed_before_answer.fetch_add(1, Ordering::Relaxed);
                }
                conn = None;
            }
        }
    }
}

/// A WebSocket through the proxy (three tries: a busy machine can delay
/// one handshake past its timeout, which says nothing about reloads).
async fn open_websocket(addr: SocketAddr, target: &Target) -> Result<Ws> {
    let mut last = None;
    for _ in 0..3 {
        match ws_connect(addr, &target.host, &target.paths[0]).await {
            Ok((ws, _)) => return Ok(ws),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
}

/// hyper saw the connection end before a response (or was not ready).
fn closed_before_answer(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_incomplete_message() || h.is_canceled() || h.is_closed())
    })
}

async fn websocket(mut ws: Ws, i: usize, every: Duration, c: Arc<Counters>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        n += 1;
        let text = format!("ws-{i}-{n}");
        match ws_roundtrip(&mut ws, &text).await {
            Ok(reply) if reply.ends_with(&text) => {}
            _ => {
                c.ws_closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    let _ = ws.close(None).await;
}
