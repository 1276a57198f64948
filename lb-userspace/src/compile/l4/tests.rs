use std::net::Ipv4Addr;
use std::sync::Arc;

use super::*;
use crate::compile::tables::{EndpointScope, FrontendAddr, Protocol, ServiceEntry, ServicePortName, ServiceView};
use crate::compile::test_support::{slice, snapshot};

fn node() -> NodeContext {
    NodeContext {
        name: "node-a".into(),
        addresses: vec![Ipv4Addr::new(192, 168, 1, 10), Ipv4Addr::new(10, 0, 0, 10)],
        ingress: None,
    }
}

fn compile(yaml: &str) -> (DataplaneTables, Vec<Diagnostic>) {
    compile_l4(&snapshot(yaml), &node(), &CompileOptions::default())
}

/// The cluster-wide view of a service port of namespace `default`.
fn port_name(name: &str, port: &str, protocol: Protocol) -> ServiceView {
    ServiceView::cluster(ServicePortName {
        namespace: "default".into(),
        name: name.into(),
        port: port.into(),
        protocol,
    })
}

/// The node-local view of the same.
fn local_view(name: &str, port: &str, protocol: Protocol) -> ServiceView {
    ServiceView { scope: EndpointScope::Node, ..port_name(name, port, protocol) }
}

fn frontend(ip: [u8; 4], port: u16, protocol: Protocol) -> FrontendAddr {
    FrontendAddr { ip: ip.into(), port, protocol }
}

fn backend(ip: [u8; 4], port: u16) -> BackendAddr {
    BackendAddr { ip: ip.into(), port }
}

fn backends(tables: &DataplaneTables, name: &ServiceView) -> Vec<BackendAddr> {
    tables.services[name].backends.clone()
}

const NODEPORT: &str = "
apiVersion: v1
kind: Service
metadata:
  name: my-service-nodeport
spec:
  type: NodePort
  selector:
    app: nginx
  ports:
  - port: 80
    targetPort: 80
    nodePort: 30007
";

fn three_pods(service: &str, ports: &str) -> String {
    slice(&format!("{service}-1"), service, ports, &[("10.244.1.10", ""), ("10.244.2.10", ""), ("10.244.1.11", "")])
}

#[test]
fn nodeport_seed_with_three_ready_pods() {
    let (tables, diagnostics) = compile(&format!("{NODEPORT}{}", three_pods("my-service-nodeport", "[{port: 80}]")));
    assert_eq!(diagnostics, []);
    let name = port_name("my-service-nodeport", "", Protocol::Tcp);
    assert_eq!(tables.services.len(), 1);
    let frontends: Vec<_> = tables.frontends.keys().copied().collect();
    assert_eq!(
        frontends,
        [frontend([10, 0, 0, 10], 30007, Protocol::Tcp), frontend([192, 168, 1, 10], 30007, Protocol::Tcp)]
    );
    assert!(tables.frontends.values().all(|f| f.service == name && f.snat));
    let entry = &tables.services[&name];
    assert_eq!(
        entry.backends,
        [backend([10, 244, 1, 10], 80), backend([10, 244, 1, 11], 80), backend([10, 244, 2, 10], 80)]
    );
    assert_eq!(entry.maglev.len(), 16381);
    for i in 0..3 {
        let slots = entry.maglev.iter().filter(|&&s| s == i).count();
        assert!((5400..=5520).contains(&slots), "backend {i} has {slots} slots");
    }
}

#[test]
fn named_target_port_resolves_through_slice_port_names() {
    let service = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  ports:
  - {name: http, port: 80, targetPort: http-web, nodePort: 30080}
  - {name: admin, port: 81, targetPort: admin-port, nodePort: 30081}
";
    // Slice a names its ports after the Service's ports (what Kubernetes
    // does); slice b after the target port names (hand-written).
    let a = slice("web-a", "web", "[{name: http, port: 8080}, {name: admin, port: 9090}]", &[("10.244.1.1", "")]);
    let b = slice("web-b", "web", "[{name: http-web, port: 8081}]", &[("10.244.1.2", "")]);
    let (tables, diagnostics) = compile(&format!("{service}{a}{b}"));
    let http = port_name("web", "http", Protocol::Tcp);
    assert_eq!(backends(&tables, &http), [backend([10, 244, 1, 1], 8080), backend([10, 244, 1, 2], 8081)]);
    let admin = port_name("web", "admin", Protocol::Tcp);
    assert_eq!(backends(&tables, &admin), [backend([10, 244, 1, 1], 9090)]);
    let shown: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
    assert_eq!(
        shown,
        [
            "Service default/web: spec.ports[1].targetPort: named port \"admin-port\" not found in EndpointSlice default/web-b; its endpoints are not used"
        ]
    );
}

