//! MetalLB's `IPAddressPool`s and `L2Advertisement`s from the API, watched
//! only while the API server serves them (MetalLB's CRDs are installed).
//!
//! - **Discovery, not a failing watch.** Whether a resource is served is
//!   asked of API discovery (`GET /apis/metallb.io/v1beta1`), at start and
//!   then every re-check period (30 s), so CRDs installed later are picked
//!   up, and CRDs removed stop being watched (their objects leave the
//!   snapshot). A `404` means "not installed"; any other failure decides
//!   nothing and the next re-check asks again. Discovery is not
//!   RBAC-gated: its paths are non-resource URLs that every authenticated
//!   client may read (the `system:discovery` ClusterRole).
//! - **The first snapshot is not held up.** The source waits for the first
//!   answer only as long as the other kinds' first lists take, and for the
//!   MetalLB kinds' own first lists at most [`SETTLE`]: a cluster without
//!   MetalLB, or an API server slow to answer discovery, starts as it
//!   would without this module.
//! - Each resource gets its own reflector, as the other kinds do; it is
//!   started when discovery first lists the resource (logged once) and
//!   stopped when discovery no longer lists it.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::source::{Reflected, reflector};
use crate::metallb::objects::{IpAddressPoolObject, L2AdvertisementObject};
use crate::snapshot::Objects;

/// The group version of MetalLB's resources.
pub const METALLB_GROUP_VERSION: &str = "metallb.io/v1beta1";

/// The default time between two discovery requests.
pub const RECHECK: Duration = Duration::from_secs(30);

/// How long one discovery request may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the first snapshot waits for the first list of MetalLB
/// resources that discovery found (beyond the other kinds' first lists).
pub const SETTLE: Duration = Duration::from_secs(5);

/// Which of MetalLB's resources the API server serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub pools: bool,
    pub advertisements: bool,
}

/// Asks API discovery which MetalLB resources are served; none when the
/// group version is unknown (`404`).
pub async fn discover(client: &Client) -> Result<Served, kube::Error> {
    match client.list_api_group_resources(METALLB_GROUP_VERSION).await {
        Ok(list) => {
            let served = |plural: &str| list.resources.iter().any(|r| r.name == plural);
            Ok(Served { pools: served("ipaddresspools"), advertisements: served("l2advertisements") })
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Served::default()),
        Err(e) => Err(e),
    }
}

/// Asks discovery now and then every `period`, sending each answer (`None`
/// when it could not be had). Failures are logged when they start and
/// when they end. Returns when the receiver is gone.
pub async fn discover_every(client: Client, period: Duration, answers: mpsc::Sender<Option<Served>>) {
    let mut failing = false;
    loop {
        let answer = match tokio::time::timeout(DISCOVERY_TIMEOUT, discover(&client)).await {
            Ok(Ok(served)) => {
                if failing {
                    info!("API discovery of {METALLB_GROUP_VERSION} answers again");
                    failing = false;
                }
                Some(served)
            }
            Ok(Err(e)) => {
                if !failing {
                    warn!("API discovery of {METALLB_GROUP_VERSION} failed (asking again every {period:?}): {e}");
                }
                failing = true;
                None
            }
            Err(_) => {
                if !failing {
                    warn!("API discovery of {METALLB_GROUP_VERSION} timed out (asking again every {period:?})");
                }
                failing = true;
                None
            }
        };
        if answers.send(answer).await.is_err() {
            return;
        }
        tokio::time::sleep(period).await;
    }
}

/// The reflectors of the MetalLB resources being watched.
#[derive(Default)]
pub(super) struct MetalLbStores {
    pools: Optional<IpAddressPoolObject>,
    advertisements: Optional<L2AdvertisementObject>,
    /// Whether discovery has answered yet (to log its first answer).
    answered: bool,
}

/// One resource's reflector and its task, while the resource is watched.
struct Optional<K: kube::Resource<DynamicType = ()> + 'static>(Option<(Reflected<K>, JoinHandle<()>)>);

impl<K: kube::Resource<DynamicType = ()> + 'static> Default for Optional<K> {
    fn default() -> Self {
        Self(None)
    }
}

impl<K: kube::Resource<DynamicType = ()> + 'static> Drop for Optional<K> {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.0 {
            task.abort();
        }
    }
}

impl MetalLbStores {
    /// Starts watching what `served` lists and is not watched yet (or
    /// whose reflector ended), stops watching what it no longer lists.
    /// Whether a resource stopped being watched: its objects left the
    /// snapshot.
    pub(super) fn serve(&mut self, served: Served, client: &Client, changed: &Arc<Notify>) -> bool {
        if !self.answered && served == Served::default() {
            info!("MetalLB's resources are not served ({METALLB_GROUP_VERSION}): pools come only from --config");
        }
        self.answered = true;
        let pools = self.pools.serve(served.pools, client, changed);
        let advertisements = self.advertisements.serve(served.advertisements, client, changed);
        pools || advertisements
    }

    /// Waits until every watched resource has its first complete list.
    pub(super) async fn wait_until_ready(&self) {
        tokio::join!(self.pools.wait_until_ready(), self.advertisements.wait_until_ready());
    }

    pub(super) fn pools(&self) -> Objects<IpAddressPoolObject> {
        self.pools.objects()
    }

    pub(super) fn advertisements(&self) -> Objects<L2AdvertisementObject> {
        self.advertisements.objects()
    }
}

impl<K> Optional<K>
where
    K: kube::Resource<DynamicType = ()>
        + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    /// Watches the resource if `served`, else stops; whether it stopped.
    fn serve(&mut self, served: bool, client: &Client, changed: &Arc<Notify>) -> bool {
        let kind = K::kind(&());
        let running = self.0.as_ref().is_some_and(|(_, task)| !task.is_finished());
        match (served, running) {
            (true, true) => false,
            (true, false) => {
                if self.0.is_none() {
                    info!(%kind, "MetalLB's {kind}s are served ({METALLB_GROUP_VERSION}): watching them");
                }
                let (reflected, task) =
                    reflector(Api::<K>::all(client.clone()), watcher::Config::default(), changed, |_| {});
                self.0 = Some((reflected, tokio::spawn(task)));
                false
            }
            (false, _) => {
                let Some((_, task)) = self.0.take() else { return false };
                task.abort();
                info!(%kind, "MetalLB's {kind}s are no longer served: dropped from the snapshot");
                true
            }
        }
    }

    async fn wait_until_ready(&self) {
        if let Some((reflected, _)) = &self.0 {
            // An error means the reflector is gone: the next re-check restarts it.
            let _ = reflected.store.wait_until_ready().await;
        }
    }

    fn objects(&self) -> Objects<K> {
        self.0.as_ref().map(|(reflected, _)| reflected.objects()).unwrap_or_default()
    }
}
