//! `lb run --kubeconfig` against the in-process fake API server: Ingress
//! status when the controller's Service (`--ingress-service`) has no
//! address. The leader writes the addresses of the nodes the agents run on
//! (those with a live `lb-node-<node>` Lease; ExternalIP, else InternalIP),
//! follows those nodes coming and going, and switches to the Service's
//! address as soon as it has one — one write per change, nothing between.
//! No root needed (`--no-xdp`).

use std::path::PathBuf;
use std::time::Duration;

use lb_testbed::fake_api::{FakeApi, RecordedRequest};
use lb_testbed::l7::{EndpointSlice, Ingress, L7Bed, LbOptions, Rule, Service};
use serde_json::{Value, json};

/// How long the agent gets to write what the objects imply.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a status must stay as it is to count as stable.
const STABLE: Duration = Duration::from_secs(3);

struct Cluster {
    api: FakeApi,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn new(bed: &L7Bed) -> Self {
        let (api, kubeconfig) = bed.fake_api().expect("fake API listens");
        Self { api, kubeconfig }
    }

    fn apply(&self, object: Value) {
        self.api.apply(object).unwrap_or_else(|e| panic!("fake API apply: {e:#}"));
    }

    /// The IPs of Ingress `default/name`'s `status.loadBalancer.ingress`.
    fn ingress_ips(&self, name: &str) -> Vec<String> {
        let object = self.api.get("networking.k8s.io/v1", "Ingress", Some("default"), name).unwrap_or_default();
        let ingress = object.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).cloned();
        ingress.unwrap_or_default().iter().filter_map(|i| i["ip"].as_str().map(str::to_string)).collect()
    }

    async fn wait_ingress_ips(&self, name: &str, ips: &[&str]) {
        let wanted: Vec<String> = ips.iter().map(|a| a.to_string()).collect();
        let waited = self.api.wait_until(|_| self.ingress_ips(name) == wanted, WRITE_TIMEOUT).await;
        waited.unwrap_or_else(|e| {
            panic!("Ingress {name} should show {wanted:?}, shows {:?}: {e:#}", self.ingress_ips(name))
        });
    }

    /// The bodies of the agent's writes of Ingress status, in order.
    fn ingress_status_writes(&self) -> Vec<Value> {
        let requests = self.api.requests();
        let writes = requests
            .iter()
            .filter(|r| r.resource == "ingresses" && r.subresource.as_deref() == Some("status") && r.verb == "patch");
        writes.filter_map(|r: &RecordedRequest| r.body.clone()).collect()
    }
}

fn node(name: &str, addresses: &[(&str, &str)]) -> Value {
    let addresses: Vec<Value> = addresses.iter().map(|(kind, ip)| json!({"type": kind, "address": ip})).collect();
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"addresses": addresses}})
}

/// Node `node`'s liveness Lease, as another node's agent would hold it
/// (alive for an hour after the agent first sees it).
fn node_lease(node: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": format!("lb-node-{node}"), "namespace": "lb-system"},
        "spec": {"holderIdentity": format!("agent-{node}"), "leaseDurationSeconds": 3600, "renewTime": "2026-01-01T00:00:00.000000Z"},
    })
}

/// The controller's Service, with `ip` in its status.
fn ingress_service(ip: Option<&str>) -> Value {
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "lb-ingress", "namespace": "lb-system"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
    });
    if let Some(ip) = ip {
        service["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
    }
    service
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_ingress_service_address_the_ingress_shows_the_agents_nodes() {
    let mut bed = L7Bed::new().unwrap();
    let cluster = Cluster::new(&bed);
    let pod = bed.echo("pod-a").unwrap();
    cluster.apply(Service::new("web").namespace("default").port("http", 80, 8080).value());
    cluster.apply(
        EndpointSlice::named("web-1", "web").namespace("default").port("http", 8080).endpoint(pod.ip(), true).value(),
    );
    cluster.apply(
        Ingress::new("web").namespace("default").class("lb").rule(Rule::host("a.com").prefix("/", "web", 80)).value(),
    );
    // node-a: this agent's (ExternalIP preferred); node-b: another agent's
    // (InternalIP only); node-c: no agent, never shown.
    cluster.apply(node("node-a", &[("InternalIP", "10.0.0.1"), ("ExternalIP", "203.0.113.1")]));
    cluster.apply(node("node-b", &[("InternalIP", "10.0.0.2"), ("Hostname", "node-b")]));
    cluster.apply(node("node-c", &[("InternalIP", "10.0.0.3")]));
    cluster.apply(node_lease("node-b"));

    let extra_args = ["--identity", "agent-a", "--node-name", "node-a"].map(String::from).to_vec();
    bed.start_lb_with(LbOptions { kubeconfig: Some(cluster.kubeconfig.clone()), extra_args, ..LbOptions::default() })
        .await
        .unwrap();
    bed.ok(bed.wait_route("a.com", "/", 200, Some("pod-a")).await);

    // No Service lb-system/lb-ingress: the agents' nodes, sorted.
    cluster.wait_ingress_ips("web", &["10.0.0.2", "203.0.113.1"]).await;
    // node-b's agent goes (its Lease is deleted): only node-a.
    cluster.api.delete("coordination.k8s.io/v1", "Lease", Some("lb-system"), "lb-node-node-b");
    cluster.wait_ingress_ips("web", &["203.0.113.1"]).await;

    // The Service appears without an address: still the nodes.
    cluster.apply(ingress_service(None));
    tokio::time::sleep(STABLE).await;
    assert_eq!(cluster.ingress_ips("web"), ["203.0.113.1"], "{}", bed.logs());
    // It gets an address: the Ingress switches to it.
    cluster.apply(ingress_service(Some("192.0.2.7")));
    cluster.wait_ingress_ips("web", &["192.0.2.7"]).await;
    // Another agent's node comes back meanwhile: the Service's address stays.
    cluster.apply(node_lease("node-b"));
    tokio::time::sleep(STABLE).await;
    assert_eq!(cluster.ingress_ips("web"), ["192.0.2.7"], "{}", bed.logs());
    // The Service loses its address: back to the nodes, node-b included.
    cluster.apply(ingress_service(None));
    cluster.wait_ingress_ips("web", &["10.0.0.2", "203.0.113.1"]).await;
    tokio::time::sleep(STABLE).await;

    // One write per change and none between (no flapping); node-c never.
    let writes = cluster.ingress_status_writes();
    let shown: Vec<Vec<&str>> = writes
        .iter()
        .map(|w| {
            let ingress = w.pointer("/status/loadBalancer/ingress").and_then(Value::as_array);
            ingress.into_iter().flatten().filter_map(|i| i["ip"].as_str()).collect()
        })
        .collect();
    let expected: [&[&str]; 4] =
        [&["10.0.0.2", "203.0.113.1"], &["203.0.113.1"], &["192.0.2.7"], &["10.0.0.2", "203.0.113.1"]];
    assert_eq!(shown, expected, "the Ingress status writes\n{}", bed.logs());
    let log = lb_testbed::l7::annotations::lb_output(&bed);
    assert!(log.contains("the addresses of the nodes the agents run on"), "the fallback is logged:\n{log}");
    assert!(bed.lb_running(), "{}", bed.logs());
}