#[test]
fn unresolved_named_port_is_diagnosed_with_the_field() {
    let service = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  externalIPs: [203.0.113.1]
  ports:
  - {port: 80, targetPort: http}
";
    let (tables, diagnostics) = compile(&format!("{service}{}", three_pods("web", "[]")));
    assert_eq!(backends(&tables, &port_name("web", "", Protocol::Tcp)), []);
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].field, "spec.ports[0].targetPort");
    assert!(diagnostics[0].message.contains("named port \"http\" not found in any EndpointSlice"));
}

#[test]
fn numeric_target_port_with_a_portless_slice() {
    let service = NODEPORT.replace("targetPort: 80", "targetPort: 8080");
    let (tables, diagnostics) = compile(&format!("{service}{}", three_pods("my-service-nodeport", "[]")));
    assert_eq!(diagnostics, []);
    let entry = &tables.services[&port_name("my-service-nodeport", "", Protocol::Tcp)];
    assert!(entry.backends.iter().all(|b| b.port == 8080));
    assert_eq!(entry.backends.len(), 3);

    let no_target = NODEPORT.replace("    targetPort: 80\n", "");
    let (tables, _) = compile(&format!("{no_target}{}", three_pods("my-service-nodeport", "[]")));
    assert!(tables.services.values().all(|e| e.backends.iter().all(|b| b.port == 80)));
}

#[test]
fn not_ready_endpoints_are_excluded() {
    let endpoints = [
        ("10.244.1.1", ""),
        ("10.244.1.2", "\n  conditions: {ready: false}"),
        ("10.244.1.3", "\n  conditions: {ready: true, serving: true, terminating: false}"),
        ("10.244.1.4", "\n  conditions: {ready: false, serving: true, terminating: true}"),
    ];
    let yaml = format!("{NODEPORT}{}", slice("s", "my-service-nodeport", "[{port: 80}]", &endpoints));
    let (tables, _) = compile(&yaml);
    let name = port_name("my-service-nodeport", "", Protocol::Tcp);
    assert_eq!(backends(&tables, &name), [backend([10, 244, 1, 1], 80), backend([10, 244, 1, 3], 80)]);
}

#[test]
fn terminating_endpoints_are_used_when_none_is_ready() {
    let endpoints = [
        ("10.244.1.2", "\n  conditions: {ready: false}"),
        ("10.244.1.4", "\n  conditions: {ready: false, serving: true, terminating: true}"),
        ("10.244.1.5", "\n  conditions: {ready: false, serving: false, terminating: true}"),
    ];
    let yaml = format!("{NODEPORT}{}", slice("s", "my-service-nodeport", "[{port: 80}]", &endpoints));
    let (tables, _) = compile(&yaml);
    let name = port_name("my-service-nodeport", "", Protocol::Tcp);
    assert_eq!(backends(&tables, &name), [backend([10, 244, 1, 4], 80)]);
}

#[test]
fn terminating_endpoints_drain_while_ready_ones_take_new_flows() {
    let endpoints = [
        ("10.244.1.1", ""),
        ("10.244.1.2", "\n  conditions: {ready: false}"),
        ("10.244.1.4", "\n  conditions: {ready: false, serving: true, terminating: true}"),
        ("10.244.1.5", "\n  conditions: {ready: false, serving: false, terminating: true}"),
    ];
    let yaml = format!("{NODEPORT}{}", slice("s", "my-service-nodeport", "[{port: 80}]", &endpoints));
    let (tables, _) = compile(&yaml);
    let name = port_name("my-service-nodeport", "", Protocol::Tcp);
    assert_eq!(backends(&tables, &name), [backend([10, 244, 1, 1], 80)]);
    // Both terminating endpoints keep the flows open to them; the unready
    // one, not terminating, does not.
    let draining: Vec<BackendAddr> = tables.services[&name].draining.clone();
    assert_eq!(draining, [backend([10, 244, 1, 4], 80), backend([10, 244, 1, 5], 80)]);
}

