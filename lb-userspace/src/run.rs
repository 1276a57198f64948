//! `lb run`: the node agent's main loop.
//!
//! Order of start: the admin listener and the proxy listeners are bound
//! first (a taken port fails the start at once); the data path is loaded;
//! the first snapshot fills the route table and the maps; only then are the
//! programs attached (so no handed-off request meets an empty route table)
//! and `/readyz` turns ready.

mod l4;
mod l7;
mod liveness;
mod settings;
mod writers;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lb_proxy::Proxy;
use lb_routes::RouteTable;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::admin;
use crate::cli::RunArgs;
use crate::dataplane::{PinDir, PinLock};
use crate::diagnostics::Diagnostic;
use crate::inspect::{Inspector, Query};
use crate::metrics::{ControllerLabels, Metrics};
use crate::snapshot::Snapshot;
use crate::status::in_memory;
use crate::status::ipam::{AddressPool, IpamOptions};
use crate::{cluster, manifests};
use l4::L4;
use l7::{L7, enable_request_migration, proxy_config};
use liveness::Liveness;
use settings::AgentSettings;
use writers::{StatusSources, Writers};

pub fn run(args: RunArgs) -> Result<()> {
    crate::logging::init(&args.log_level, args.log_format);
    let ready_file = admin::ReadyFile::new(args.ready_file.clone());
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.worker_threads))
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run_agent(args));
    // Also when the agent fails: it is not ready any more.
    ready_file.clear();
    result
}

