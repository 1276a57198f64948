//! `lb run --kubeconfig` against the in-process fake API server: the agent
//! follows the API (list + watch, reconnects, `410 Gone` relists, outages),
//! routes real HTTP to lb-echo pods, and — as leader — writes Service and
//! Ingress status, Events and its Lease. No root needed (`--no-xdp`); the
//! data path with XDP is covered by `netns_kube.rs`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use lb_testbed::fake_api::{FakeApi, RecordedRequest};
use lb_testbed::l7::{EchoPod, EndpointSlice, Ingress, L7Bed, LbOptions, Rule, Service};
use lb_userspace::cluster::{API_ACCESS, AccessScope};
use serde_json::{Value, json};

/// How long the agent gets to write what the objects imply.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the agent gets to catch up after failed watches: the
/// reflectors back off (exponentially, at most 30 s apart) while they fail.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(40);

/// A fake cluster and an agent (with its own L7 bed) following it.
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

    /// Service `name` (port `http` 80 → 8080) and its EndpointSlice.
    fn service(&self, name: &str, pods: &[&EchoPod]) {
        self.apply(Service::new(name).namespace("default").port("http", 80, 8080).value());
        self.slice(name, pods);
    }

    fn slice(&self, name: &str, pods: &[&EchoPod]) {
        let mut slice = EndpointSlice::named(&format!("{name}-1"), name).namespace("default").port("http", 8080);
        for pod in pods {
            slice = slice.endpoint(pod.ip(), true);
        }
        self.apply(slice.value());
    }

    /// Options for an agent with identity `identity` following this cluster.
    fn options(&self, identity: &str, extra: &[&str]) -> LbOptions {
        let mut extra_args: Vec<String> = vec!["--identity".into(), identity.into()];
        extra_args.extend(extra.iter().map(|s| s.to_string()));
        LbOptions { kubeconfig: Some(self.kubeconfig.clone()), extra_args, ..LbOptions::default() }
    }

    /// The holder of the leader Lease.
    fn leader(&self) -> Option<String> {
        let lease = self.api.get("coordination.k8s.io/v1", "Lease", Some("lb-system"), "lb-leader")?;
        lease.pointer("/spec/holderIdentity").and_then(Value::as_str).map(str::to_string)
    }

    async fn wait_leader(&self, identity: &str) {
        let wanted = Some(identity.to_string());
        let waited = self.api.wait_until(|_| self.leader() == wanted, WRITE_TIMEOUT).await;
        waited.unwrap_or_else(|e| panic!("{identity} should lead (holder: {:?}): {e:#}", self.leader()));
    }

    /// The addresses of an object's `status.loadBalancer.ingress`.
    fn status_addresses(&self, api_version: &str, kind: &str, name: &str) -> Vec<String> {
        let object = self.api.get(api_version, kind, Some("default"), name).unwrap_or_default();
        let ingress = object.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).cloned();
        ingress.unwrap_or_default().iter().filter_map(|i| i["ip"].as_str().map(str::to_string)).collect()
    }

    async fn wait_status(&self, api_version: &str, kind: &str, name: &str, addresses: &[&str]) {
        let wanted: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        let waited =
            self.api.wait_until(|_| self.status_addresses(api_version, kind, name) == wanted, WRITE_TIMEOUT).await;
        waited.unwrap_or_else(|e| {
            panic!(
                "{kind} {name} should show {wanted:?}, shows {:?}: {e:#}",
                self.status_addresses(api_version, kind, name)
            )
        });
    }

    /// The Events the agent created about `kind/name`, as (reason, note).
    fn events_about(&self, kind: &str, name: &str) -> Vec<(String, String)> {
        self.api
            .list("events.k8s.io/v1", "Event")
            .iter()
            .filter(|e| e.pointer("/regarding/kind").and_then(Value::as_str) == Some(kind))
            .filter(|e| e.pointer("/regarding/name").and_then(Value::as_str) == Some(name))
            .map(|e| {
                (e["reason"].as_str().unwrap_or_default().to_string(), e["note"].as_str().unwrap_or_default().into())
            })
            .collect()
    }

    async fn wait_event(&self, kind: &str, name: &str, reason: &str) -> String {
        let found = || self.events_about(kind, name).into_iter().find(|(r, _)| r == reason).map(|(_, note)| note);
        let waited = self.api.wait_until(|_| found().is_some(), WRITE_TIMEOUT).await;
        waited.unwrap_or_else(|e| {
            panic!("an Event {reason} on {kind} {name} ({:?}): {e:#}", self.events_about(kind, name))
        });
        found().unwrap()
    }
}

