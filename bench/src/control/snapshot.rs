//! The bench's [`Cluster`] as lb's [`Snapshot`]: the same Kubernetes
//! objects `lb run --manifests` would read ([`Cluster::to_manifests`]),
//! deserialized in-process so the timed part is only lb's compile and apply.

use anyhow::{Context, Result, bail};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use lb_userspace::snapshot::Snapshot;
use serde_json::Value;

use crate::cluster::{self, Cluster};

/// The cluster's Services and EndpointSlices as a snapshot.
pub fn of_cluster(cluster: &Cluster) -> Result<Snapshot> {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for document in documents(&cluster.to_manifests()) {
        let document = document?;
        match kind(&document) {
            "Service" => services.push(serde_json::from_value(document).context("a bench Service")?),
            "EndpointSlice" => slices.push(serde_json::from_value(document).context("a bench EndpointSlice")?),
            other => bail!("unexpected kind {other:?} in the bench's manifests"),
        }
    }
    Ok(Snapshot::new(services, slices))
}

/// `service`'s EndpointSlice as the watch delivers it (deserialized).
pub fn endpoint_slice_of(service: &cluster::Service) -> Result<EndpointSlice> {
    let single = Cluster { services: vec![service.clone()] };
    let slice = documents(&single.to_manifests())
        .filter_map(Result::ok)
        .find(|d| kind(d) == "EndpointSlice")
        .with_context(|| format!("no EndpointSlice generated for {}", service.port_id()))?;
    serde_json::from_value(slice).context("a bench EndpointSlice")
}

/// The documents of [`Cluster::to_manifests`]: one JSON object per line
/// between `---` separators.
fn documents(manifests: &str) -> impl Iterator<Item = Result<Value>> + '_ {
    manifests
        .lines()
        .filter(|line| !line.trim().is_empty() && line.trim() != "---")
        .map(|line| serde_json::from_str(line).context("a bench manifest is not one JSON document per line"))
}

fn kind(document: &Value) -> &str {
    document.get("kind").and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_snapshot_holds_every_object_and_follows_changes() {
        let mut cluster = Cluster::background(5);
        let mut snapshot = of_cluster(&cluster).unwrap();
        assert_eq!((snapshot.services.len(), snapshot.endpoint_slices.len()), (5, 5));
        cluster.services[3].endpoints[0].ip = "10.250.0.1".parse().unwrap();
        snapshot.endpoint_slices.insert(Arc::new(endpoint_slice_of(&cluster.services[3]).unwrap()));
        assert_eq!(snapshot, of_cluster(&cluster).unwrap());
    }
}
