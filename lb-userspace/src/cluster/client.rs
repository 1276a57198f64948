//! Connecting to the API server.

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client for `--kubeconfig`, else the in-cluster service account, else
/// `$KUBECONFIG` or `~/.kube/config` (kube's inference).
///
/// The client does not retry by itself (kube's default retries a 503 for
/// up to 15 times with delays growing to minutes): the reflectors retry
/// with their own backoff (at most 30 s apart), and the leader election
/// and the status task retry every round, so that no call outlives an
/// outage by minutes or holds a leader that can no longer renew.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file =
                Kubeconfig::read_from(path).with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => Config::infer().await.context(
            "finding the cluster: not in a pod (no service account), and no $KUBECONFIG or ~/.kube/config \
             (pass --kubeconfig, or --manifests to serve a directory of YAML)",
        )?,
    };
    config.default_retry = false;
    tracing::info!(server = %config.cluster_url, "connecting to the Kubernetes API");
    Client::try_from(config).context("creating the Kubernetes client")
}
