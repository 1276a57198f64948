//! Following the Kubernetes API: one reflector per kind, and snapshots
//! built from their stores.
//!
//! - Each reflector lists, then watches from the list's resourceVersion.
//!   When its watch breaks it watches again from the last version it saw;
//!   when the API server says that version is gone (`410 Gone`) it lists
//!   again. Its store keeps the old objects until the new list is complete,
//!   so a relist never shows a half-empty cluster.
//! - A snapshot is built only once every store holds a complete list, then
//!   after every burst of changes (debounced), and published only when it
//!   differs from the last one. While the API server is unreachable nothing
//!   is published: the maps and routes keep serving the last snapshot.
//! - Secrets: only `kubernetes.io/tls` ones are watched, and the snapshot
//!   keeps only those that the Ingresses of our classes name.
//! - MetalLB's IPAddressPools and L2Advertisements are watched only while
//!   API discovery lists them (see [`super::metallb`]).
//! - Fields the compilers never read (managed fields, node images, all of a
//!   Namespace but its name and labels) are dropped as objects arrive.
//! - Each kind's objects are also kept as an [`Objects`] map, updated per
//!   watch event with the store's own `Arc`: a snapshot is a copy of those
//!   maps (a reference count each), an object the watch did not touch is
//!   the same allocation in every snapshot, and the maps share all but the
//!   changed objects' paths (what [`Snapshot::changes_since`] relies on), so
//!   a change costs neither a sort nor a walk over the cluster.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{info, warn};

use super::metallb::{MetalLbStores, SETTLE, discover_every};
use crate::compile::l7::{L7Options, referenced_secrets};
use crate::snapshot::{Objects, Snapshot, keep_name_and_labels};

/// How long to wait after a change for the rest of a burst (a rollout
/// changes many EndpointSlices in a row).
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The field selector of the Secrets the agent watches.
pub const TLS_SECRETS: &str = "type=kubernetes.io/tls";

/// The stores of every kind the snapshot is built from.
struct Stores {
    services: Reflected<Service>,
    endpoint_slices: Reflected<EndpointSlice>,
    ingresses: Reflected<Ingress>,
    ingress_classes: Reflected<IngressClass>,
    secrets: Reflected<Secret>,
    nodes: Reflected<Node>,
    namespaces: Reflected<Namespace>,
}

/// A kind the agent reflects: a Kubernetes object that kube's watcher can
/// decode and the tasks can share.
pub(super) trait Reflectable:
    Resource<DynamicType = ()> + Metadata<Ty = ObjectMeta> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> Reflectable for K where
    K: Resource<DynamicType = ()>
        + Metadata<Ty = ObjectMeta>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// One kind's reflector store, and its objects by (namespace, name).
pub(super) struct Reflected<K: Resource<DynamicType = ()> + 'static> {
    pub(super) store: Store<K>,
    sorted: Sorted<K>,
}

type Sorted<K> = Arc<Mutex<Objects<K>>>;

impl<K: Resource<DynamicType = ()> + Clone + 'static> Reflected<K> {
    /// The objects, shared with the store.
    pub(super) fn objects(&self) -> Objects<K> {
        self.sorted.lock().expect("not poisoned").clone()
    }
}

