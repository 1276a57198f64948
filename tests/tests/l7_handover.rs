//! Upgrading the agent without failing a request: agent B starts beside
//! agent A with identical flags (the ports are shared with SO_REUSEPORT),
//! becomes ready while A still serves, then A gets SIGTERM under load. A
//! closes its listeners at once (connections in its accept queue move to
//! B's: `net.ipv4.tcp_migrate_req`, which the agents set), finishes its
//! requests, closes its kept-alive connections after their next answer,
//! and keeps a WebSocket until its --shutdown-grace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lb_testbed::handover::{Client, Tally, load, wait_ready_pid};
use lb_testbed::l7::{Ingress, L7Bed, LbOptions, Req, Rule, SERVICE_PORT, ws_connect, ws_roundtrip};
use lb_testbed::{LbRun, Process, lb_bin};

/// A's --shutdown-grace: how long its WebSocket must last after SIGTERM.
const GRACE: Duration = Duration::from_secs(3);
/// How long A may take to exit after SIGTERM before the harness kills it.
const STOP_BOUND: Duration = Duration::from_secs(20);
/// Bounds of every load client: requests, and time.
const MAX_REQUESTS: u64 = 20_000;
const LOAD_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_takes_over_without_failed_requests() {
    let mut bed = L7Bed::new().unwrap();
    let pod_a = bed.echo("pod-a").unwrap();
    let pod_b = bed.echo("pod-b").unwrap();
    bed.service("web", &[&pod_a, &pod_b]).unwrap();
    let ingress = Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT));
    bed.ingress("web", &ingress).unwrap();
    // Identical flags for both agents.
    let run = LbOptions::default()
        .apply(
            LbRun::proxy_only()
                .manifests(bed.manifests().path())
                .http_addr(bed.http_addr())
                .https_addr(bed.https_addr())
                .admin_addr(bed.admin_addr()),
        )
        .flag("--shutdown-grace", format!("{}s", GRACE.as_secs()));
    let lb = lb_bin().unwrap();
    let agent_a = Arc::new(Process::spawn(bed.log_dir(), "lb-a", &lb, run.as_args(), STOP_BOUND).unwrap());
    let logs = |agent_b: Option<&Process>| {
        format!("{}\n{}", agent_a.logs(16 * 1024), agent_b.map(|b| b.logs(16 * 1024)).unwrap_or_default())
    };
    let ready = wait_ready_pid(bed.admin_addr(), agent_a.pid(), Duration::from_secs(20), || agent_a.is_running());
    ready.await.unwrap_or_else(|e| panic!("agent A: {e:#}\n{}", logs(None)));

    // A WebSocket through A (the only agent yet).
    let (mut ws, _) = ws_connect(bed.http_addr(), "a.com", "/ws").await.unwrap();
    ws_roundtrip(&mut ws, "before").await.unwrap();

    // The load: new connections, and kept-alive HTTP/1.1 and h2c.
    let stop = Arc::new(AtomicBool::new(false));
    let a_gone = Arc::new(AtomicBool::new(false));
    let req = Req::get("/handover").host("a.com").timeout(Duration::from_secs(5));
    let clients = [
        (Client::NewConnection, 4, Duration::from_millis(4)),
        (Client::KeepAliveH1, 4, Duration::from_millis(5)),
        (Client::KeepAliveH2c, 2, Duration::from_millis(5)),
    ];
    let mut loads = Vec::new();
    for (client, n, every) in clients {
        for _ in 0..n {
            let (req, stop, mark) = (req.clone(), stop.clone(), a_gone.clone());
            let task = load(client, bed.http_addr(), req, every, (MAX_REQUESTS, LOAD_LIMIT), stop, mark);
            loads.push((client, tokio::spawn(task)));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // B starts beside A with the same flags and becomes ready while A serves.
    let agent_b = Process::spawn(bed.log_dir(), "lb-b", &lb, run.as_args(), STOP_BOUND).unwrap();
    let ready = wait_ready_pid(bed.admin_addr(), agent_b.pid(), Duration::from_secs(20), || agent_b.is_running());
    ready.await.unwrap_or_else(|e| panic!("agent B beside A: {e:#}\n{}", logs(Some(&agent_b))));
    assert!(agent_a.is_running(), "A still runs beside B\n{}", logs(Some(&agent_b)));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGTERM to A (Process::stop: SIGTERM, SIGKILL only after STOP_BOUND).
    let sigterm = Instant::now();
    let stopping = tokio::task::spawn_blocking({
        let agent_a = agent_a.clone();
        move || {
            let status = agent_a.stop();
            (status, sigterm.elapsed())
        }
    });
    // The WebSocket keeps echoing until A's grace is over, then is closed.
    let mut last_echo = Duration::ZERO;
    let ws_closed = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match ws_roundtrip(&mut ws, "during").await {
            Ok(_) => last_echo = sigterm.elapsed(),
            Err(_) => break sigterm.elapsed(),
        }
        assert!(sigterm.elapsed() < STOP_BOUND, "the WebSocket through A outlived A's stop bound");
    };
    let (status, a_exited) = stopping.await.unwrap();
    a_gone.store(true, Ordering::Relaxed);
    // The load goes on a little after A is gone, then stops.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut by_client: Vec<(Client, Tally)> = Vec::new();
    for (client, task) in loads {
        let tally = task.await.unwrap();
        match by_client.iter_mut().find(|(c, _)| *c == client) {
            Some((_, total)) => total.add(&tally),
            None => by_client.push((client, tally)),
        }
    }
    let summary: Vec<String> = by_client
        .iter()
        .map(|(c, t)| {
            format!(
                "{c:?}: {} requests, {} failed, {} retried once, {} connections reopened, {} answered after A exited",
                t.requests, t.failed, t.retried, t.reopened, t.after_mark
            )
        })
        .collect();
    eprintln!(
        "handover: {}\nA exited {a_exited:?} after SIGTERM ({status:?}); its WebSocket echoed until {last_echo:?} and \
         was closed at {ws_closed:?}",
        summary.join("\n  ")
    );
    let logs = logs(Some(&agent_b));

    assert!(status.is_some_and(|s| s.success()), "A exits by itself, with success: {status:?}\n{logs}");
    assert!(
        ws_closed >= GRACE && last_echo >= GRACE / 2,
        "the WebSocket through A lasts until A's grace ({GRACE:?}): echoed until {last_echo:?}, closed at \
         {ws_closed:?}\n{logs}"
    );
    assert!(ws_closed <= a_exited + Duration::from_secs(1), "the WebSocket closes when A exits\n{logs}");
    for (client, tally) in &by_client {
        assert_eq!(tally.failed, 0, "{client:?}: failed requests: {:#?}\n{logs}", tally.errors);
        assert!(tally.after_mark > 0, "{client:?}: B answered after A exited\n{logs}");
        assert!(tally.requests < MAX_REQUESTS * 10, "{client:?}: the load stayed within its bounds");
    }
    assert!(agent_b.is_running(), "B still serves\n{logs}");
}
