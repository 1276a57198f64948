//! kube-proxy's Service semantics in the L4 compiler: traffic policies,
//! topology hints, the terminating fallback, drop versus reject, session
//! affinity, cluster IPs and the Services kube-proxy leaves alone. The
//! endpoint cases follow kube-proxy's own `CategorizeEndpoints` table.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::*;
use crate::compile::tables::{FrontendAddr, FrontendEntry, Protocol, ServiceEntry};
use crate::compile::test_support::snapshot;

/// One endpoint: address, node, conditions and hints.
#[derive(Clone, Copy)]
struct Ep {
    ip: &'static str,
    node: &'static str,
    ready: bool,
    serving: bool,
    terminating: bool,
    zones: &'static [&'static str],
    nodes: &'static [&'static str],
}

const fn ep(ip: &'static str, node: &'static str) -> Ep {
    Ep { ip, node, ready: true, serving: true, terminating: false, zones: &[], nodes: &[] }
}

impl Ep {
    const fn zones(self, zones: &'static [&'static str]) -> Self {
        Self { zones, ..self }
    }
    const fn for_nodes(self, nodes: &'static [&'static str]) -> Self {
        Self { nodes, ..self }
    }
    const fn not_ready(self) -> Self {
        Self { ready: false, serving: false, ..self }
    }
    const fn terminating(self) -> Self {
        Self { ready: false, serving: true, terminating: true, ..self }
    }

    fn yaml(&self) -> String {
        let mut hints = String::new();
        if !self.zones.is_empty() || !self.nodes.is_empty() {
            let zones: Vec<String> = self.zones.iter().map(|z| format!("{{name: {z}}}")).collect();
            let nodes: Vec<String> = self.nodes.iter().map(|n| format!("{{name: {n}}}")).collect();
            hints = format!("\n  hints: {{forZones: [{}], forNodes: [{}]}}", zones.join(", "), nodes.join(", "));
        }
        format!(
            "\n- addresses: [{}]\n  nodeName: {}\n  conditions: {{ready: {}, serving: {}, terminating: {}}}{hints}",
            self.ip, self.node, self.ready, self.serving, self.terminating
        )
    }
}

/// A Service `svc` (cluster IP 10.96.0.10, node port 30010) with `spec`
/// lines added, its endpoints, and this node (`node-a`) in `zone`.
fn cluster(spec: &str, endpoints: &[Ep], zone: Option<&str>) -> String {
    let endpoints: String = endpoints.iter().map(Ep::yaml).collect();
    let labels = zone.map(|z| format!("\n  labels: {{topology.kubernetes.io/zone: {z}}}")).unwrap_or_default();
    format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: svc}}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{{port: 80, targetPort: 8080, nodePort: 30010}}]{spec}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-1
  labels: {{kubernetes.io/service-name: svc}}
addressType: IPv4
ports: [{{port: 8080}}]
endpoints:{endpoints}
---
apiVersion: v1
kind: Node
metadata:
  name: node-a{labels}
"
    )
}

fn node() -> NodeContext {
    NodeContext { name: "node-a".into(), addresses: vec![Ipv4Addr::new(192, 168, 1, 10)], ingress: None }
}

fn compile(yaml: &str) -> (DataplaneTables, Vec<Diagnostic>) {
    compile_l4(&snapshot(yaml), &node(), &CompileOptions::default())
}

const CLUSTER_IP: FrontendAddr = FrontendAddr { ip: Ipv4Addr::new(10, 96, 0, 10), port: 80, protocol: Protocol::Tcp };
const NODE_PORT: FrontendAddr =
    FrontendAddr { ip: Ipv4Addr::new(192, 168, 1, 10), port: 30010, protocol: Protocol::Tcp };

/// The backend IPs behind a frontend of the XDP program or of the sockets.
fn ips(tables: &DataplaneTables, frontends: &BTreeMap<FrontendAddr, FrontendEntry>, at: FrontendAddr) -> Vec<String> {
    let view = &frontends.get(&at).unwrap_or_else(|| panic!("no frontend {at}")).service;
    tables.services[view].backends.iter().map(|b| b.ip.to_string()).collect()
}

fn socket_ips(tables: &DataplaneTables, at: FrontendAddr) -> Vec<String> {
    ips(tables, &tables.socket_frontends, at)
}

