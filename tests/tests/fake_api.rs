//! The fake Kubernetes API server (`lb_testbed::fake_api`) driven by the real
//! kube-rs client, `watcher` and `reflector`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use lb_testbed::fake_api::{FakeApi, RecordedRequest};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

async fn setup() -> Result<(FakeApi, SocketAddr, kube::Client)> {
    let api = FakeApi::new();
    let addr = api.listen()?;
    let client = api.client(addr).await?;
    Ok((api, addr, client))
}

fn svc(ns: &str, name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]},
    })
}

/// The Status of a kube API error: (code, reason).
fn api_error<T: std::fmt::Debug>(r: kube::Result<T>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names<K: kube::Resource>(items: impl IntoIterator<Item = impl AsRef<K>>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().map(|o| o.as_ref().meta().name.clone().unwrap_or_default()).collect();
    v.sort();
    v
}

fn count(api: &FakeApi, verb: &str, resource: &str) -> usize {
    api.requests().iter().filter(|r| r.verb == verb && r.resource == resource).count()
}

/// Polls `f` every 20 ms until it holds, for at most `timeout`.
async fn eventually(what: &str, timeout: Duration, f: impl Fn() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn list_paging_and_selectors() -> Result<()> {
    let (api, _addr, client) = setup().await?;
    for (i, app) in ["a", "a", "b", "a", "b"].iter().enumerate() {
        api.apply(svc("default", &format!("svc-{i}"), app))?;
    }
    api.apply(svc("other", "elsewhere", "a"))?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");

    let mut pages = Vec::new();
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(2);
    for _ in 0..10 {
        let page = services.list(&lp).await?;
        pages.push((page.items.len(), page.metadata.resource_version.clone()));
        seen.extend(page.items.iter().map(|s| s.metadata.name.clone().unwrap_or_default()));
        lp.continue_token = page.metadata.continue_.clone();
        if lp.continue_token.is_none() {
            break;
        }
        // A write between pages does not change what the next pages show.
        api.apply(svc("default", "svc-late", "a"))?;
    }
    assert_eq!(pages.iter().map(|p| p.0).collect::<Vec<_>>(), [2, 2, 1]);
    assert!(pages.iter().all(|p| p.1 == pages[0].1), "every page has the first page's resourceVersion: {pages:?}");
    assert_eq!(seen, ["svc-0", "svc-1", "svc-2", "svc-3", "svc-4"]);
    assert_eq!(services.list(&ListParams::default()).await?.items.len(), 6);

    let sel = |l: &str| ListParams::default().labels(l);
    let n = |l: kube::core::ObjectList<Service>| names::<Service>(l.items.into_iter().map(Box::new));
    assert_eq!(n(services.list(&sel("app=b")).await?), ["svc-2", "svc-4"]);
    assert_eq!(n(services.list(&sel("app!=a")).await?), ["svc-2", "svc-4"]);
    assert_eq!(n(services.list(&sel("app,app in (b)")).await?), ["svc-2", "svc-4"]);
    assert!(n(services.list(&sel("missing")).await?).is_empty());
    let by_name = services.list(&ListParams::default().fields("metadata.name=svc-3")).await?;
    assert_eq!(n(by_name), ["svc-3"]);
    let not_name = services.list(&ListParams::default().fields("metadata.name!=svc-3").labels("app=a")).await?;
    assert_eq!(n(not_name), ["svc-0", "svc-1", "svc-late"]);
    let everywhere: Api<Service> = Api::all(client.clone());
    let in_other = everywhere.list(&ListParams::default().fields("metadata.namespace=other")).await?;
    assert_eq!(n(in_other), ["elsewhere"]);
    assert_eq!(everywhere.list(&ListParams::default()).await?.items.len(), 7);
    // Unsupported field labels are rejected, as by a real server.
    assert_eq!(api_error(services.list(&ListParams::default().fields("spec.type=x")).await).0, 400);

    api.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls", "namespace": "default"},
        "type": "kubernetes.io/tls", "data": {}}))?;
    api.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "opaque", "namespace": "default"},
        "type": "Opaque"}))?;
    let secrets: Api<Secret> = Api::default_namespaced(client);
    let tls = secrets.list(&ListParams::default().fields("type=kubernetes.io/tls")).await?;
    assert_eq!(names::<Secret>(tls.items.into_iter().map(Box::new)), ["tls"]);
    Ok(())
}

