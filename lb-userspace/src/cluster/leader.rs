//! Leader election on a `coordination.k8s.io` Lease, so that one agent of
//! the DaemonSet writes status and Events at a time.
//!
//! The algorithm is client-go's ([`super::lease`]): the holder renews the
//! Lease every retry period, the others take it over once it has not
//! changed for a lease duration on their own clock. A leader that could
//! not renew for the renew deadline stops acting as leader before anyone
//! else may take over. An agent that stops releases the Lease so that
//! another takes over at once.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tracing::info;

use super::lease::{LeaseHolder, LeaseSettings};

/// How long a released leader Lease keeps the others waiting.
const RELEASED: Duration = Duration::from_secs(1);

/// Takes part in the election until `stop` completes, telling `leader`
/// whether we lead. On stop, a Lease we hold is released.
pub async fn elect(
    client: Client,
    settings: LeaseSettings,
    leader: watch::Sender<bool>,
    stop: impl Future<Output = ()>,
) {
    let mut election = LeaseHolder::new(client, settings);
    let mut stop = std::pin::pin!(stop);
    loop {
        let leading = election.round().await;
        if leader.send_replace(leading) != leading {
            if leading {
                info!(lease = %election.settings.name, identity = %election.settings.identity, "leading: writing status and Events");
            } else {
                info!(lease = %election.settings.name, "not leading");
            }
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(election.settings.retry_period) => {}
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        election.release(RELEASED).await;
    }
}