fn entry<'t>(
    tables: &'t DataplaneTables,
    frontends: &BTreeMap<FrontendAddr, FrontendEntry>,
    at: FrontendAddr,
) -> &'t ServiceEntry {
    &tables.services[&frontends[&at].service]
}

#[test]
fn cluster_ips_are_socket_frontends_only() {
    let (tables, diagnostics) = compile(&cluster("", &[ep("10.244.1.1", "node-a"), ep("10.244.2.1", "node-b")], None));
    assert_eq!(diagnostics, []);
    assert!(!tables.frontends.contains_key(&CLUSTER_IP), "the XDP program never sees cluster IPs");
    assert_eq!(socket_ips(&tables, CLUSTER_IP), ["10.244.1.1", "10.244.2.1"]);
    assert_eq!(socket_ips(&tables, NODE_PORT), ["10.244.1.1", "10.244.2.1"]);
    assert!(tables.socket_frontends.values().all(|f| !f.snat));
    assert_eq!(tables.services.len(), 1, "one view serves both hooks");
    assert!(tables.services.values().all(|e| e.backends.iter().all(|b| b.port == 8080)));
}

#[test]
fn every_cluster_ip_family_and_protocol() {
    let yaml = "
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, 'fd00::10']
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
";
    let (tables, diagnostics) = compile(yaml);
    assert_eq!(diagnostics, []);
    let keys: Vec<String> = tables.socket_frontends.keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["10.96.0.10:53/TCP", "10.96.0.10:53/UDP"]);
    assert!(tables.frontends.is_empty());
    // No endpoints: the connects are refused, not dropped.
    assert!(tables.services.values().all(|e| e.backends.is_empty() && !e.drop_when_empty));

    let (_, diagnostics) = compile(&yaml.replace("clusterIPs: [10.96.0.10, 'fd00::10']", "clusterIPs: [10.96.0.300]"));
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].field, "spec.clusterIPs[0]");
}

#[test]
fn internal_policy_local_keeps_cluster_ip_traffic_on_the_node() {
    let endpoints = [ep("10.244.1.1", "node-a"), ep("10.244.2.1", "node-b")];
    let (tables, _) = compile(&cluster("\n  internalTrafficPolicy: Local", &endpoints, None));
    assert_eq!(socket_ips(&tables, CLUSTER_IP), ["10.244.1.1"]);
    // Only the cluster IP: node ports and the XDP path use every endpoint.
    assert_eq!(socket_ips(&tables, NODE_PORT), ["10.244.1.1", "10.244.2.1"]);
    assert_eq!(ips(&tables, &tables.frontends, NODE_PORT), ["10.244.1.1", "10.244.2.1"]);
}

#[test]
fn local_policy_without_local_endpoints_drops_and_without_any_rejects() {
    let elsewhere = [ep("10.244.2.1", "node-b")];
    let (tables, _) = compile(&cluster("\n  internalTrafficPolicy: Local", &elsewhere, None));
    let internal = entry(&tables, &tables.socket_frontends, CLUSTER_IP);
    assert!(internal.backends.is_empty() && internal.drop_when_empty);

    let (tables, _) = compile(&cluster("\n  externalTrafficPolicy: Local", &elsewhere, None));
    let external = entry(&tables, &tables.frontends, NODE_PORT);
    assert!(external.backends.is_empty() && external.drop_when_empty);
    assert_eq!(socket_ips(&tables, CLUSTER_IP), ["10.244.2.1"]);

    // Only a not-ready endpoint anywhere: nothing usable, so rejected.
    let (tables, _) = compile(&cluster("\n  internalTrafficPolicy: Local", &[elsewhere[0].not_ready()], None));
    let internal = entry(&tables, &tables.socket_frontends, CLUSTER_IP);
    assert!(internal.backends.is_empty() && !internal.drop_when_empty);
    // A serving, terminating one elsewhere counts as usable: dropped.
    let (tables, _) = compile(&cluster("\n  internalTrafficPolicy: Local", &[elsewhere[0].terminating()], None));
    assert!(entry(&tables, &tables.socket_frontends, CLUSTER_IP).drop_when_empty);
}