#[test]
fn local_policy_keeps_this_nodes_endpoints_and_does_not_snat() {
    let service = NODEPORT.replace("type: NodePort", "type: NodePort\n  externalTrafficPolicy: Local");
    let endpoints =
        [("10.244.1.1", ""), ("10.244.2.1", "\n  nodeName: node-b"), ("10.244.2.2", "\n  nodeName: node-b")];
    // The second nodeName key overrides the first in our little template.
    let slice = slice("s", "my-service-nodeport", "[{port: 80}]", &endpoints)
        .replace("  nodeName: node-a\n  nodeName", "  nodeName");
    let (tables, diagnostics) = compile(&format!("{service}{slice}"));
    assert_eq!(diagnostics, []);
    let local = local_view("my-service-nodeport", "", Protocol::Tcp);
    assert_eq!(backends(&tables, &local), [backend([10, 244, 1, 1], 80)]);
    assert!(tables.frontends.values().all(|f| !f.snat && f.service == local));
    // The cluster's own sockets reach the node port on every endpoint
    // (kube-proxy's short-circuit of local traffic to external addresses).
    let cluster = port_name("my-service-nodeport", "", Protocol::Tcp);
    assert!(tables.socket_frontends.values().all(|f| f.service == cluster));
    assert_eq!(backends(&tables, &cluster).len(), 3);
    assert!(!tables.services[&local].drop_when_empty);
}

#[test]
fn load_balancer_status_and_external_ips_are_frontends() {
    let service = "
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: default}
spec:
  type: LoadBalancer
  loadBalancerIP: 192.168.1.199
  externalIPs: [203.0.113.5, '2001:db8::1']
  ports:
  - {port: 8088, targetPort: 80, nodePort: 31000}
status:
  loadBalancer:
    ingress: [{ip: 192.168.1.150}, {hostname: lb.example.com}]
";
    let (tables, diagnostics) = compile(service);
    assert_eq!(diagnostics, []);
    let frontends: Vec<_> = tables.frontends.keys().copied().collect();
    assert_eq!(
        frontends,
        [
            frontend([10, 0, 0, 10], 31000, Protocol::Tcp),
            frontend([192, 168, 1, 10], 31000, Protocol::Tcp),
            frontend([192, 168, 1, 150], 8088, Protocol::Tcp),
            frontend([203, 0, 113, 5], 8088, Protocol::Tcp),
        ]
    );
    // Without status, the requested address is used.
    let (tables, _) = compile(&service.replace("ingress: [{ip: 192.168.1.150}, {hostname: lb.example.com}]", "{}"));
    assert!(tables.frontends.contains_key(&frontend([192, 168, 1, 199], 8088, Protocol::Tcp)));
    let name = port_name("lb", "", Protocol::Tcp);
    assert_eq!(tables.services[&name], ServiceEntry::default(), "no backends: an empty entry");
}

#[test]
fn udp_and_multi_port_services() {
    let service = "
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  externalIPs: [203.0.113.53]
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
  - {name: sctp, port: 54, protocol: SCTP}
";
    let ports = "[{name: dns, port: 5353, protocol: UDP}, {name: dns-tcp, port: 5354}]";
    let (tables, diagnostics) = compile(&format!("{service}{}", three_pods("dns", ports)));
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].field, "spec.ports[2].protocol");
    let udp = port_name("dns", "dns", Protocol::Udp);
    let tcp = port_name("dns", "dns-tcp", Protocol::Tcp);
    assert_eq!(tables.frontends[&frontend([203, 0, 113, 53], 53, Protocol::Udp)].service, udp);
    assert_eq!(tables.frontends[&frontend([203, 0, 113, 53], 53, Protocol::Tcp)].service, tcp);
    assert!(backends(&tables, &udp).iter().all(|b| b.port == 5353));
    assert!(backends(&tables, &tcp).iter().all(|b| b.port == 5354));
    assert_eq!(tables.services.len(), 2);
}