#[tokio::test]
async fn get_create_replace_patch_delete() -> Result<()> {
    let (api, _addr, client) = setup().await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    assert_eq!(api_error(services.get("web").await), (404, "NotFound".into()));

    let web: Service = serde_json::from_value(svc("default", "web", "a"))?;
    let created = services.create(&PostParams::default(), &web).await?;
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some(), "{meta:?}");
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert_eq!(api_error(services.create(&PostParams::default(), &web).await), (409, "AlreadyExists".into()));
    assert_eq!(services.get("web").await?.metadata.uid, meta.uid);

    // Optimistic concurrency: a replace with a stale resourceVersion is a Conflict.
    let mut fresh = services.get("web").await?;
    fresh.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
    let replaced = services.replace("web", &PostParams::default(), &fresh).await?;
    assert_ne!(replaced.metadata.resource_version, fresh.metadata.resource_version);
    fresh.spec.as_mut().unwrap().session_affinity = Some("None".into());
    assert_eq!(api_error(services.replace("web", &PostParams::default(), &fresh).await), (409, "Conflict".into()));

    // A status patch changes only status; an object patch leaves status alone.
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.150"}]}},
        "spec": {"sessionAffinity": "None"}});
    services.patch_status("web", &PatchParams::default(), &Patch::Merge(&status)).await?;
    let got = services.get("web").await?;
    let ip = got.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    assert_eq!(ip.unwrap()[0].ip.as_deref(), Some("192.168.1.150"));
    assert_eq!(got.spec.as_ref().unwrap().session_affinity.as_deref(), Some("ClientIP"));
    let meta_patch = json!({"metadata": {"labels": {"x": "y"}}, "status": {"loadBalancer": {}}});
    services.patch("web", &PatchParams::default(), &Patch::Merge(&meta_patch)).await?;
    let got = services.get("web").await?;
    assert_eq!(got.metadata.labels.as_ref().unwrap()["x"], "y");
    assert!(got.status.unwrap().load_balancer.unwrap().ingress.is_some(), "object patch must not change status");
    // The same status again is a no-op: no new resourceVersion.
    let before = got.metadata.resource_version.clone();
    services.patch_status("web", &PatchParams::default(), &Patch::Merge(&status)).await?;
    assert_eq!(services.get("web").await?.metadata.resource_version, before);

    // JSON patch, server-side apply (creating), strategic merge.
    let ops = json!([
        {"op": "add", "path": "/metadata/annotations", "value": {"a": "1"}},
        {"op": "remove", "path": "/metadata/labels/x"},
    ]);
    let req = http::Request::patch("/api/v1/namespaces/default/services/web?fieldManager=t")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops)?)?;
    client.request::<Service>(req).await?;
    let got = services.get("web").await?;
    assert_eq!(got.metadata.annotations.unwrap()["a"], "1");
    assert!(!got.metadata.labels.unwrap().contains_key("x"));
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let ssa = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "v"}});
    cms.patch("cfg", &PatchParams::apply("lb").force(), &Patch::Apply(&ssa)).await?;
    let smp = json!({"data": {"k2": "v2"}});
    cms.patch("cfg", &PatchParams::default(), &Patch::Strategic(&smp)).await?;
    let data = cms.get("cfg").await?.data.unwrap();
    assert_eq!((data["k"].as_str(), data["k2"].as_str()), ("v", "v2"));
    assert_eq!(api_error(cms.patch("nope", &PatchParams::default(), &Patch::Merge(&smp)).await).0, 404);

    // Cluster-scoped, and the Lease get/create/replace cycle of leader election.
    let nodes: Api<Node> = Api::all(client.clone());
    api.apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}}))?;
    assert_eq!(nodes.get("node1").await?.metadata.namespace, None);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "lb-system");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "lb-leader"},
        "spec": {"holderIdentity": "node1", "leaseDurationSeconds": 15}}))?;
    let held = leases.create(&PostParams::default(), &lease).await?;
    let mut take = held.clone();
    take.spec.as_mut().unwrap().holder_identity = Some("node2".into());
    leases.replace("lb-leader", &PostParams::default(), &take).await?;
    take.spec.as_mut().unwrap().holder_identity = Some("node3".into());
    assert_eq!(api_error(leases.replace("lb-leader", &PostParams::default(), &take).await).0, 409);
    let stored: Lease = api.get_as(Some("lb-system"), "lb-leader")?.context("lease stored")?;
    assert_eq!(stored.spec.unwrap().holder_identity.as_deref(), Some("node2"));

    services.delete("web", &DeleteParams::default()).await?;
    assert_eq!(api_error(services.get("web").await).0, 404);
    assert_eq!(api_error(services.delete("web", &DeleteParams::default()).await).0, 404);
    assert!(api.get("v1", "Service", Some("default"), "web").is_none());
    Ok(())
}

