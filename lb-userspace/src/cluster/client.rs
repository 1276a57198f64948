//! Connecting to the API server.

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client for `--kubeconfig`, else the in-cluster service account, else
/// `$KUBECONFIG` or `~/.kube/config` (kube's inference).
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client> {
    let config = match kubeconfig {
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
    tracing::info!(server = %config.cluster_url, "connecting to the Kubernetes API");
    Client::try_from(config).context("creating the Kubernetes client")
}
