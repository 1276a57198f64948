//! `lb run --kubeconfig` against the in-process fake API server, MetalLB's
//! side: IPAddressPools from the API (only while their CRDs are installed,
//! picked up when installed later, dropped when removed) give LoadBalancer
//! Services their addresses, honouring `metallb.io/address-pool` and
//! `serviceAllocation.namespaceSelectors` with the Namespaces' labels; and
//! every agent renews its node's liveness Lease and follows the others'.
//! No root needed (`--no-xdp`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use lb_testbed::fake_api::{FakeApi, RecordedRequest};
use lb_testbed::l7::annotations::lb_output;
use lb_testbed::l7::{EndpointSlice, Ingress, L7Bed, LbOptions, Rule, Service};
use lb_userspace::cluster::{API_ACCESS, AccessScope};
use serde_json::{Value, json};

/// How long the agent gets to write what the objects imply.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// The hidden re-check period the tests run the agent with.
const RECHECK: &str = "1s";

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

    fn options(&self, extra: &[&str]) -> LbOptions {
        let mut extra_args: Vec<String> = ["--metallb-recheck", RECHECK].map(String::from).to_vec();
        extra_args.extend(extra.iter().map(|s| s.to_string()));
        LbOptions { kubeconfig: Some(self.kubeconfig.clone()), extra_args, ..LbOptions::default() }
    }

    /// The IPv4 addresses of a Service's `status.loadBalancer.ingress`.
    fn addresses(&self, namespace: &str, name: &str) -> Vec<String> {
        let object = self.api.get("v1", "Service", Some(namespace), name).unwrap_or_default();
        let ingress = object.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).cloned();
        ingress.unwrap_or_default().iter().filter_map(|i| i["ip"].as_str().map(str::to_string)).collect()
    }

    async fn wait_addresses(&self, namespace: &str, name: &str, addresses: &[&str]) {
        let wanted: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        let waited = self.api.wait_until(|_| self.addresses(namespace, name) == wanted, WRITE_TIMEOUT).await;
        waited.unwrap_or_else(|e| {
            panic!(
                "Service {namespace}/{name} should show {wanted:?}, shows {:?}: {e:#}",
                self.addresses(namespace, name)
            )
        });
    }

    /// The reasons of the Events about Service `namespace/name`.
    fn event_reasons(&self, namespace: &str, name: &str) -> Vec<String> {
        let about = |e: &Value, field: &str, value: &str| e.pointer(field).and_then(Value::as_str) == Some(value);
        self.api
            .list("events.k8s.io/v1", "Event")
            .iter()
            .filter(|e| about(e, "/regarding/kind", "Service") && about(e, "/regarding/name", name))
            .filter(|e| about(e, "/regarding/namespace", namespace))
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    }

    async fn wait_event(&self, namespace: &str, name: &str, reason: &str) {
        let seen = || self.event_reasons(namespace, name).iter().any(|r| r == reason);
        let waited = self.api.wait_until(|_| seen(), WRITE_TIMEOUT).await;
        waited.unwrap_or_else(|e| {
            panic!("an Event {reason} on Service {namespace}/{name} ({:?}): {e:#}", self.event_reasons(namespace, name))
        });
    }

    /// A node Lease's (holder, renewTime, leaseDurationSeconds).
    fn node_lease(&self, name: &str) -> Option<(Option<String>, Option<String>, Option<i64>)> {
        let lease = self.api.get("coordination.k8s.io/v1", "Lease", Some("lb-system"), name)?;
        let text = |field: &str| lease.pointer(field).and_then(Value::as_str).map(str::to_string);
        Some((
            text("/spec/holderIdentity"),
            text("/spec/renewTime"),
            lease.pointer("/spec/leaseDurationSeconds")?.as_i64(),
        ))
    }
}