#[test]
fn a_frontend_claimed_twice_goes_to_the_first_service() {
    let service = |name: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  externalIPs: [203.0.113.1]\n  ports:\n  - {{port: 80}}\n"
        )
    };
    let (tables, diagnostics) = compile(&format!("{}{}", service("b"), service("a")));
    let a = port_name("a", "", Protocol::Tcp);
    assert_eq!(tables.frontends[&frontend([203, 0, 113, 1], 80, Protocol::Tcp)].service, a);
    assert_eq!(tables.services.len(), 1, "b has no frontend left");
    assert_eq!(
        diagnostics.iter().map(Diagnostic::to_string).collect::<Vec<_>>(),
        [
            "Service default/b: spec.externalIPs[0]: frontend 203.0.113.1:80/TCP is already used by default/a/TCP; ignored here"
        ]
    );
}

#[test]
fn invalid_addresses_are_diagnosed_with_the_field() {
    let service = "
apiVersion: v1
kind: Service
metadata: {name: bad}
spec:
  externalIPs: [203.0.113.1, not-an-ip]
  ports:
  - {port: 80}
";
    let (tables, diagnostics) = compile(service);
    assert_eq!(tables.frontends.len(), 1);
    assert_eq!(
        diagnostics.iter().map(Diagnostic::to_string).collect::<Vec<_>>(),
        ["Service default/bad: spec.externalIPs[1]: \"not-an-ip\" is not an IP address"]
    );
}

#[test]
fn external_name_cluster_ip_and_headless_services_have_no_frontends() {
    let yaml = "
apiVersion: v1
kind: Service
metadata: {name: my-database}
spec: {type: ExternalName, externalName: db.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: cluster-only}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  externalIPs: [203.0.113.1]
  ports: [{port: 80}]
";
    let (tables, diagnostics) = compile(yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(tables, DataplaneTables::default());
}

#[test]
fn compiling_twice_gives_equal_tables() {
    let yaml = format!("{NODEPORT}{}", three_pods("my-service-nodeport", "[{port: 80}]"));
    let snapshot = snapshot(&yaml);
    let first = compile_l4(&snapshot, &node(), &CompileOptions::default());
    let second = compile_l4(&snapshot.clone(), &node(), &CompileOptions::default());
    assert_eq!(first, second);
}

/// Two NodePort Services with three pods each; `moved` replaces the second
/// one's last pod.
fn two_services(moved: bool) -> String {
    let other = NODEPORT.replace("my-service-nodeport", "other").replace("30007", "30008");
    let last = if moved { "10.244.2.99" } else { "10.244.2.11" };
    let pods = [("10.244.1.12", ""), ("10.244.2.12", ""), (last, "")];
    format!(
        "{NODEPORT}{}---{other}{}",
        three_pods("my-service-nodeport", "[{port: 80}]"),
        slice("other-1", "other", "[{port: 80}]", &pods)
    )
}

#[test]
fn a_change_compiles_and_reports_only_the_changed_service() {
    let options = CompileOptions::default();
    let mut compiler = L4Compiler::new(node(), options.clone());
    let (delta, _) = compiler.compile(&Arc::new(snapshot(&two_services(false))));
    assert_eq!((delta, compiler.rows_built()), (None, 2), "the first compile is a full one");
    let first = compiler.tables().clone();

    let changed = snapshot(&two_services(true));
    // The unchanged objects are the same allocations, as a source hands
    // them on.
    let next = first_objects_kept(&snapshot(&two_services(false)), changed.clone());
    let (delta, diagnostics) = compiler.compile(&Arc::new(next));
    assert_eq!(diagnostics, []);
    assert_eq!(compiler.rows_built(), 1, "only the changed service's row is built");
    let other = port_name("other", "", Protocol::Tcp);
    let delta = delta.expect("a change is a delta");
    assert_eq!(delta.services.iter().collect::<Vec<_>>(), [&other]);
    assert!(delta.frontends.is_empty() && delta.socket_frontends.is_empty());
    // The same tables as a compile from scratch, and the unchanged row is
    // the very same allocation (the applier skips it by pointer).
    let second = compiler.tables();
    assert_eq!(*second, compile_l4(&changed, &node(), &options).0);
    let unchanged = port_name("my-service-nodeport", "", Protocol::Tcp);
    assert!(Arc::ptr_eq(&first.services[&unchanged].maglev, &second.services[&unchanged].maglev));
    assert_ne!(first.services[&other].maglev, second.services[&other].maglev);

    // The Service's backends back as they were: its row is built again,
    // nothing else.
    let (delta, _) = compiler.compile(&Arc::new(snapshot(&two_services(false))));
    assert_eq!(compiler.tables(), &first);
    assert_eq!(delta.map(|d| d.services.len()), Some(1));
}

/// `new` with the objects equal to `old`'s replaced by `old`'s own.
fn first_objects_kept(old: &Snapshot, mut new: Snapshot) -> Snapshot {
    let services: Vec<_> = old.services.iter().filter(|o| new.services.iter().any(|s| s == *o)).cloned().collect();
    let slices: Vec<_> =
        old.endpoint_slices.iter().filter(|o| new.endpoint_slices.iter().any(|s| s == *o)).cloned().collect();
    new.services.extend(services);
    new.endpoint_slices.extend(slices);
    new
}

#[test]
fn a_bad_maglev_size_is_one_diagnostic() {
    let yaml = format!(
        "{NODEPORT}{}{}",
        three_pods("my-service-nodeport", "[{port: 80}]"),
        NODEPORT.replace("my-service-nodeport", "other").replace("30007", "30008")
    );
    let (tables, diagnostics) = compile_l4(&snapshot(&yaml), &node(), &CompileOptions { maglev_table_size: 16380 });
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].field, "maglev_table_size");
    assert_eq!(tables.services.len(), 2);
    assert!(tables.services.values().all(|e| e.maglev.is_empty()));
}