/// A fixed, short backoff so reconnections are quick in tests.
struct Fast;
impl Iterator for Fast {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }
}
impl Backoff for Fast {
    fn reset(&mut self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_survives_disconnects_expiry_and_compaction() -> Result<()> {
    let (api, _addr, client) = setup().await?;
    for i in 0..3 {
        api.apply(svc("default", &format!("s{i}"), "a"))?;
    }
    let (reader, writer) = reflector::store::<Service>();
    let stream = reflector(writer, watcher(Api::<Service>::all(client), watcher::Config::default()).backoff(Fast));
    let errors = Arc::new(AtomicUsize::new(0));
    let errs = errors.clone();
    let driver = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                eprintln!("watcher error: {e}");
                errs.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let store_names = || names::<Service>(reader.state());
    let expect = |want: &[&str]| {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        move || store_names() == want
    };
    tokio::time::timeout(WAIT, reader.wait_until_ready()).await??;
    assert_eq!(store_names(), ["s0", "s1", "s2"]);
    api.wait_until(|a| a.open_watches() == 1, WAIT).await?;
    let watch = api.wait_for_request(|r| r.verb == "watch", WAIT).await?;
    assert!(watch.query.contains("allowWatchBookmarks=true"), "{}", watch.query);
    api.apply(svc("default", "s3", "a"))?;
    eventually("s3 in the store", WAIT, expect(&["s0", "s1", "s2", "s3"])).await?;

    // Bookmarks are accepted silently.
    api.send_bookmarks();
    api.apply(svc("default", "s4", "a"))?;
    eventually("s4 in the store", WAIT, expect(&["s0", "s1", "s2", "s3", "s4"])).await?;
    assert_eq!(errors.load(Ordering::SeqCst), 0);

    // A dropped connection: the watcher re-watches from its last version (no relist).
    api.drop_connections();
    api.delete("v1", "Service", Some("default"), "s0");
    api.apply(svc("default", "s5", "a"))?;
    eventually("catching up after a drop", WAIT, expect(&["s1", "s2", "s3", "s4", "s5"])).await?;
    api.wait_until(|a| a.open_watches() == 1, WAIT).await?;
    assert_eq!(count(&api, "list", "services"), 1, "a resumed watch needs no relist");
    assert!(count(&api, "watch", "services") >= 2);

    // 410 on the open watch: the watcher relists.
    api.expire_watches();
    eventually("a second list after expiry", WAIT, || count(&api, "list", "services") == 2).await?;
    api.wait_until(|a| a.open_watches() == 1, WAIT).await?;

    // Outage + compaction: objects deleted meanwhile are gone after the relist.
    api.set_unavailable(true);
    api.delete("v1", "Service", Some("default"), "s1");
    api.delete("v1", "Service", Some("default"), "s2");
    api.apply(svc("default", "s6", "b"))?;
    api.compact();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store_names(), ["s1", "s2", "s3", "s4", "s5"], "the store keeps its state during the outage");
    api.set_unavailable(false);
    eventually("a third list after compaction", WAIT, || count(&api, "list", "services") == 3).await?;
    eventually("the exact state after relisting", WAIT, expect(&["s3", "s4", "s5", "s6"])).await?;
    let refused = api.requests().iter().filter(|r| r.status == 503).count();
    assert!(refused >= 1, "requests during the outage were refused");
    driver.abort();
    Ok(())
}

#[tokio::test]
async fn raw_watch_semantics() -> Result<()> {
    let (api, _addr, client) = setup().await?;
    let services: Api<Service> = Api::namespaced(client, "default");
    api.apply(svc("default", "w", "a"))?;
    let rv = api.resource_version().to_string();
    let wp = WatchParams::default().labels("app=a").timeout(2);
    let mut stream = services.watch(&wp, &rv).await?.boxed();
    let mut next = async || -> Result<WatchEvent<Service>> {
        Ok(tokio::time::timeout(WAIT, stream.next()).await?.context("stream ended")??)
    };
    // Leaving the selection is DELETED, entering it ADDED, a change within MODIFIED.
    api.apply(svc("default", "w", "b"))?;
    assert!(matches!(next().await?, WatchEvent::Deleted(s) if s.metadata.name.as_deref() == Some("w")));
    api.apply(svc("default", "other-ns-ignored", "b"))?;
    api.apply(svc("default", "w", "a"))?;
    assert!(matches!(next().await?, WatchEvent::Added(_)));
    api.merge_patch("v1", "Service", Some("default"), "w", &json!({"spec": {"sessionAffinity": "ClientIP"}}))?;
    assert!(matches!(next().await?, WatchEvent::Modified(_)));
    // timeoutSeconds ends the stream cleanly.
    let ended = tokio::time::timeout(WAIT, stream.next()).await?;
    assert!(ended.is_none(), "expected the end of the stream, got {ended:?}");

    // From resourceVersion 0: the current objects as ADDED. From before a compaction: 410.
    let mut from_zero = services.watch(&WatchParams::default().timeout(5), "0").await?.boxed();
    let first = tokio::time::timeout(WAIT, from_zero.next()).await?.context("event")??;
    assert!(matches!(first, WatchEvent::Added(_)), "{first:?}");
    api.compact();
    let mut old = services.watch(&WatchParams::default(), &rv).await?.boxed();
    match tokio::time::timeout(WAIT, old.next()).await?.context("event")?? {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, old.next()).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn unavailable_then_available() -> Result<()> {
    let (api, addr, retrying) = setup().await?;
    api.apply(svc("default", "web", "a"))?;
    // kube retries 503 for minutes by default: see the failure with retries off.
    let kubeconfig: kube::config::Kubeconfig = serde_norway::from_str(&api.kubeconfig(addr))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    config.default_retry = false;
    let services: Api<Service> = Api::default_namespaced(kube::Client::try_from(config)?);
    api.set_unavailable(true);
    assert_eq!(api_error(services.get("web").await), (503, "ServiceUnavailable".into()));
    assert_eq!(api_error(services.list(&ListParams::default()).await).0, 503);
    // A retrying client's request made during a short outage succeeds after it.
    api.clear_requests();
    let retried = tokio::spawn(async move { Api::<Service>::default_namespaced(retrying).get("web").await });
    api.wait_until(|a| a.requests().iter().filter(|r| r.status == 503).count() >= 2, WAIT).await?;
    api.set_unavailable(false);
    assert_eq!(tokio::time::timeout(WAIT, retried).await???.metadata.name.as_deref(), Some("web"));
    assert_eq!(services.get("web").await?.metadata.name.as_deref(), Some("web"));

    // Refusing: connections closed without an answer, no retry.
    api.set_refusing(true);
    let refused = tokio::time::timeout(WAIT, services.get("web")).await?;
    assert!(refused.is_err() && !matches!(refused, Err(kube::Error::Api(_))), "{refused:?}");
    assert_eq!(api.requests().last().map(|r| r.status), Some(0));
    api.set_refusing(false);
    assert!(services.get("web").await.is_ok());
    Ok(())
}

#[tokio::test]
async fn request_log_classifies_requests() -> Result<()> {
    let (api, _addr, client) = setup().await?;
    api.apply(svc("default", "web", "a"))?;
    let services: Api<Service> = Api::default_namespaced(client.clone());
    services.list(&ListParams::default()).await?;
    let mut watch = services.watch(&WatchParams::default().timeout(1), "0").await?.boxed();
    tokio::time::timeout(WAIT, watch.next()).await?.context("an event")??;
    services.get("web").await?;
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
    services.patch_status("web", &PatchParams::default(), &Patch::Merge(&status)).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {}}))?;
    let lease = leases.create(&PostParams::default(), &lease).await?;
    leases.replace("l", &PostParams::default(), &lease).await?;
    leases.delete("l", &DeleteParams::default()).await?;

    let log = api.requests();
    let find = |verb: &str| -> &RecordedRequest { log.iter().find(|r| r.verb == verb).expect(verb) };
    assert_eq!(find("list").path, "/api/v1/namespaces/default/services");
    assert!(find("watch").query.contains("watch=true"));
    let get = find("get");
    assert_eq!(
        (get.name.as_deref(), get.namespace.as_deref(), get.subresource.as_deref()),
        (Some("web"), Some("default"), None)
    );
    let patch = find("patch");
    assert_eq!(patch.subresource.as_deref(), Some("status"));
    assert_eq!(patch.content_type.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(patch.body.as_ref().unwrap(), &status);
    let create = find("create");
    assert_eq!(
        (create.group.as_str(), create.resource.as_str(), create.status),
        ("coordination.k8s.io", "leases", 201)
    );

    let calls: BTreeSet<(String, String, String)> = [
        ("", "services", "list"),
        ("", "services", "watch"),
        ("", "services", "get"),
        ("", "services/status", "patch"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("coordination.k8s.io", "leases", "delete"),
    ]
    .into_iter()
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
    .collect();
    assert_eq!(api.rbac_calls(), calls);

    // A wait that times out says so and lists what was received.
    let err = api.wait_for_request(|r| r.verb == "deletecollection", Duration::from_millis(100)).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("timed out") && msg.contains("services/status"), "{msg}");
    api.clear_requests();
    assert!(api.requests().is_empty());
    assert!(api.rbac_calls().is_empty());
    Ok(())
}