/// Follows the cluster through `client` and sends a snapshot whenever what
/// the agent uses changed. Returns when every receiver is gone.
/// MetalLB's resources are watched while API discovery lists them, asked
/// again every `metallb_recheck` (see [`super::metallb`]).
pub async fn watch_cluster(
    client: Client,
    options: L7Options,
    metallb_recheck: Duration,
    tx: watch::Sender<Arc<Snapshot>>,
) -> Result<()> {
    let changed = Arc::new(Notify::new());
    let mut reflectors = tokio::task::JoinSet::new();
    let (answers_tx, mut answers) = mpsc::channel(1);
    reflectors.spawn(discover_every(client.clone(), metallb_recheck, answers_tx));
    let mut metallb = MetalLbStores::default();
    let tls = watcher::Config::default().fields(TLS_SECRETS);
    let stores = Stores {
        services: reflect(&mut reflectors, Api::all(client.clone()), watcher::Config::default(), &changed, |_| {}),
        endpoint_slices: reflect(
            &mut reflectors,
            Api::all(client.clone()),
            watcher::Config::default(),
            &changed,
            |_| {},
        ),
        ingresses: reflect(&mut reflectors, Api::all(client.clone()), watcher::Config::default(), &changed, |_| {}),
        ingress_classes: reflect(
            &mut reflectors,
            Api::all(client.clone()),
            watcher::Config::default(),
            &changed,
            |_| {},
        ),
        secrets: reflect(&mut reflectors, Api::all(client.clone()), tls, &changed, |_| {}),
        nodes: reflect(&mut reflectors, Api::all(client.clone()), watcher::Config::default(), &changed, strip_node),
        namespaces: reflect(
            &mut reflectors,
            Api::all(client.clone()),
            watcher::Config::default(),
            &changed,
            keep_name_and_labels,
        ),
    };

    // MetalLB's resources, if discovery lists them while the other kinds
    // are listed, are in the first snapshot too (their first list given at
    // most SETTLE), so the status task does not see their pools missing.
    let metallb_settled = async {
        if let Some(Some(served)) = answers.recv().await {
            metallb.serve(served, &client, &changed);
            metallb.wait_until_ready().await;
        }
    };
    let first_lists = async {
        let (ready, _) = tokio::join!(stores.wait_until_ready(), tokio::time::timeout(SETTLE, metallb_settled));
        ready
    };
    tokio::select! {
        ready = first_lists => ready?,
        _ = tx.closed() => return Ok(()),
    }
    let first = stores.snapshot(&options, &metallb);
    info!(
        services = first.services.len(),
        endpoint_slices = first.endpoint_slices.len(),
        ingresses = first.ingresses.len(),
        nodes = first.nodes.len(),
        ip_address_pools = first.ip_address_pools.len(),
        "cluster listed"
    );
    tx.send_replace(Arc::new(first));
    loop {
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            _ = changed.notified() => {}
            Some(answer) = answers.recv() => {
                // Started reflectors wake `changed` once listed; stopped
                // ones take their objects out of the snapshot now.
                let stopped = answer.is_some_and(|served| metallb.serve(served, &client, &changed));
                if !stopped {
                    continue;
                }
            }
            ended = reflectors.join_next() => {
                // A reflector only ends by panicking: its stream retries
                // forever (and discovery asks until we are gone).
                anyhow::bail!("a Kubernetes watch task stopped: {ended:?}");
            }
        }
        tokio::time::sleep(DEBOUNCE).await;
        publish(&tx, stores.snapshot(&options, &metallb));
    }
}

impl Stores {
    async fn wait_until_ready(&self) -> Result<()> {
        let dropped = "a Kubernetes reflector stopped before its first list";
        self.services.store.wait_until_ready().await.context(dropped)?;
        self.endpoint_slices.store.wait_until_ready().await.context(dropped)?;
        self.ingresses.store.wait_until_ready().await.context(dropped)?;
        self.ingress_classes.store.wait_until_ready().await.context(dropped)?;
        self.secrets.store.wait_until_ready().await.context(dropped)?;
        self.nodes.store.wait_until_ready().await.context(dropped)?;
        self.namespaces.store.wait_until_ready().await.context(dropped)
    }

