use std::collections::BTreeMap;

use super::*;
use crate::compile::test_support::snapshot;
use crate::diagnostics::Diagnostic;

const NODE: &str = "node-a";

fn compile(yaml: &str) -> (BTreeMap<u16, HealthCheck>, Vec<Diagnostic>) {
    compile_health_checks(&snapshot(yaml), NODE)
}

/// A Service with ports `http` (80) and `https` (443).
fn service(namespace: &str, name: &str, type_: &str, policy: &str, health_check_port: Option<i64>) -> String {
    let port = health_check_port.map(|p| format!("\n  healthCheckNodePort: {p}")).unwrap_or_default();
    format!(
        "---
apiVersion: v1
kind: Service
metadata:
  namespace: {namespace}
  name: {name}
spec:
  type: {type_}
  externalTrafficPolicy: {policy}{port}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
  - {{name: https, port: 443, targetPort: 8443}}
"
    )
}

fn lb_local(name: &str, port: i64) -> String {
    service("default", name, "LoadBalancer", "Local", Some(port))
}

/// An EndpointSlice of `service` (in `default`) with the `http` and `https`
/// ports and one endpoint per `(ip, node, extra YAML)`.
fn slice(name: &str, service: &str, endpoints: &[(&str, &str, &str)]) -> String {
    let endpoints: String =
        endpoints.iter().map(|(ip, node, extra)| format!("\n- addresses: [{ip}]\n  nodeName: {node}{extra}")).collect();
    format!(
        "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  labels:
    kubernetes.io/service-name: {service}
addressType: IPv4
ports: [{{name: http, port: 8080}}, {{name: https, port: 8443}}]
endpoints:{endpoints}
"
    )
}

fn check(name: &str, local_endpoints: usize) -> HealthCheck {
    HealthCheck { namespace: "default".into(), name: name.into(), local_endpoints }
}

const NOT_READY: &str = "\n  conditions: {ready: false}";
const TERMINATING: &str = "\n  conditions: {ready: false, serving: true, terminating: true}";

#[test]
fn counts_ready_endpoints_on_this_node_once_per_address() {
    let yaml = format!(
        "{}{}{}",
        lb_local("web", 32000),
        slice(
            "web-1",
            "web",
            &[
                ("10.244.1.1", NODE, ""),
                ("10.244.1.2", NODE, "\n  conditions: {ready: true}"),
                ("10.244.2.1", "node-b", ""),
                ("10.244.1.3", NODE, NOT_READY),
            ]
        ),
        // The same pod again in a second slice, and another one.
        slice("web-2", "web", &[("10.244.1.1", NODE, ""), ("10.244.1.4", NODE, "")]),
    );
    let (checks, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    // Two ports per pod, but pods are counted: 10.244.1.1, .2 and .4.
    assert_eq!(checks, BTreeMap::from([(32000, check("web", 3))]));
}

#[test]
fn no_local_endpoint_is_zero() {
    let yaml = format!("{}{}", lb_local("web", 32000), slice("web-1", "web", &[("10.244.2.1", "node-b", "")]));
    let (checks, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(checks, BTreeMap::from([(32000, check("web", 0))]));

    let (checks, _) = compile(&lb_local("web", 32000));
    assert_eq!(checks, BTreeMap::from([(32000, check("web", 0))]), "no EndpointSlice at all");
}

#[test]
fn terminating_endpoints_do_not_count_even_as_the_only_ones() {
    // The data path falls back to serving terminating endpoints; the probe
    // fails so that load balancers drain the node.
    let yaml = format!(
        "{}{}",
        lb_local("web", 32000),
        slice("web-1", "web", &[("10.244.1.1", NODE, TERMINATING), ("10.244.2.1", "node-b", "")])
    );
    let (checks, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(checks, BTreeMap::from([(32000, check("web", 0))]));
}

#[test]
fn only_loadbalancer_services_with_local_policy_have_one() {
    let yaml = [
        service("default", "cluster", "LoadBalancer", "Cluster", None),
        service("default", "nodeport", "NodePort", "Local", None),
        service("default", "clusterip", "ClusterIP", "Cluster", None),
        slice("cluster-1", "cluster", &[("10.244.1.1", NODE, "")]),
        slice("nodeport-1", "nodeport", &[("10.244.1.2", NODE, "")]),
    ]
    .concat();
    let (checks, diagnostics) = compile(&yaml);
    assert_eq!(checks, BTreeMap::new());
    assert_eq!(diagnostics, []);
}

#[test]
fn a_port_where_it_means_nothing_is_diagnosed_and_ignored() {
    let (checks, diagnostics) = compile(&service("default", "web", "LoadBalancer", "Cluster", Some(32000)));
    assert_eq!(checks, BTreeMap::new());
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].object, "Service default/web");
    assert_eq!(diagnostics[0].field, "spec.healthCheckNodePort");
}

#[test]
fn unset_zero_and_out_of_range_ports_are_diagnosed() {
    let yaml = [
        service("default", "a", "LoadBalancer", "Local", None),
        service("default", "b", "LoadBalancer", "Local", Some(0)),
        service("default", "c", "LoadBalancer", "Local", Some(65536)),
        service("default", "d", "LoadBalancer", "Local", Some(-1)),
        service("default", "e", "LoadBalancer", "Local", Some(65535)),
    ]
    .concat();
    let (checks, diagnostics) = compile(&yaml);
    assert_eq!(checks, BTreeMap::from([(65535, check("e", 0))]));
    let objects: Vec<&str> = diagnostics.iter().map(|d| d.object.as_str()).collect();
    assert_eq!(objects, ["Service default/a", "Service default/b", "Service default/c", "Service default/d"]);
    assert!(diagnostics.iter().all(|d| d.field == "spec.healthCheckNodePort"), "{diagnostics:#?}");
    assert!(diagnostics[2].message.contains("65536"), "{}", diagnostics[2]);
}

#[test]
fn a_port_claimed_twice_goes_to_the_first_service_by_namespace_and_name() {
    let yaml = [
        service("b-ns", "web", "LoadBalancer", "Local", Some(32000)),
        service("a-ns", "web", "LoadBalancer", "Local", Some(32000)),
        service("a-ns", "other", "LoadBalancer", "Local", Some(32001)),
    ]
    .concat();
    let (checks, diagnostics) = compile(&yaml);
    let first = HealthCheck { namespace: "a-ns".into(), name: "web".into(), local_endpoints: 0 };
    let other = HealthCheck { namespace: "a-ns".into(), name: "other".into(), local_endpoints: 0 };
    assert_eq!(checks, BTreeMap::from([(32000, first), (32001, other)]));
    assert_eq!(diagnostics.len(), 1);
    let diagnostic = &diagnostics[0];
    assert_eq!(diagnostic.object, "Service b-ns/web");
    assert_eq!(diagnostic.field, "spec.healthCheckNodePort");
    assert!(diagnostic.message.contains("Service a-ns/web"), "{diagnostic}");
}

#[test]
fn endpoints_that_are_no_backend_of_the_service_do_not_count() {
    // A slice of another Service, an IPv6 slice, and a slice whose port
    // matches no port of the Service.
    let yaml = format!(
        "{}{}{}{}",
        lb_local("web", 32000),
        slice("other-1", "other", &[("10.244.1.1", NODE, "")]),
        "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v6, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{name: http, port: 8080}]
endpoints: [{addresses: ['fd00::1'], nodeName: node-a}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-metrics, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: metrics, port: 9090}]
endpoints: [{addresses: [10.244.1.2], nodeName: node-a}]
",
        slice("web-1", "web", &[("10.244.1.3", NODE, "")]),
    );
    let (checks, diagnostics) = compile(&yaml);
    assert_eq!(checks, BTreeMap::from([(32000, check("web", 1))]));
    assert_eq!(diagnostics, [], "port problems are the L4 compiler's to report");
}