/// MetalLB's resources exist only while their CRDs are installed:
/// discovery (as the agent asks it) lists them, their paths answer, and
/// removing the CRDs deletes their objects and ends their watches.
#[tokio::test]
async fn custom_resources_are_served_only_while_their_crds_are_installed() -> Result<()> {
    use lb_userspace::cluster::{MetalLbServed, discover_metallb};
    use lb_userspace::metallb::objects::IpAddressPoolObject;
    let (api, _addr, client) = setup().await?;
    let pool = json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "lan", "namespace": "metallb-system"},
        "spec": {"addresses": ["192.0.2.0/28"]},
    });
    let pools: Api<IpAddressPoolObject> = Api::all(client.clone());
    assert_eq!(discover_metallb(&client).await?, MetalLbServed::default());
    assert_eq!(api_error(pools.list(&ListParams::default()).await).0, 404);
    let groups = client.list_api_groups().await?;
    assert!(groups.groups.iter().all(|g| g.name != "metallb.io"));
    assert!(api.apply(pool.clone()).is_err(), "no objects of a CRD not installed");

    api.install_crds("metallb.io")?;
    assert_eq!(discover_metallb(&client).await?, MetalLbServed { pools: true, advertisements: true });
    let groups = client.list_api_groups().await?;
    let metallb = groups.groups.iter().find(|g| g.name == "metallb.io").context("metallb.io in /apis")?;
    assert_eq!(metallb.preferred_version.as_ref().map(|v| v.group_version.as_str()), Some("metallb.io/v1beta1"));
    api.apply(pool)?;
    let listed = pools.list(&ListParams::default()).await?;
    let listed_names: Vec<_> = listed.items.iter().map(|p| p.metadata.name.as_deref()).collect();
    assert_eq!(listed_names, [Some("lan")]);
    assert_eq!(listed.items[0].spec["addresses"], json!(["192.0.2.0/28"]));
    let mut watch = pools.watch(&WatchParams::default(), &listed.metadata.resource_version.unwrap()).await?.boxed();

    api.remove_crds("metallb.io");
    let event = tokio::time::timeout(WAIT, watch.next()).await?.context("an event")??;
    assert!(matches!(event, WatchEvent::Deleted(ref p) if p.metadata.name.as_deref() == Some("lan")), "{event:?}");
    assert!(tokio::time::timeout(WAIT, watch.next()).await?.is_none(), "the watch ends");
    assert_eq!(discover_metallb(&client).await?, MetalLbServed::default());
    assert!(api.list("metallb.io/v1beta1", "IPAddressPool").is_empty());
    // Discovery is not a resource request: RBAC does not see it.
    assert!(api.rbac_calls().iter().all(|(group, ..)| group == "metallb.io"), "{:?}", api.rbac_calls());
    Ok(())
}