    /// The stores' objects as a snapshot, with only the referenced Secrets.
    fn snapshot(&self, options: &L7Options, metallb: &MetalLbStores) -> Snapshot {
        let mut snapshot = Snapshot {
            services: self.services.objects(),
            endpoint_slices: self.endpoint_slices.objects(),
            ingresses: self.ingresses.objects(),
            ingress_classes: self.ingress_classes.objects(),
            secrets: Objects::default(),
            nodes: self.nodes.objects(),
            namespaces: self.namespaces.objects(),
            ip_address_pools: metallb.pools(),
            l2_advertisements: metallb.advertisements(),
        };
        let wanted = referenced_secrets(&snapshot, options);
        snapshot.secrets = self.secrets.objects();
        snapshot.secrets.retain(|s| wanted.contains(&(s.namespace().unwrap_or_default(), s.name_any())));
        snapshot
    }
}

/// Starts a reflector of `api` into a new store among `tasks`; every
/// change wakes `changed`.
fn reflect<K>(
    tasks: &mut tokio::task::JoinSet<()>,
    api: Api<K>,
    config: watcher::Config,
    changed: &Arc<Notify>,
    strip: impl FnMut(&mut K) + Send + 'static,
) -> Reflected<K>
where
    K: Reflectable,
{
    let (reflected, task) = reflector(api, config, changed, strip);
    tasks.spawn(task);
    reflected
}

/// A reflector of `api` into a new store: the store, and the task to run
/// (it runs until dropped). Every change wakes `changed`. Errors (the API
/// server unreachable, a watch refused) are logged when they start and
/// when they end, and retried with backoff.
pub(super) fn reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: &Arc<Notify>,
    mut strip: impl FnMut(&mut K) + Send + 'static,
) -> (Reflected<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Reflectable,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let stream = watcher(api, config).default_backoff().modify(move |object| {
        object.managed_fields_mut().clear();
        strip(object);
    });
    let stream = reflector::reflector(writer, stream);
    let changed = changed.clone();
    let sorted: Sorted<K> = Arc::default();
    let (store, order) = (reader.clone(), sorted.clone());
    let task = async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    if failing {
                        info!(%kind, "watching the Kubernetes API again");
                        failing = false;
                    }
                    keep_sorted(&order, &store, &event);
                    if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                        changed.notify_one();
                    }
                }
                Err(e) => {
                    if !failing {
                        warn!(%kind, "watching the Kubernetes API failed (retrying; the last state keeps serving): {e}");
                    }
                    failing = true;
                }
            }
        }
    };
    (Reflected { store: reader, sorted }, task)
}

/// Applies a watch event, which the store has just applied, to the sorted
/// objects: one key for an object's change; all of them when a (re)list
/// ends, as the store swaps its whole content then.
fn keep_sorted<K: Resource<DynamicType = ()> + Metadata<Ty = ObjectMeta> + Clone + 'static>(
    sorted: &Sorted<K>,
    store: &Store<K>,
    event: &watcher::Event<K>,
) {
    let mut sorted = sorted.lock().expect("not poisoned");
    let mut remove = |object: &K| sorted.remove(&object.namespace().unwrap_or_default(), &object.name_any());
    match event {
        watcher::Event::Apply(object) => match store.get(&ObjectRef::from_obj(object)) {
            Some(stored) => sorted.insert(stored),
            None => {
                remove(object);
            }
        },
        watcher::Event::Delete(object) => {
            remove(object);
        }
        watcher::Event::InitDone => *sorted = store.state().into_iter().collect(),
        watcher::Event::Init | watcher::Event::InitApply(_) => {}
    }
}

/// Node status carries the images on the node: megabytes per node, unused.
fn strip_node(node: &mut Node) {
    if let Some(status) = node.status.as_mut() {
        status.images = None;
    }
}

fn publish(tx: &watch::Sender<Arc<Snapshot>>, snapshot: Snapshot) {
    tx.send_if_modified(|current| {
        let changed = !current.same_as(&snapshot);
        if changed {
            tracing::debug!(
                services = snapshot.services.len(),
                endpoint_slices = snapshot.endpoint_slices.len(),
                ingresses = snapshot.ingresses.len(),
                "cluster changed"
            );
            *current = Arc::new(snapshot);
        }
        changed
    });
}