#[test]
fn the_ingress_service_http_ports_go_to_the_local_proxy() {
    let yaml = format!(
        "
apiVersion: v1
kind: Service
metadata:
  name: lb-ingress
  namespace: lb-system
spec:
  type: LoadBalancer
  ports:
  - name: http
    port: 80
    nodePort: 30080
  - name: https
    port: 443
    nodePort: 30443
  - name: metrics
    port: 9100
    nodePort: 30910
status:
  loadBalancer:
    ingress: [{{ip: 192.168.1.151}}]
{}",
        slice(
            "lb-ingress-x",
            "lb-ingress",
            "[{name: http, port: 80}, {name: https, port: 443}, {name: metrics, port: 9100}]",
            &[("10.244.1.50", "")]
        )
        .replace("name: lb-ingress-x", "name: lb-ingress-x\n  namespace: lb-system")
    );
    let mut node = node();
    node.ingress = Some(IngressHandoff {
        namespace: "lb-system".into(),
        name: "lb-ingress".into(),
        http: backend([192, 168, 1, 10], 8080),
        https: backend([192, 168, 1, 10], 8443),
    });
    let (tables, diagnostics) = compile_l4(&snapshot(&yaml), &node, &CompileOptions::default());
    assert_eq!(diagnostics, []);
    let port = |name: &str| {
        ServiceView::cluster(ServicePortName {
            namespace: "lb-system".into(),
            name: "lb-ingress".into(),
            port: name.into(),
            protocol: Protocol::Tcp,
        })
    };
    assert_eq!(backends(&tables, &port("http")), [backend([192, 168, 1, 10], 8080)]);
    assert_eq!(backends(&tables, &port("https")), [backend([192, 168, 1, 10], 8443)]);
    assert_eq!(backends(&tables, &port("metrics")), [backend([10, 244, 1, 50], 9100)]);
    // Local delivery: never masqueraded.
    let lb_http = &tables.frontends[&frontend([192, 168, 1, 151], 80, Protocol::Tcp)];
    assert_eq!((&lb_http.service, lb_http.snat), (&port("http"), false));
    assert!(!tables.frontends[&frontend([192, 168, 1, 10], 30443, Protocol::Tcp)].snat);
    assert!(tables.frontends[&frontend([192, 168, 1, 10], 30910, Protocol::Tcp)].snat);
}