/// Follows `states` with one [`HealthCheckCompiler`], each step compiling
/// only the Services the change concerns; after each, the result must be
/// what a compile of that state from scratch gives.
fn follow(states: &[String]) {
    let mut compiler = HealthCheckCompiler::default();
    let mut old = snapshot(&states[0]);
    compiler.compile_all(&old, NODE);
    for (step, state) in states.iter().enumerate().skip(1) {
        let new = snapshot(state);
        let concerned = new.changes_since(&old).services_concerned(&old, &new);
        let slices = crate::compile::endpoints::SliceIndex::new(&new.endpoint_slices);
        compiler.compile_changes(&new, &concerned, |(ns, name)| slices.for_service(ns, name).to_vec(), NODE);
        let (checks, diagnostics) = compile_health_checks(&new, NODE);
        assert_eq!((compiler.checks(), compiler.diagnostics()), (&checks, &diagnostics[..]), "step {step}");
        old = new;
    }
}

#[test]
fn a_change_compiles_the_services_it_concerns_to_what_a_full_compile_gives() {
    let base = lb_local("web", 30100)
        + &slice("web-1", "web", &[("10.244.1.1", NODE, "")])
        + &service("default", "plain", "ClusterIP", "Cluster", None)
        + &slice("plain-1", "plain", &[("10.244.1.9", NODE, "")]);
    let more = format!("{base}{}", lb_local("more", 30101));
    // Written without a namespace: the same port, asked by a Service that
    // sorts first.
    let unnamespaced = lb_local("early", 30101).replace("namespace: default\n", "");
    follow(&[
        base.clone(),
        base.replace("10.244.1.9", "10.244.1.8"),
        base.replace("10.244.1.1", "10.244.1.2"),
        base.replace("10.244.1.1", "10.244.1.2") + &slice("web-2", "web", &[("10.244.1.3", NODE, "")]),
        more.clone(),
        more.replace("healthCheckNodePort: 30100", "healthCheckNodePort: 30101"),
        more.replace("healthCheckNodePort: 30100", "healthCheckNodePort: 30102"),
        format!("{more}{unnamespaced}"),
        more.replace("healthCheckNodePort: 30101", "healthCheckNodePort: 70000"),
        more.replace("\"Local\"", "\"Cluster\"").replace("Local", "Cluster"),
        lb_local("other", 30103),
        base,
    ]);
}
