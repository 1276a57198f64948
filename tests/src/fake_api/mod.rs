//! An in-process fake Kubernetes API server for tests: plain HTTP/1.1 on
//! loopback (or inside a test network namespace), objects as JSON, real
//! list/watch/get/create/update/patch/delete semantics as far as kube-rs's
//! client, `watcher`/`reflector`, `events::Recorder` and a Lease-based leader
//! election need them.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use k8s_openapi::api::core::v1::Service;
//! use lb_testbed::fake_api::FakeApi;
//! use std::time::Duration;
//!
//! let api = FakeApi::new();
//! let addr = api.listen()?; // 127.0.0.1:<port>, served until `api` is dropped
//! api.apply_yaml("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {}")?;
//! let client = api.client(addr).await?; // or write api.kubeconfig(addr) to a file for `--kubeconfig`
//! let svc = kube::Api::<Service>::namespaced(client, "default").get("web").await?;
//! assert_eq!(svc.metadata.name.as_deref(), Some("web"));
//! api.wait_for_request(|r| r.verb == "get" && r.resource == "services", Duration::from_secs(1)).await?;
//! # Ok(()) }
//! ```
//!
//! Semantics worth knowing:
//! - One global resourceVersion (an integer); every write bumps it. Writes that
//!   change nothing (same object) are no-ops without a new version or event.
//! - Types with a `status` subresource (Service, Node, Namespace, Pod, Ingress):
//!   writes to the object keep the stored `status`, writes to `/status` change
//!   only `status`. Test-side writes ([`FakeApi::apply`]) replace everything.
//! - Patches: JSON merge patch; strategic merge patch **applied as a plain merge
//!   patch** (lists are replaced, not merged by key); server-side apply
//!   (`application/apply-patch+yaml`) applied as a merge patch without field
//!   ownership, creating the object when absent; JSON patch (RFC 6902). A
//!   `metadata.resourceVersion` in a patch is a precondition (409 on mismatch).
//! - Watches from resourceVersion unset or `0` start with the current objects
//!   as ADDED; from `N` with the history after `N`, or a 410 Expired ERROR
//!   event when `N` is older than the last [`FakeApi::compact`].
//!   `sendInitialEvents=true` is honoured (ADDED, then a BOOKMARK annotated
//!   `k8s.io/initial-events-end`).
//! - Custom resources (MetalLB's `IPAddressPool`, `L2Advertisement`) are
//!   served only after [`FakeApi::install_crds`] (until then: absent from
//!   discovery, `404` on their paths); [`FakeApi::remove_crds`] deletes
//!   their objects and ends their watches.
//! - Finalizers, graceful deletion, admission, validation of object contents,
//!   field ownership and authentication are not modelled.
//!
//! All state methods are synchronous (a `std` mutex, never held across an
//! await); the `wait_*` methods are async and always bounded by their timeout.
//! Serving needs a tokio runtime; serving tasks stop on [`FakeApi::shutdown`]
//! or when the last handle is dropped.

mod http;
mod list;
mod patch;
mod requests;
mod resources;
mod selectors;
mod server;
mod state;
mod status;
mod store;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result};

pub use requests::RecordedRequest;

use store::Store;

/// State shared by the handles and the serving tasks.
pub(crate) struct Shared {
    store: Mutex<Store>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// A receiver of the change counter, cloned by waiters.
    changed: tokio::sync::watch::Receiver<u64>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Dropping the last [`FakeApi`] handle shuts the server down.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        shut_down(&self.shared);
    }
}

fn shut_down(shared: &Shared) {
    shared.shutdown.send_replace(true);
    let mut store = shared.lock();
    store.shut_down = true;
    store.end_watches(false);
}

/// A fake Kubernetes API server. Cheap to clone; every clone is the same
/// server, and it stops serving when the last clone is dropped.
#[derive(Clone)]
pub struct FakeApi {
    handle: Arc<Handle>,
}

