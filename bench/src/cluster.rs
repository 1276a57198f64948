//! The cluster every L4 and control-plane subject is given, in one model:
//! lb reads it as Kubernetes YAML ([`Cluster::to_manifests`]), kube-proxy's
//! layouts are generated from it ([`crate::kube_proxy`]). So the subjects
//! always serve the same Services with the same endpoints.

use std::net::Ipv4Addr;

use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// `TCP` / `UDP`, as Kubernetes spells it.
    pub fn kube(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// `tcp` / `udp`, as iptables and nft spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One ready endpoint of a service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// The node it runs on (`node1`, …).
    pub node: String,
}

/// One Service with one port (a kube-proxy "service port").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// The port's name (`http`).
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub target_port: u16,
    /// Set for NodePort services.
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    /// `ns/name:port_name` — kube-proxy's ServicePortName.
    pub fn port_id(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.name, self.port_name)
    }
}

/// A node: its name and the addresses NodePorts answer on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub ips: Vec<Ipv4Addr>,
    /// The cluster's pod CIDR (`10.244.0.0/16`), kube-proxy's `--cluster-cidr`.
    pub cluster_cidr: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    pub services: Vec<Service>,
}

/// Namespace of the generated background services.
pub const BACKGROUND_NAMESPACE: &str = "bench";

impl Cluster {
    /// `count` background Services, as in a busy cluster: each a ClusterIP
    /// Service (10.96.0.0/12) with one external IP (100.64.0.0/10, so it is
    /// a frontend of lb's data path too) on TCP port 80, with two ready
    /// endpoints (one on each node, at addresses no test sends to). They are
    /// "present" — rules, map entries — but carry no traffic.
    pub fn background(count: usize) -> Self {
        let services = (0..count).map(background_service).collect();
        Self { services }
    }

    /// Adds `svc` (the measured one) after the background.
    pub fn with(mut self, svc: Service) -> Self {
        self.services.push(svc);
        self
    }

    /// Index of the service with this `ns/name:port`.
    pub fn position(&self, port_id: &str) -> Option<usize> {
        self.services.iter().position(|s| s.port_id() == port_id)
    }

    /// The cluster as Kubernetes YAML for `lb run --manifests`: one Service
    /// and one EndpointSlice per service (JSON documents, which are YAML).
    pub fn to_manifests(&self) -> String {
        let mut out = String::new();
        for s in &self.services {
            out.push_str("---\n");
            out.push_str(&service_json(s).to_string());
            out.push_str("\n---\n");
            out.push_str(&endpoint_slice_json(s).to_string());
            out.push('\n');
        }
        out
    }

    /// One Service per file (`{ns}-{name}.yaml`), as a directory holds them:
    /// `(file name, contents)`. A change of one service rewrites one file.
    pub fn manifest_files(&self) -> Vec<(String, String)> {
        self.services
            .iter()
            .map(|s| {
                let body = format!("{}\n---\n{}\n", service_json(s), endpoint_slice_json(s));
                (format!("{}-{}.yaml", s.namespace, s.name), body)
            })
            .collect()
    }
}

fn background_service(i: usize) -> Service {
    let i32 = u32::try_from(i).expect("fewer than 2^32 services");
    // 10.96.0.0/12 holds a million ClusterIPs; skip .0 of 10.96.0.0.
    let cluster_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i32);
    let external_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + 1 + i32);
    // Endpoints at 10.244.{1,2}.0/24-like addresses well outside the bed's
    // pods (the pods' CIDRs are /24s; these are in 10.244.128.0/17).
    let ep = |node: u32| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 128, 0)) + 2 + 2 * i32 + node);
    Service {
        namespace: BACKGROUND_NAMESPACE.into(),
        name: format!("svc-{i:05}"),
        port_name: "http".into(),
        protocol: Protocol::Tcp,
        cluster_ip,
        port: 80,
        target_port: 8080,
        node_port: None,
        external_ips: vec![external_ip],
        endpoints: vec![Endpoint { ip: ep(0), node: "node1".into() }, Endpoint { ip: ep(1), node: "node2".into() }],
    }
}

fn service_json(s: &Service) -> serde_json::Value {
    let mut port = json!({
        "name": s.port_name,
        "protocol": s.protocol.kube(),
        "port": s.port,
        "targetPort": s.target_port,
    });
    if let Some(np) = s.node_port {
        port["nodePort"] = json!(np);
    }
    let mut spec = json!({
        "type": if s.node_port.is_some() { "NodePort" } else { "ClusterIP" },
        "clusterIP": s.cluster_ip.to_string(),
        "ports": [port],
    });
    if !s.external_ips.is_empty() {
        spec["externalIPs"] = json!(s.external_ips.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": s.name, "namespace": s.namespace },
        "spec": spec,
    })
}

fn endpoint_slice_json(s: &Service) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = s
        .endpoints
        .iter()
        .map(|e| {
            json!({
                "addresses": [e.ip.to_string()],
                "conditions": { "ready": true, "serving": true, "terminating": false },
                "nodeName": e.node,
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{}-bench", s.name),
            "namespace": s.namespace,
            "labels": { "kubernetes.io/service-name": s.name },
        },
        "addressType": "IPv4",
        "ports": [{ "name": s.port_name, "protocol": s.protocol.kube(), "port": s.target_port }],
        "endpoints": endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_services_have_distinct_addresses() {
        let c = Cluster::background(3000);
        let mut ips: Vec<Ipv4Addr> = c.services.iter().map(|s| s.cluster_ip).collect();
        ips.extend(c.services.iter().flat_map(|s| s.external_ips.clone()));
        ips.extend(c.services.iter().flat_map(|s| s.endpoints.iter().map(|e| e.ip)));
        let n = ips.len();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), n);
        assert_eq!(c.services[0].cluster_ip, Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(c.services[0].endpoints[0].ip, Ipv4Addr::new(10, 244, 128, 2));
    }
}