#[tokio::test]
async fn kubeconfig_errors_and_test_side_state() -> Result<()> {
    let api = FakeApi::new();
    let addr = api.listen()?;
    let second = api.listen()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, api.kubeconfig(second))?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config)?;
    assert!(client.apiserver_version().await?.git_version.contains("fake"));

    // Both listeners serve the same state.
    api.apply_yaml(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\ndata: {a: b}\n---\n\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: lb}\nspec: {controller: x/lb}\n",
    )?;
    let other = api.client(addr).await?;
    assert_eq!(Api::<ConfigMap>::default_namespaced(other).get("one").await?.data.unwrap()["a"], "b");
    assert_eq!(api.list("networking.k8s.io/v1", "IngressClass").len(), 1);
    let cm: ConfigMap = api.get_as(Some("default"), "one")?.context("stored")?;
    assert_eq!(cm.metadata.namespace.as_deref(), Some("default"));

    // An agent writes, the test waits for it.
    let waiter = api.clone();
    let wait = tokio::spawn(async move {
        waiter.wait_for_object("v1", "ConfigMap", Some("default"), "one", |o| o["data"]["a"] == "c", WAIT).await
    });
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.patch("one", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "c"}}))).await?;
    assert_eq!(wait.await??["data"]["a"], "c");

    // Unknown paths are 404 Status, bad JSON 400 Status.
    let raw = |method: &str, uri: &str, body: &str| {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    let unknown = client.request::<Value>(raw("GET", "/api/v1/widgets", "")).await;
    assert_eq!(api_error(unknown), (404, "NotFound".into()));
    let bad = client.request::<Value>(raw("POST", "/api/v1/namespaces/default/configmaps", "{nope")).await;
    assert_eq!(api_error(bad), (400, "BadRequest".into()));
    let no_sub = client.request::<Value>(raw("GET", "/api/v1/namespaces/default/configmaps/one/status", "")).await;
    assert_eq!(api_error(no_sub).0, 404);

    // Dropping the last handle stops serving.
    let waiter = api.clone();
    drop(api);
    drop(waiter);
    eventually("the listener to close", WAIT, || std::net::TcpStream::connect(addr).is_err()).await?;
    Ok(())
}

