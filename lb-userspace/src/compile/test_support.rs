//! Helpers shared by the compilers' tests: snapshots from YAML strings.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::snapshot::Snapshot;

/// A snapshot of the objects of a multi-document YAML (namespaced objects
/// without a namespace are in `default`).
pub fn snapshot(yaml: &str) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for document in serde_norway::Deserializer::from_str(yaml) {
        let mut value = Value::deserialize(document).unwrap();
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let cluster_scoped = matches!(kind.as_str(), "IngressClass" | "Node" | "Namespace");
        if !cluster_scoped && value.pointer("/metadata/namespace").is_none() {
            value["metadata"]["namespace"] = "default".into();
        }
        match kind.as_str() {
            "Service" => snapshot.services.insert(Arc::new(serde_json::from_value(value).unwrap())),
            "EndpointSlice" => snapshot.endpoint_slices.insert(Arc::new(serde_json::from_value(value).unwrap())),
            "Ingress" => snapshot.ingresses.insert(Arc::new(serde_json::from_value(value).unwrap())),
            "IngressClass" => snapshot.ingress_classes.insert(Arc::new(serde_json::from_value(value).unwrap())),
            "Secret" => snapshot.secrets.insert(Arc::new(serde_json::from_value(value).unwrap())),
            "Node" => snapshot.nodes.insert(Arc::new(serde_json::from_value(value).unwrap())),
            "Namespace" => snapshot.namespaces.insert(Arc::new(serde_json::from_value(value).unwrap())),
            "IPAddressPool" => snapshot.ip_address_pools.insert(Arc::new(serde_json::from_value(value).unwrap())),
            "L2Advertisement" => snapshot.l2_advertisements.insert(Arc::new(serde_json::from_value(value).unwrap())),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    snapshot
}

/// An EndpointSlice of `service` with one endpoint on `node-a` per
/// `(ip, extra YAML of the endpoint)`.
pub fn slice(name: &str, service: &str, ports: &str, endpoints: &[(&str, &str)]) -> String {
    let endpoints: String =
        endpoints.iter().map(|(ip, extra)| format!("\n- addresses: [{ip}]\n  nodeName: node-a{extra}")).collect();
    format!(
        "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  labels:
    kubernetes.io/service-name: {service}
addressType: IPv4
ports: {ports}
endpoints:{endpoints}
"
    )
}