fn ingress_service(status_ip: Option<&str>) -> Value {
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service",
        // The oldest Service: first in line for an address.
        "metadata": {"name": "lb-ingress", "namespace": "lb-system", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
    });
    if let Some(ip) = status_ip {
        service["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
    }
    service
}

fn load_balancer(name: &str, extra_spec: Value, annotations: Value) -> Value {
    let mut spec = json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
    spec.as_object_mut().unwrap().extend(extra_spec.as_object().cloned().unwrap_or_default());
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": spec,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_the_api_through_reconnects_relists_and_outages() {
    let mut bed = L7Bed::new().unwrap();
    let cluster = Cluster::new(&bed);
    let (a, b) = (bed.echo("pod-a").unwrap(), bed.echo("pod-b").unwrap());
    cluster.service("web", &[&a]);
    cluster.apply(
        Ingress::new("web").namespace("default").class("lb").rule(Rule::host("a.com").prefix("/", "web", 80)).value(),
    );
    bed.start_lb_with(cluster.options("agent-a", &["--no-status"])).await.unwrap();
    bed.ok(bed.wait_route("a.com", "/", 200, Some("pod-a")).await);

    // A change arrives through the watch.
    cluster.slice("web", &[&b]);
    bed.ok(bed.wait_route("a.com", "/", 200, Some("pod-b")).await);

    // The API server goes away: the last state keeps serving.
    cluster.api.set_unavailable(true);
    cluster.api.drop_connections();
    for _ in 0..10 {
        assert_eq!(bed.ok(bed.route("a.com", "/").await), (200, Some("pod-b".into())), "serving during the outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A change made meanwhile is picked up when it is back (re-watch from
    // the last resourceVersion).
    cluster.slice("web", &[&a]);
    cluster.api.set_unavailable(false);
    bed.ok(bed.wait_route_within("a.com", "/", 200, Some("pod-a"), RECOVERY_TIMEOUT).await);

    // The history is compacted while the watch is broken: the re-watch gets
    // 410 Gone, the agent lists again and ends up exact, and serves the old
    // routes until the new list is complete.
    let lists_before = count(&cluster.api.requests(), "endpointslices", "list");
    cluster.api.drop_connections();
    cluster.slice("web", &[&b]);
    cluster.api.delete("networking.k8s.io/v1", "Ingress", Some("default"), "web");
    cluster.apply(
        Ingress::new("web2").namespace("default").class("lb").rule(Rule::host("b.com").prefix("/", "web", 80)).value(),
    );
    cluster.api.compact();
    cluster.api.expire_watches();
    bed.ok(bed.wait_route_within("b.com", "/", 200, Some("pod-b"), RECOVERY_TIMEOUT).await);
    bed.ok(bed.wait_route("a.com", "/", 404, None).await);
    let lists_after = count(&cluster.api.requests(), "endpointslices", "list");
    assert!(lists_after > lists_before, "a relist after 410 Gone ({lists_before} → {lists_after} lists)");

    // Bookmarks are taken in stride.
    cluster.api.send_bookmarks();
    cluster.slice("web", &[&a, &b]);
    let both: BTreeSet<Option<String>> = [Some("pod-a".to_string()), Some("pod-b".to_string())].into();
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        seen.extend(pods_answering(&bed, "b.com", 10).await);
        if seen == both {
            break;
        }
    }
    assert_eq!(seen, both, "both endpoints serve after the bookmark and the change");
    assert!(bed.lb_running(), "lb survived it all\n{}", bed.logs());
    // --no-status: nothing written but this node's liveness Lease.
    let writes: Vec<String> = cluster
        .api
        .requests()
        .iter()
        .filter(|r| !matches!(r.verb.as_str(), "list" | "watch" | "get"))
        .filter(|r| !is_node_lease(r))
        .map(RecordedRequest::summary)
        .collect();
    assert!(writes.is_empty(), "--no-status writes nothing but the node Lease: {writes:?}");
    let leader = cluster.api.get("coordination.k8s.io/v1", "Lease", Some("lb-system"), "lb-leader");
    assert!(leader.is_none(), "no leader election with --no-status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_writes_addresses_status_and_events_and_only_what_rbac_allows() {
    let mut bed = L7Bed::new().unwrap();
    let cluster = Cluster::new(&bed);
    let pod = bed.echo("pod-a").unwrap();
    cluster.service("web", &[&pod]);
    let config = bed.log_dir().join("config.yaml");
    std::fs::write(&config, "addressPools:\n  - name: lan\n    addresses: [192.0.2.100-192.0.2.102]\n").unwrap();
    cluster.apply(ingress_service(None));
    cluster.apply(load_balancer("lb-1", json!({}), json!({})));
    cluster.apply(load_balancer("theirs", json!({"loadBalancerClass": "other.io/lb"}), json!({})));
    cluster.apply(
        Ingress::new("ours").namespace("default").class("lb").rule(Rule::host("a.com").prefix("/", "web", 80)).value(),
    );
    cluster.apply(
        Ingress::new("other")
            .namespace("default")
            .class("nginx-other")
            .rule(Rule::host("o.com").prefix("/", "web", 80))
            .value(),
    );
    // Names a Service that does not exist: rejected, with an Event.
    cluster.apply(
        Ingress::new("broken")
            .namespace("default")
            .class("lb")
            .rule(Rule::host("x.com").prefix("/", "nope", 80))
            .value(),
    );

    // MetalLB's CRDs are installed (no pools): the agent watches them, so
    // every grant is used below.
    cluster.api.install_crds("metallb.io").unwrap();
    let config_arg = format!("--config={}", config.display());
    bed.start_lb_with(cluster.options("agent-a", &[&config_arg])).await.unwrap();
    cluster.wait_leader("agent-a").await;

    // IPAM: the controller's Service (oldest) and lb-1 get the pool's first addresses.
    let ingress_ip = wait_service_ip(&cluster, "lb-system", "lb-ingress").await;
    assert_eq!(ingress_ip, "192.0.2.100");
    cluster.wait_status("v1", "Service", "lb-1", &["192.0.2.101"]).await;
    // The Ingress shows the controller Service's address; the other class's is untouched.
    cluster.wait_status("networking.k8s.io/v1", "Ingress", "ours", &["192.0.2.100"]).await;
    let note = cluster.wait_event("Ingress", "broken", "Rejected").await;
    assert!(note.contains("nope"), "the Event names the missing Service: {note}");
    bed.ok(bed.wait_route("a.com", "/", 200, Some("pod-a")).await);

    // A requested address in use, then the pool runs out.
    cluster.apply(load_balancer("wants-100", json!({"loadBalancerIP": "192.0.2.100"}), json!({})));
    let note = cluster.wait_event("Service", "wants-100", "AddressInUse").await;
    assert!(note.contains("lb-ingress"), "names the holder: {note}");
    cluster.apply(load_balancer("lb-2", json!({}), json!({})));
    cluster.wait_status("v1", "Service", "lb-2", &["192.0.2.102"]).await;
    cluster.apply(load_balancer("lb-3", json!({}), json!({})));
    cluster.wait_event("Service", "lb-3", "PoolExhausted").await;
    assert!(cluster.status_addresses("v1", "Service", "lb-3").is_empty());

    // The broken Ingress is fixed, then broken again: the Event repeats as a series.
    cluster.apply(
        Ingress::new("broken")
            .namespace("default")
            .class("lb")
            .rule(Rule::host("x.com").prefix("/", "web", 80))
            .value(),
    );
    bed.ok(bed.wait_route("x.com", "/", 200, Some("pod-a")).await);
    cluster.apply(
        Ingress::new("broken")
            .namespace("default")
            .class("lb")
            .rule(Rule::host("x.com").prefix("/", "nope", 80))
            .value(),
    );
    let patched = cluster.api.wait_for_request(|r| r.resource == "events" && r.verb == "patch", WRITE_TIMEOUT).await;
    patched.unwrap_or_else(|e| panic!("the repeated Event is patched: {e:#}"));

    // Never touched: the other class's Ingress, the other class's Service.
    let requests = cluster.api.requests();
    for (resource, name) in [("ingresses", "other"), ("services", "theirs")] {
        let touched: Vec<String> = requests
            .iter()
            .filter(|r| r.resource == resource && r.name.as_deref() == Some(name) && r.verb != "get")
            .map(RecordedRequest::summary)
            .collect();
        assert!(touched.is_empty(), "{resource}/{name} belongs to someone else: {touched:?}");
    }

    // The agent made exactly the calls its RBAC grants (the manifests'
    // test checks the RBAC grants exactly API_ACCESS): no call outside it,
    // and every grant used.
    cluster.api.wait_for_request(|r| r.resource == "leases" && r.verb == "update", WRITE_TIMEOUT).await.unwrap();
    let granted: BTreeSet<(String, String, String)> = API_ACCESS
        .iter()
        .flat_map(|a| a.verbs.iter().map(|v| (a.group.to_string(), a.resource.to_string(), v.to_string())))
        .collect();
    let called = cluster.api.rbac_calls();
    let outside: Vec<_> = called.difference(&granted).collect();
    assert!(outside.is_empty(), "calls RBAC does not grant: {outside:?}");
    let unused: Vec<_> = granted.difference(&called).collect();
    assert!(unused.is_empty(), "grants never used: {unused:?}");
    // Namespace-scoped grants are used only in the agent's namespace.
    for access in API_ACCESS.iter().filter(|a| a.scope == AccessScope::OwnNamespace) {
        let elsewhere: Vec<String> = requests
            .iter()
            .filter(|r| r.group == access.group && r.resource_path() == access.resource)
            .filter(|r| r.namespace.as_deref() != Some("lb-system"))
            .map(RecordedRequest::summary)
            .collect();
        assert!(elsewhere.is_empty(), "{} outside lb-system: {elsewhere:?}", access.resource);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_agent_takes_over_when_the_leader_stops() {
    let mut first = L7Bed::new().unwrap();
    let mut second = L7Bed::new().unwrap();
    let cluster = Cluster::new(&first);
    let pod = first.echo("pod-a").unwrap();
    cluster.service("web", &[&pod]);
    cluster.apply(ingress_service(Some("192.0.2.7")));
    cluster.apply(
        Ingress::new("one").namespace("default").class("lb").rule(Rule::host("a.com").prefix("/", "web", 80)).value(),
    );

    first.start_lb_with(cluster.options("agent-a", &[])).await.unwrap();
    cluster.wait_leader("agent-a").await;
    cluster.wait_status("networking.k8s.io/v1", "Ingress", "one", &["192.0.2.7"]).await;
    second.start_lb_with(cluster.options("agent-b", &[])).await.unwrap();
    // Both serve; only one leads.
    second.ok(second.wait_route("a.com", "/", 200, Some("pod-a")).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.leader().as_deref(), Some("agent-a"), "the first agent keeps the Lease");

    // The leader stops: it releases the Lease, and the other takes over at once
    // (well within the 15 s lease duration) and writes the next status.
    assert!(first.stop_lb(), "lb exits cleanly on SIGTERM\n{}", first.logs());
    let stopped = std::time::Instant::now();
    cluster.wait_leader("agent-b").await;
    assert!(stopped.elapsed() < Duration::from_secs(10), "taken over in {:?}", stopped.elapsed());
    cluster.apply(
        Ingress::new("two").namespace("default").class("lb").rule(Rule::host("b.com").prefix("/", "web", 80)).value(),
    );
    cluster.wait_status("networking.k8s.io/v1", "Ingress", "two", &["192.0.2.7"]).await;
    let transitions = cluster
        .api
        .get("coordination.k8s.io/v1", "Lease", Some("lb-system"), "lb-leader")
        .and_then(|l| l.pointer("/spec/leaseTransitions").and_then(Value::as_i64));
    assert_eq!(transitions, Some(1), "one hand-over");
}

async fn wait_service_ip(cluster: &Cluster, namespace: &str, name: &str) -> String {
    let object = cluster
        .api
        .wait_for_object(
            "v1",
            "Service",
            Some(namespace),
            name,
            |s| s.pointer("/status/loadBalancer/ingress/0/ip").is_some(),
            WRITE_TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("Service {namespace}/{name} gets an address: {e:#}"));
    object.pointer("/status/loadBalancer/ingress/0/ip").and_then(Value::as_str).unwrap().to_string()
}

/// Whether a request is about a node's liveness Lease (by its URL, or for
/// a create by its body).
fn is_node_lease(r: &RecordedRequest) -> bool {
    let body_name = r.body.as_ref().and_then(|b| b.pointer("/metadata/name")).and_then(Value::as_str);
    let name = r.name.as_deref().or(body_name).unwrap_or_default();
    r.resource == "leases" && name.starts_with("lb-node-")
}

fn count(requests: &[RecordedRequest], resource: &str, verb: &str) -> usize {
    requests.iter().filter(|r| r.resource == resource && r.verb == verb).count()
}

/// The pods that answer `n` requests for `host`.
async fn pods_answering(bed: &L7Bed, host: &str, n: usize) -> BTreeSet<Option<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        if let Ok((200, pod)) = bed.route(host, "/").await {
            seen.insert(pod);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}