async fn run_agent(args: RunArgs) -> Result<()> {
    let settings = AgentSettings::from_args(&args)?;
    let ready_file = admin::ReadyFile::new(args.ready_file.clone());
    ready_file.clear();
    let (ready_tx, ready_rx) = watch::channel(false);
    let admin_listener = admin::bind(args.admin_addr).await?;
    info!(admin = %args.admin_addr, "admin listening (/healthz, /readyz, /metrics)");
    let metrics = Arc::new(Metrics::new(ControllerLabels {
        controller_namespace: args.cluster.leader_election_namespace.clone(),
        controller_class: args.ingress.controller_name.clone(),
        controller_pod: args.cluster.identity.clone().unwrap_or_else(|| settings.node_name.clone()),
    }));

    enable_request_migration();
    let mut proxy = Proxy::bind(proxy_config(&args.ingress), RouteTable::empty()).await?;
    if args.ingress.request_metrics {
        proxy = proxy.with_metrics(metrics.requests().clone());
    }
    let (http, https) = (proxy.http_addr(), proxy.https_addr());
    info!(%http, %https, "ingress proxy bound (it listens once routed)");
    let routes = proxy.routes();
    let mut l7 = L7::new(&args.ingress, routes.clone(), metrics.clone());
    let (tx, mut snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let (diagnostics_tx, diagnostics) = watch::channel(Arc::new(Vec::new()));
    let (queries_tx, mut queries) = mpsc::channel::<Query>(16);
    let inspector = Inspector::new(queries_tx, routes.clone(), snapshots.clone(), diagnostics.clone(), metrics.clone());
    let admin_task = tokio::spawn(admin::serve(admin_listener, ready_rx, inspector));
    let (stop_proxy, proxy_stopped) = oneshot::channel::<()>();
    let mut proxy_task = tokio::spawn(proxy.run(async {
        let _ = proxy_stopped.await;
    }));
    // The data path is this agent's unless another agent holds its pin
    // directory (an upgrade starts the new agent beside the old one): then
    // this one stands by, serving Ingress, until the other stops.
    let mut l4 = None;
    let mut standby = None;
    if let Some(data_path) = &settings.data_path {
        data_path.pin_dir.prepare()?;
        match data_path.pin_dir.try_lock()? {
            Some(lock) => l4 = Some(L4::load(&args, &settings, data_path, lock, http, https, metrics.clone())?),
            None => {
                warn!(
                    pin_dir = %data_path.pin_dir.root().display(),
                    "another agent holds the data path: standing by until it stops (the proxy serves meanwhile)"
                );
                standby = Some(data_path.pin_dir.clone());
            }
        }
    }
    let mut writers = None;
    let mut source = match &args.manifests {
        Some(dir) => {
            // No API server to write status to: addresses go into the
            // snapshot in memory.
            let (files_tx, files) = watch::channel(Arc::new(Snapshot::default()));
            let ipam = IpamOptions { load_balancer_class: args.cluster.load_balancer_class.clone() };
            let pools = settings.config.address_pools.clone();
            let dir = dir.clone();
            tokio::spawn(async move {
                tokio::try_join!(manifests::watch_dir(dir, files_tx), with_addresses(files, tx, pools, ipam))
                    .map(|_| ())
            })
        }
        None => {
            let client = cluster::connect(args.cluster.kubeconfig.as_deref()).await?;
            // This node's liveness Lease is renewed (and every node's
            // followed: `writers.node_leases()`) even with --no-status.
            let status = (!args.cluster.no_status).then(|| StatusSources {
                ingress: l7.options().clone(),
                snapshots: snapshots.clone(),
                diagnostics,
            });
            writers = Some(Writers::start(client.clone(), &args, &settings, status));
            let metallb_recheck = args.cluster.metallb_recheck;
            tokio::spawn(cluster::watch_cluster(client, l7.options().clone(), metallb_recheck, tx))
        }
    };
    let mut liveness = Liveness::new(writers.as_ref().map(Writers::node_leases));
    // Fill the maps and routes from the first snapshot before any packet or
    // probe can see them.
    tokio::select! {
        changed = snapshots.changed() => changed.context("the source stopped before its first snapshot")?,
        ended = &mut source => return source_ended(ended),
    }
    let first = snapshots.borrow_and_update().clone();
    diagnostics_tx.send_replace(Arc::new(sync(&mut l7, l4.as_mut(), &first, &liveness).await));
    // The proxy listens in its own task once routed: not ready before, or a
    // client told "ready" could still be refused.
    tokio::select! {
        () = routes.listening() => {}
        ended = &mut proxy_task => return proxy_ended(ended),
    }
    if let Some(l4) = &mut l4 {
        l4.attach()?;
    }
    ready_tx.send_replace(true);
    ready_file.set()?;
    info!(source = %source_name(&args), xdp = l4.is_some(), standby = standby.is_some(), "ready");

    let mut heartbeat = tokio::time::interval(l4::HEARTBEAT_PERIOD);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    bail!("the source stopped");
                }
                let snapshot = snapshots.borrow_and_update().clone();
                diagnostics_tx.send_replace(Arc::new(sync(&mut l7, l4.as_mut(), &snapshot, &liveness).await));
            }
            ended = &mut source => return source_ended(ended),
            ended = &mut proxy_task => return proxy_ended(ended),
            Some(query) = queries.recv() => match query {
                // A reader that went away needs no answer.
                Query::Services(reply) => drop(reply.send(l4.as_ref().and_then(L4::view))),
            },
            lock = take_over(standby.as_ref()) => {
                standby = None;
                let data_path = settings.data_path.as_ref().expect("standing by only with a data path");
                let mut loaded = L4::load(&args, &settings, data_path, lock?, http, https, metrics.clone())?;
                let snapshot = snapshots.borrow().clone();
                diagnostics_tx.send_replace(Arc::new(sync(&mut l7, Some(&mut loaded), &snapshot, &liveness).await));
                loaded.attach()?;
                info!("took over the data path");
                l4 = Some(loaded);
            }
            () = liveness.changed() => {
                if let Some(l4) = &mut l4 {
                    let snapshot = snapshots.borrow().clone();
                    l4.announce(&snapshot, |node| liveness.is_alive(node));
                }
            }
            _ = heartbeat.tick() => {
                if let Some(l4) = &mut l4 {
                    l4.heartbeat();
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    info!("shutting down: draining the proxy; the pinned data path keeps serving with the last tables");
    // The data path first: releasing the pin directory lets an agent
    // standing by take it over now, not after the drain.
    drop(l4);
    ready_tx.send_replace(false);
    ready_file.clear();
    // Listeners close at once (a new agent beside this one takes over
    // their ports), then the proxy drains.
    admin_task.abort();
    let _ = stop_proxy.send(());
    if let Some(writers) = writers {
        writers.stop().await;
    }
    let drained = proxy_task.await;
    match drained {
        Ok(result) => result.context("draining the ingress proxy"),
        Err(e) => bail!("the proxy panicked: {e}"),
    }
}

/// Compiles a snapshot into the routes and (with XDP) the maps; returns
/// the problems found.
async fn sync(l7: &mut L7, l4: Option<&mut L4>, snapshot: &Arc<Snapshot>, liveness: &Liveness) -> Vec<Diagnostic> {
    let mut diagnostics = l7.sync(snapshot);
    if let Some(l4) = l4 {
        diagnostics.extend(l4.sync(snapshot).await);
        diagnostics.extend(l4.announce(snapshot, |node| liveness.is_alive(node)));
    }
    diagnostics.sort();
    diagnostics.dedup();
    diagnostics
}

/// How often a standing-by agent looks whether the pin directory is free.
const STANDBY_POLL: Duration = Duration::from_millis(500);

/// Resolves with the pin directory's lock once the agent holding it is
/// gone; never without a directory to wait for.
async fn take_over(standby: Option<&PinDir>) -> Result<PinLock> {
    let Some(dir) = standby else { return std::future::pending().await };
    loop {
        if let Some(lock) = dir.try_lock()? {
            return Ok(lock);
        }
        tokio::time::sleep(STANDBY_POLL).await;
    }
}

fn source_name(args: &RunArgs) -> String {
    match &args.manifests {
        Some(dir) => format!("--manifests {}", dir.display()),
        None => "the Kubernetes API".into(),
    }
}

/// Forwards each snapshot of `files` to `tx` with the load-balancer
/// addresses IPAM gives (`--manifests` mode); ends when `files` does.
async fn with_addresses(
    mut files: watch::Receiver<Arc<Snapshot>>,
    tx: watch::Sender<Arc<Snapshot>>,
    pools: Vec<AddressPool>,
    ipam: IpamOptions,
) -> Result<()> {
    let mut reported: Vec<Diagnostic> = Vec::new();
    while files.changed().await.is_ok() {
        let snapshot = files.borrow_and_update().clone();
        let (with, problems) = in_memory::with_addresses(&snapshot, &pools, &ipam);
        if problems != reported {
            for problem in &problems {
                warn!("{problem}");
            }
            reported = problems;
        }
        tx.send_replace(Arc::new(with));
    }
    Ok(())
}

fn source_ended(ended: Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    match ended {
        Ok(Ok(())) => bail!("the source stopped"),
        Ok(Err(e)) => Err(e.context("following the source")),
        Err(e) => bail!("the source panicked: {e}"),
    }
}

fn proxy_ended(ended: Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    match ended {
        Ok(Ok(())) => bail!("the proxy stopped"),
        Ok(Err(e)) => Err(e.context("the ingress proxy failed")),
        Err(e) => bail!("the proxy panicked: {e}"),
    }
}