#[tokio::test]
async fn event_recorder_creates_then_patches_a_series() -> Result<()> {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let (api, _addr, client) = setup().await?;
    let web: Service = serde_json::from_value(api.apply(svc("default", "web", "a"))?)?;
    let reporter = Reporter { controller: "lb".into(), instance: Some("node1".into()) };
    let recorder = Recorder::new(client, reporter);
    let event = Event {
        type_: EventType::Normal,
        reason: "Programmed".into(),
        note: Some("frontends written".into()),
        action: "Sync".into(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(&web, &());
    recorder.publish(&event, &reference).await?;
    recorder.publish(&event, &reference).await?;
    let events = api.list("events.k8s.io/v1", "Event");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["series"]["count"], 2);
    assert_eq!(events[0]["regarding"]["name"], "web");
    let calls = api.rbac_calls();
    for verb in ["create", "patch"] {
        assert!(calls.contains(&("events.k8s.io".into(), "events".into(), verb.into())), "{calls:?}");
    }
    Ok(())
}

/// Removes the test's network namespace, also on panic.
struct NetnsGuard(String);
impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = lb_testbed::netns::ip(&["netns", "del", &self.0]);
    }
}

#[tokio::test]
async fn serves_inside_a_network_namespace() -> Result<()> {
    lb_testbed::require_root()?;
    let ns = format!("lbt{}-0-fakeapi", std::process::id());
    let _ = lb_testbed::netns::ip(&["netns", "del", &ns]);
    lb_testbed::netns::ip(&["netns", "add", &ns])?;
    let _guard = NetnsGuard(ns.clone());
    lb_testbed::netns::ip_in(&ns, &["link", "set", "lo", "up"])?;
    let api = FakeApi::new();
    let addr = api.listen_in_netns(&ns)?;
    api.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"}, "data": {"a": "b"}}))?;
    let path = "/api/v1/namespaces/default/configmaps/one";
    let ns2 = ns.clone();
    let resp = tokio::task::spawn_blocking(move || {
        lb_testbed::client::http_request(&ns2, addr, path, &[], Duration::from_secs(5))
    })
    .await??;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(serde_json::from_str::<Value>(&resp.body)?["data"]["a"], "b");
    let req = api.wait_for_request(|r| r.verb == "get" && r.resource == "configmaps", WAIT).await?;
    assert_eq!(req.name.as_deref(), Some("one"));
    Ok(())
}