impl Default for FakeApi {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApi {
    /// An empty server, not yet listening anywhere.
    pub fn new() -> Self {
        let (changed_tx, changed) = tokio::sync::watch::channel(0u64);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let shared = Shared { store: Mutex::new(Store::new(changed_tx)), shutdown, changed };
        FakeApi { handle: Arc::new(Handle { shared: Arc::new(shared) }) }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Serves `listener` from a task on the current tokio runtime (panics
    /// outside one); returns its address. Any number of listeners can serve
    /// the same state.
    pub fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<SocketAddr> {
        server::spawn(self.shared().clone(), listener)
    }

    /// Binds `127.0.0.1:0` in the current network namespace and serves it.
    pub fn listen(&self) -> Result<SocketAddr> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        self.serve_std(listener)
    }

    /// Binds `127.0.0.1:0` inside network namespace `ns` (see
    /// [`crate::netns::in_netns`]) and serves it from the current runtime.
    pub fn listen_in_netns(&self, ns: &str) -> Result<SocketAddr> {
        let listener = crate::netns::in_netns(ns, || std::net::TcpListener::bind("127.0.0.1:0"))?
            .with_context(|| format!("binding 127.0.0.1:0 in network namespace {ns}"))?;
        self.serve_std(listener)
    }

    fn serve_std(&self, listener: std::net::TcpListener) -> Result<SocketAddr> {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener).context("registering the listener with tokio")?;
        Ok(self.serve(listener)?)
    }

    /// Stops every accept loop and connection and ends every watch. Later
    /// requests are refused (no listener is left).
    pub fn shutdown(&self) {
        shut_down(self.shared());
    }

    /// A kubeconfig for the server at `addr`: cluster `fake` at `http://addr`,
    /// a user without credentials, namespace `default`.
    pub fn kubeconfig(&self, addr: SocketAddr) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\npreferences: {{}}\n"
        )
    }

    /// A kube client for the server at `addr`, built from [`Self::kubeconfig`].
    pub async fn client(&self, addr: SocketAddr) -> Result<kube::Client> {
        let kubeconfig: kube::config::Kubeconfig =
            serde_norway::from_str(&self.kubeconfig(addr)).context("parsing the generated kubeconfig")?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .context("kube config from the generated kubeconfig")?;
        kube::Client::try_from(config).context("building a kube client")
    }

    /// Current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared().lock().rv
    }

    /// Forgets the event history up to now: a later watch from an older
    /// resourceVersion (or a `continue` of an older list) gets 410 Expired.
    pub fn compact(&self) {
        self.shared().lock().compact();
    }

    /// Sends a 410 Expired ERROR event on every open watch and ends it.
    pub fn expire_watches(&self) {
        self.shared().lock().end_watches(true);
    }

    /// Sends a BOOKMARK (at the current resourceVersion) on every open watch
    /// that asked for bookmarks.
    pub fn send_bookmarks(&self) {
        self.shared().lock().send_bookmarks();
    }

    /// Closes every open watch abruptly (the chunked body ends without its
    /// last chunk and the connection is closed).
    pub fn drop_connections(&self) {
        self.shared().lock().abort_watches();
    }

    /// While `true`, every request is answered 503 ServiceUnavailable (with a
    /// Status body); turning it on also drops every open watch abruptly.
    ///
    /// Note that kube-rs clients retry 503 by default (`Config::default_retry`:
    /// up to 15 times, exponential backoff from 5 ms), so a request made
    /// during a short outage usually succeeds once it ends, and one that must
    /// fail takes minutes: use [`Self::set_refusing`] or a client with
    /// `default_retry = false` to see failures quickly.
    pub fn set_unavailable(&self, unavailable: bool) {
        let mut store = self.shared().lock();
        store.unavailable = unavailable;
        if unavailable {
            store.abort_watches();
        }
    }

    /// While `true`, every request's connection is closed without an answer
    /// (kube-rs does not retry that); turning it on also drops every open
    /// watch abruptly. Such requests are logged with `status` 0.
    pub fn set_refusing(&self, refusing: bool) {
        let mut store = self.shared().lock();
        store.refusing = refusing;
        if refusing {
            store.abort_watches();
        }
    }

    /// Number of watches currently open.
    pub fn open_watches(&self) -> usize {
        self.shared().lock().open_watches()
    }
}