#[test]
fn local_policy_falls_back_to_local_terminating_endpoints() {
    let endpoints = [ep("10.244.1.1", "node-a").terminating(), ep("10.244.2.1", "node-b")];
    let (tables, _) = compile(&cluster("\n  internalTrafficPolicy: Local", &endpoints, None));
    assert_eq!(socket_ips(&tables, CLUSTER_IP), ["10.244.1.1"]);
    // Cluster scope: a ready endpoint exists, so the terminating one is not used.
    assert_eq!(socket_ips(&tables, NODE_PORT), ["10.244.2.1"]);
}

#[test]
fn cluster_scope_falls_back_to_serving_terminating_endpoints_only() {
    let endpoints = [
        ep("10.244.1.1", "node-a").terminating(),
        ep("10.244.1.2", "node-a").not_ready(),
        ep("10.244.2.1", "node-b").terminating(),
    ];
    let (tables, _) = compile(&cluster("", &endpoints, None));
    assert_eq!(socket_ips(&tables, CLUSTER_IP), ["10.244.1.1", "10.244.2.1"]);
}

/// kube-proxy's topology cases: hints are followed only when every ready
/// endpoint has them and one is for this node's zone (or this node).
#[test]
fn topology_hints() {
    let a = |ip| ep(ip, "node-a");
    let b = |ip| ep(ip, "node-b");
    // (case, this node's zone, endpoints, backends wanted)
    type Case = (&'static str, Option<&'static str>, Vec<Ep>, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        (
            "zone hints for this zone",
            Some("zone-a"),
            vec![a("10.0.0.1").zones(&["zone-a"]), b("10.0.0.2").zones(&["zone-b"]), b("10.0.0.3").zones(&["zone-a"])],
            vec!["10.0.0.1", "10.0.0.3"],
        ),
        (
            "the node has no zone label",
            None,
            vec![a("10.0.0.1").zones(&["zone-a"]), b("10.0.0.2").zones(&["zone-b"])],
            vec!["10.0.0.1", "10.0.0.2"],
        ),
        (
            "one ready endpoint without hints",
            Some("zone-a"),
            vec![a("10.0.0.1").zones(&["zone-a"]), b("10.0.0.2")],
            vec!["10.0.0.1", "10.0.0.2"],
        ),
        (
            "a not-ready endpoint without hints does not count",
            Some("zone-a"),
            vec![a("10.0.0.1").zones(&["zone-a"]), b("10.0.0.2").zones(&["zone-b"]), b("10.0.0.3").not_ready()],
            vec!["10.0.0.1"],
        ),
        (
            "no endpoint for this zone",
            Some("zone-c"),
            vec![a("10.0.0.1").zones(&["zone-a"]), b("10.0.0.2").zones(&["zone-b"])],
            vec!["10.0.0.1", "10.0.0.2"],
        ),
        (
            "an endpoint hinted for several zones",
            Some("zone-b"),
            vec![a("10.0.0.1").zones(&["zone-a", "zone-b"]), b("10.0.0.2").zones(&["zone-c"])],
            vec!["10.0.0.1"],
        ),
        (
            "node hints (PreferSameNode) win over zone hints",
            Some("zone-a"),
            vec![
                a("10.0.0.1").zones(&["zone-a"]).for_nodes(&["node-a"]),
                b("10.0.0.2").zones(&["zone-a"]).for_nodes(&["node-b"]),
            ],
            vec!["10.0.0.1"],
        ),
        (
            "node hints for other nodes only: zone hints apply",
            Some("zone-a"),
            vec![
                b("10.0.0.1").zones(&["zone-a"]).for_nodes(&["node-b"]),
                b("10.0.0.2").zones(&["zone-b"]).for_nodes(&["node-c"]),
            ],
            vec!["10.0.0.1"],
        ),
        (
            "hinted endpoints all terminating: the fallback ignores hints",
            Some("zone-a"),
            vec![a("10.0.0.1").zones(&["zone-b"]).terminating(), b("10.0.0.2").zones(&["zone-b"]).terminating()],
            vec!["10.0.0.1", "10.0.0.2"],
        ),
    ];
    for (name, zone, endpoints, want) in cases {
        let (tables, diagnostics) = compile(&cluster("", &endpoints, zone));
        assert_eq!(diagnostics, [], "{name}");
        assert_eq!(socket_ips(&tables, CLUSTER_IP), want, "{name}: cluster IP");
        assert_eq!(ips(&tables, &tables.frontends, NODE_PORT), want, "{name}: node port from outside");
    }
    // A Local policy ignores hints.
    let endpoints = [ep("10.0.0.1", "node-a").zones(&["zone-b"]), ep("10.0.0.2", "node-b").zones(&["zone-a"])];
    let (tables, _) = compile(&cluster("\n  internalTrafficPolicy: Local", &endpoints, Some("zone-a")));
    assert_eq!(socket_ips(&tables, CLUSTER_IP), ["10.0.0.1"]);
}

