//! `lb run`: the node agent's main loop.

use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use crate::cli::RunArgs;
use crate::compile::{CompileOptions, NodeContext, l4::compile_l4};
use crate::dataplane::{Applier, Datapath, DataplaneSettings};
use crate::manifests;
use crate::node;
use crate::snapshot::Snapshot;

pub fn run(args: RunArgs) -> Result<()> {
    init_tracing(&args.log_level);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run_agent(args))
}

fn init_tracing(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

async fn run_agent(args: RunArgs) -> Result<()> {
    let uplinks = args.interfaces.iter().map(|name| node::uplink(name)).collect::<Result<Vec<_>>>()?;
    let node = NodeContext {
        name: args.node_name.clone().unwrap_or_else(node::default_node_name),
        addresses: node_addresses(&args)?,
    };
    info!(node = %node.name, addresses = ?node.addresses, "node");
    let settings = DataplaneSettings {
        maglev_table_size: args.maglev_table_size,
        max_services: args.max_services,
        conntrack_entries: args.conntrack_entries,
        snat_ports: args.snat_port_range,
        ..DataplaneSettings::default()
    };
    let (mut datapath, maps) = Datapath::load(&settings)?;
    spawn_kernel_log_reader(&mut datapath)?;
    let mut applier = Applier::new(maps, settings.maglev_table_size, settings.max_services);
    let options = CompileOptions { maglev_table_size: settings.maglev_table_size };

    let (tx, mut snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let mut source = tokio::spawn(manifests::watch_dir(args.manifests.clone(), tx));
    // Fill the maps from the first snapshot before any packet can see them.
    tokio::select! {
        changed = snapshots.changed() => changed.context("the manifests source stopped before its first snapshot")?,
        ended = &mut source => return source_ended(ended),
    }
    let first = snapshots.borrow_and_update().clone();
    sync(&mut applier, &first, &node, &options);
    for uplink in &uplinks {
        node::prepare_uplink(&uplink.name)?;
        datapath.attach(applier.maps_mut(), uplink, args.xdp_mode)?;
    }
    info!(manifests = %args.manifests.display(), "ready");

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    bail!("the manifests source stopped");
                }
                let snapshot = snapshots.borrow_and_update().clone();
                sync(&mut applier, &snapshot, &node, &options);
            }
            ended = &mut source => return source_ended(ended),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    info!("shutting down; the kernel detaches the programs");
    drop(datapath);
    Ok(())
}

/// Forwards the kernel programs' aya-log records to our log.
fn spawn_kernel_log_reader(datapath: &mut Datapath) -> Result<()> {
    let logger = datapath.take_logger()?;
    // SAFETY: the fd is the logger's ring buffer map, owned by the logger
    // that the AsyncFd owns from here on: it stays open and the same.
    let mut logger = unsafe { tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("watching the eBPF log ring buffer")?;
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}

fn source_ended(ended: Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    match ended {
        Ok(Ok(())) => bail!("the manifests source stopped"),
        Ok(Err(e)) => Err(e.context("watching --manifests")),
        Err(e) => bail!("the manifests source panicked: {e}"),
    }
}

/// `--node-ip`, else every IPv4 address of the uplinks.
fn node_addresses(args: &RunArgs) -> Result<Vec<Ipv4Addr>> {
    if !args.node_ips.is_empty() {
        return Ok(args.node_ips.clone());
    }
    let mut out = Vec::new();
    for name in &args.interfaces {
        out.extend(node::ipv4_addresses(name)?);
    }
    Ok(out)
}

/// Compiles a snapshot and applies the result; problems are logged, and
/// whatever compiled keeps being served.
fn sync(applier: &mut Applier, snapshot: &Snapshot, node: &NodeContext, options: &CompileOptions) {
    let (tables, diagnostics) = compile_l4(snapshot, node, options);
    for diagnostic in &diagnostics {
        warn!("{diagnostic}");
    }
    match applier.apply(&tables) {
        Ok(report) => {
            for name in &report.services_over_capacity {
                error!(service = %name, "no free service id (raise --max-services); not served");
            }
            info!(
                frontends = tables.frontends.len(),
                services = tables.services.len(),
                frontends_written = report.frontends_written,
                frontends_deleted = report.frontends_deleted,
                backends_written = report.backends_written,
                backends_deleted = report.backends_deleted,
                maglev_slots_written = report.maglev_slots_written,
                "applied"
            );
        }
        Err(e) => error!("applying to the BPF maps failed (will retry on the next change): {e:#}"),
    }
}