fn pool(name: &str, addresses: &[&str], extra_spec: Value) -> Value {
    let mut spec = json!({"addresses": addresses});
    spec.as_object_mut().unwrap().extend(extra_spec.as_object().cloned().unwrap_or_default());
    json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system"},
        "spec": spec,
    })
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A LoadBalancer Service created at `created` (IPAM serves the oldest first).
fn load_balancer(namespace: &str, name: &str, created: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_from_the_api_honour_the_pool_annotation_and_namespace_selectors() {
    let mut bed = L7Bed::new().unwrap();
    let cluster = Cluster::new(&bed);
    cluster.api.install_crds("metallb.io").unwrap();
    cluster.apply(pool("general", &["192.0.2.10-192.0.2.11"], json!({})));
    let web = json!({"serviceAllocation": {"priority": 1, "namespaceSelectors": [{"matchLabels": {"team": "web"}}]}});
    cluster.apply(pool("web", &["192.0.2.20/32"], web));
    cluster.apply(pool("reserved", &["192.0.2.30/32"], json!({"autoAssign": false})));
    let blue = json!({"serviceAllocation": {"namespaceSelectors": [{"matchLabels": {"team": "blue"}}]}});
    cluster.apply(pool("blue", &["192.0.2.40/32"], blue));
    cluster.apply(namespace("shop", json!({"team": "web"})));
    cluster.apply(namespace("db", json!({})));
    cluster.apply(load_balancer("shop", "front", "2026-01-01T00:00:00Z", json!({})));
    cluster.apply(load_balancer("db", "store", "2026-01-02T00:00:00Z", json!({})));
    let reserved = json!({"metallb.io/address-pool": "reserved"});
    cluster.apply(load_balancer("default", "pinned", "2026-01-03T00:00:00Z", reserved));
    // Names a pool that admits only Namespaces labelled team=blue, and its
    // Namespace does not exist yet.
    let blue_pool = json!({"metallb.io/address-pool": "blue"});
    cluster.apply(load_balancer("later", "waiting", "2026-01-04T00:00:00Z", blue_pool));

    bed.start_lb_with(cluster.options(&["--identity", "agent-a", "--node-name", "node-a"])).await.unwrap();
    // The Namespace's labels select the prioritised pool; the others draw
    // from the general one; the annotation picks a pool not auto-assigned.
    cluster.wait_addresses("shop", "front", &["192.0.2.20"]).await;
    cluster.wait_addresses("db", "store", &["192.0.2.10"]).await;
    cluster.wait_addresses("default", "pinned", &["192.0.2.30"]).await;
    cluster.wait_event("later", "waiting", "AddressPoolNotAllowed").await;
    assert!(cluster.addresses("later", "waiting").is_empty());

    // The Namespace appears with the label the pool selects: the address follows.
    cluster.apply(namespace("later", json!({"team": "blue"})));
    cluster.wait_addresses("later", "waiting", &["192.0.2.40"]).await;
    // A pool's change comes through its watch: the general pool moves.
    cluster.apply(pool("general", &["192.0.2.50-192.0.2.51"], json!({})));
    cluster.wait_addresses("db", "store", &["192.0.2.50"]).await;

    // Every call the agent made is one API_ACCESS declares (which the
    // manifests' RBAC grants exactly), namespaced ones in lb-system only;
    // the MetalLB resources were listed and watched.
    let requests = cluster.api.requests();
    let granted: BTreeSet<(String, String, String)> = API_ACCESS
        .iter()
        .flat_map(|a| a.verbs.iter().map(|v| (a.group.to_string(), a.resource.to_string(), v.to_string())))
        .collect();
    let called = cluster.api.rbac_calls();
    let outside: Vec<_> = called.difference(&granted).collect();
    assert!(outside.is_empty(), "calls RBAC does not grant: {outside:?}");
    for resource in ["ipaddresspools", "l2advertisements"] {
        for verb in ["list", "watch"] {
            let call = ("metallb.io".to_string(), resource.to_string(), verb.to_string());
            assert!(called.contains(&call), "{verb} {resource}: {called:?}");
        }
    }
    for access in API_ACCESS.iter().filter(|a| a.scope == AccessScope::OwnNamespace) {
        let elsewhere: Vec<String> = requests
            .iter()
            .filter(|r| r.group == access.group && r.resource_path() == access.resource)
            .filter(|r| r.namespace.as_deref() != Some("lb-system"))
            .map(RecordedRequest::summary)
            .collect();
        assert!(elsewhere.is_empty(), "{} outside lb-system: {elsewhere:?}", access.resource);
    }
    assert!(bed.lb_running(), "{}", bed.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crds_the_agent_serves_and_picks_them_up_when_installed() {
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
    // A --config pool, and a Service asking for the MetalLB pool by name.
    let config = bed.log_dir().join("config.yaml");
    std::fs::write(&config, "addressPools:\n  - name: lan\n    addresses: [192.0.2.100/32]\n").unwrap();
    let first_pool = json!({"metallb.io/address-pool": "first-pool"});
    cluster.apply(load_balancer("default", "lb-1", "2026-01-01T00:00:00Z", first_pool));

    let config_arg = format!("--config={}", config.display());
    bed.start_lb_with(cluster.options(&["--identity", "agent-a", &config_arg])).await.unwrap();
    // Ready and serving as without MetalLB: the first snapshot did not wait.
    bed.ok(bed.wait_route("a.com", "/", 200, Some("pod-a")).await);
    cluster.wait_event("default", "lb-1", "UnknownAddressPool").await;
    let asked = |r: &RecordedRequest| r.path == "/apis/metallb.io/v1beta1" && r.status == 404;
    cluster.api.wait_for_request(asked, WRITE_TIMEOUT).await.expect("discovery asked whether MetalLB is installed");
    let metallb_calls: Vec<String> =
        cluster.api.requests().iter().filter(|r| r.group == "metallb.io").map(RecordedRequest::summary).collect();
    assert!(metallb_calls.is_empty(), "no MetalLB resource is asked for before its CRD exists: {metallb_calls:?}");

    // MetalLB is installed with a pool: picked up at the next re-check.
    let installed = std::time::Instant::now();
    cluster.api.install_crds("metallb.io").unwrap();
    cluster.apply(pool("first-pool", &["192.0.2.150-192.0.2.200"], json!({})));
    cluster.wait_addresses("default", "lb-1", &["192.0.2.150"]).await;
    assert!(installed.elapsed() < Duration::from_secs(10), "picked up in {:?}", installed.elapsed());
    let watching =
        lb_output(&bed).lines().filter(|l| l.contains("are served (metallb.io/v1beta1): watching them")).count();
    assert_eq!(watching, 2, "one log line per resource watched:\n{}", bed.logs());

    // MetalLB is removed: its pool goes, and the Service loses the address.
    cluster.api.remove_crds("metallb.io");
    cluster.wait_addresses("default", "lb-1", &[]).await;
    bed.ok(bed.wait_route("a.com", "/", 200, Some("pod-a")).await);
    assert!(bed.lb_running(), "{}", bed.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_renews_its_node_lease_and_follows_the_others() {
    let mut bed = L7Bed::new().unwrap();
    let cluster = Cluster::new(&bed);
    // Another node's Lease, renewed by nobody, with a 2 s duration.
    let ghost = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "lb-node-ghost", "namespace": "lb-system"},
        "spec": {"holderIdentity": "ghost-agent", "leaseDurationSeconds": 2, "renewTime": "2026-01-01T00:00:00.000000Z"},
    });
    cluster.apply(ghost);
    // --no-status: no leader election, but the node Lease all the same.
    bed.start_lb_with(cluster.options(&["--identity", "agent-a", "--node-name", "node-a", "--no-status"]))
        .await
        .unwrap();

    let lease = |_: &FakeApi| cluster.node_lease("lb-node-node-a");
    let waited = cluster.api.wait_until(|api| lease(api).is_some(), WRITE_TIMEOUT).await;
    waited.unwrap_or_else(|e| panic!("the node Lease is created: {e:#}"));
    let (holder, first_renewal, duration) = lease(&cluster.api).unwrap();
    assert_eq!((holder.as_deref(), duration), (Some("agent-a"), Some(15)));
    // Renewed every 2 s: the renewTime advances.
    let renewed = |api: &FakeApi| lease(api).is_some_and(|(_, renewal, _)| renewal > first_renewal);
    cluster.api.wait_until(renewed, Duration::from_secs(5)).await.expect("the node Lease is renewed");
    let requests = cluster.api.requests();
    let writes = |verb: &str| {
        requests
            .iter()
            .filter(|r| r.resource == "leases" && r.verb == verb && r.namespace.as_deref() == Some("lb-system"))
            .count()
    };
    assert!(writes("create") == 1 && writes("update") >= 1, "{}", requests.len());
    assert!(cluster.api.get("coordination.k8s.io/v1", "Lease", Some("lb-system"), "lb-leader").is_none());

    // The agent follows the node Leases: the ghost's stops changing and
    // expires after its 2 s; the agent's own stays alive.
    let expired =
        || lb_output(&bed).lines().any(|l| l.contains("the node's agent is not alive") && l.contains("ghost"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !expired() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(expired(), "the ghost node expires:\n{}", bed.logs());
    let own_expired = lb_output(&bed).lines().any(|l| l.contains("not alive") && l.contains("node-a"));
    assert!(!own_expired, "this node stays alive:\n{}", bed.logs());

    // A stopping agent releases its Lease but keeps its duration.
    assert!(bed.stop_lb(), "lb exits cleanly on SIGTERM\n{}", bed.logs());
    let (holder, _, duration) = lease(&cluster.api).unwrap();
    assert_eq!((holder, duration), (None, Some(15)));
}