#[test]
fn session_affinity_timeouts() {
    let endpoints = [ep("10.244.1.1", "node-a")];
    let timeout = |spec: &str| {
        let (tables, diagnostics) = compile(&cluster(spec, &endpoints, None));
        let timeouts: Vec<u32> = tables.services.values().map(|e| e.affinity_timeout_s).collect();
        (timeouts, diagnostics.into_iter().map(|d| d.field).collect::<Vec<_>>())
    };
    assert_eq!(timeout(""), (vec![0], vec![]));
    assert_eq!(timeout("\n  sessionAffinity: None"), (vec![0], vec![]));
    assert_eq!(timeout("\n  sessionAffinity: ClientIP"), (vec![10_800], vec![]));
    let custom = "\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}";
    assert_eq!(timeout(custom), (vec![60], vec![]));
    let bad = "\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}";
    assert_eq!(timeout(bad), (vec![10_800], vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds".to_string()]));
    // Every view of the port has it.
    let local = "\n  sessionAffinity: ClientIP\n  externalTrafficPolicy: Local";
    assert_eq!(timeout(local).0, [10_800, 10_800]);
}

#[test]
fn services_for_another_proxy_are_left_alone() {
    let endpoints = [ep("10.244.1.1", "node-a")];
    for label in ["service.kubernetes.io/service-proxy-name: other", "service.kubernetes.io/headless: ''"] {
        let yaml = cluster("", &endpoints, None)
            .replace("metadata: {name: svc}", &format!("metadata:\n  name: svc\n  labels: {{{label}}}"));
        let (tables, diagnostics) = compile(&yaml);
        assert_eq!(diagnostics, [], "{label}");
        assert_eq!(tables, DataplaneTables::default(), "{label}");
    }
}

#[test]
fn a_cluster_ip_claimed_twice_goes_to_the_first_service() {
    let yaml = format!(
        "{}---{}",
        cluster("", &[ep("10.244.1.1", "node-a")], None),
        cluster("", &[], None)
            .replace("name: svc}", "name: another}")
            .replace("nodePort: 30010", "nodePort: 30011")
            .split("---\napiVersion: discovery")
            .next()
            .unwrap()
    );
    let (tables, diagnostics) = compile(&yaml);
    assert_eq!(tables.socket_frontends[&CLUSTER_IP].service.port.name, "another");
    let messages: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "Service default/svc: spec.clusterIP: frontend 10.96.0.10:80/TCP is already used by default/another/TCP; ignored here"
        ]
    );
}

#[test]
fn the_clusters_sockets_reach_every_nodes_node_port() {
    let nodes = "
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
status:
  addresses:
  - {type: InternalIP, address: 192.168.1.12}
  - {type: ExternalIP, address: 203.0.113.12}
  - {type: Hostname, address: node-b}
  - {type: InternalIP, address: 'fd00::12'}
";
    let yaml = format!("{}{nodes}", cluster("", &[ep("10.244.1.1", "node-a")], None));
    let (tables, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    let node_ports = |frontends: &BTreeMap<FrontendAddr, FrontendEntry>| -> Vec<String> {
        frontends.keys().filter(|a| a.port == 30010).map(|a| a.ip.to_string()).collect()
    };
    // Traffic from outside reaches this node's own addresses only …
    assert_eq!(node_ports(&tables.frontends), ["192.168.1.10"]);
    // … while a pod connecting to any node's node port is balanced at once.
    assert_eq!(node_ports(&tables.socket_frontends), ["192.168.1.10", "192.168.1.12", "203.0.113.12"]);
}
