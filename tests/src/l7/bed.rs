//! [`L7Bed`]: `lb run --no-xdp` and echo pods on loopback addresses, with
//! a watched manifests directory. No root needed.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::client::{Req, Resp, send_h1};
use super::manifests::{EndpointSlice, Ingress, ManifestDir, Service, docs};
use super::net::{unique_loopback_ip, wait_for_port, wait_until};
use crate::bins::{lb_bin, lb_echo_bin};
use crate::lb_run::LbRun;
use crate::process::Process;

/// Port every echo pod listens on (HTTP over TCP, and UDP).
pub const ECHO_PORT: u16 = 8080;
/// Service port the helpers give Services (named `http`, target [`ECHO_PORT`]).
pub const SERVICE_PORT: u16 = 80;
/// lb's plain HTTP listener port (on the bed's own address).
pub const LB_HTTP_PORT: u16 = 8000;
/// lb's HTTPS listener port.
pub const LB_HTTPS_PORT: u16 = 8443;
/// lb's admin listener port.
pub const LB_ADMIN_PORT: u16 = 9000;
/// How long lb gets to answer `/readyz` with 200.
pub const LB_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long lb gets to exit after SIGTERM before it is killed.
pub const LB_STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a manifests change gets to show in routing.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// `lb run --no-xdp` options beyond the addresses.
#[derive(Clone, Debug)]
pub struct LbOptions {
    pub client_header_timeout: Option<String>,
    pub upstream_connect_timeout: Option<String>,
    pub upstream_timeout: Option<String>,
    pub dns_server: Option<SocketAddr>,
    pub ingress_class: Option<String>,
    pub controller_name: Option<String>,
    pub log_level: String,
    /// Follow the (fake) API server of this kubeconfig instead of the
    /// manifests directory.
    pub kubeconfig: Option<PathBuf>,
    /// More `lb run` arguments.
    pub extra_args: Vec<String>,
}

impl Default for LbOptions {
    fn default() -> Self {
        Self {
            client_header_timeout: Some("2s".into()),
            upstream_connect_timeout: Some("1s".into()),
            upstream_timeout: Some("5s".into()),
            dns_server: None,
            ingress_class: None,
            controller_name: None,
            log_level: "info".into(),
            kubeconfig: None,
            extra_args: Vec::new(),
        }
    }
}

impl LbOptions {
    /// Adds these options to `run`.
    pub fn apply(&self, run: LbRun) -> LbRun {
        run.flag_opt("--client-header-timeout", self.client_header_timeout.as_ref())
            .flag_opt("--upstream-connect-timeout", self.upstream_connect_timeout.as_ref())
            .flag_opt("--upstream-timeout", self.upstream_timeout.as_ref())
            .flag_opt("--dns-server", self.dns_server.map(|d| d.to_string()))
            .flag_opt("--ingress-class", self.ingress_class.as_ref())
            .flag_opt("--controller-name", self.controller_name.as_ref())
            .log_level(&self.log_level)
            .args(&self.extra_args)
    }
}

struct PodInner {
    name: String,
    ip: Ipv4Addr,
    process: Process,
}

/// An `lb-echo` process on its own loopback address (port [`ECHO_PORT`]).
#[derive(Clone)]
pub struct EchoPod(Arc<PodInner>);

impl EchoPod {
    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.0.ip
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.0.ip, ECHO_PORT))
    }

    /// Stops the pod (its address then refuses connections).
    pub fn stop(&self) {
        self.0.process.stop();
    }

    /// The request lines it logged (`METHOD URI VERSION`, one per request).
    pub fn request_log(&self) -> Vec<String> {
        let prefix = format!("lb-echo {}: ", self.0.name);
        self.0
            .process
            .stderr()
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()))
            .filter(|l| l.contains(" HTTP/"))
            .collect()
    }

    /// Whether it received a request whose target contains `needle`.
    pub fn saw(&self, needle: &str) -> bool {
        self.request_log().iter().any(|l| l.split(' ').nth(1).is_some_and(|uri| uri.contains(needle)))
    }

    pub fn logs(&self) -> String {
        self.0.process.logs(4096)
    }
}

/// Starts an echo pod named `name` on `ip` (HTTP and UDP on `port`).
pub fn start_echo(log_dir: &Path, name: &str, ip: Ipv4Addr, port: u16) -> Result<EchoPod> {
    start_echo_with(log_dir, name, ip, port, &[])
}

/// [`start_echo`] with more `lb-echo` arguments (e.g. `--https`,
/// `--status-for`).
pub fn start_echo_with(log_dir: &Path, name: &str, ip: Ipv4Addr, port: u16, extra: &[String]) -> Result<EchoPod> {
    let addr = SocketAddr::from((ip, port));
    let mut args: Vec<OsString> = vec![
        "--name".into(),
        name.into(),
        "--http".into(),
        addr.to_string().into(),
        "--udp".into(),
        addr.to_string().into(),
        "--verbose".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    let process = Process::spawn(log_dir, &format!("echo-{name}"), &lb_echo_bin()?, &args, Duration::ZERO)?;
    wait_for_port(addr, Duration::from_secs(10), || process.is_running())
        .with_context(|| format!("echo pod {name} on {addr}\n{}", process.logs(2048)))?;
    Ok(EchoPod(Arc::new(PodInner { name: name.to_string(), ip, process })))
}

/// `lb run --no-xdp` on its own loopback address, echo pods, and the
/// manifests directory it watches. Everything is stopped and removed on drop.
pub struct L7Bed {
    // Field order is drop order: lb first, then the pods, then the files.
    lb: Option<Process>,
    pods: Vec<EchoPod>,
    manifests: ManifestDir,
    log_dir: PathBuf,
    ip: Ipv4Addr,
    _root: tempfile::TempDir,
}

impl L7Bed {
    /// An empty bed: no lb yet, no pods, an empty manifests directory.
    pub fn new() -> Result<Self> {
        let root = tempfile::Builder::new().prefix("lb-l7-").tempdir()?;
        let manifests = ManifestDir::new(&root.path().join("manifests"))?;
        let log_dir = root.path().join("logs");
        std::fs::create_dir_all(&log_dir)?;
        Ok(Self { lb: None, pods: Vec::new(), manifests, log_dir, ip: unique_loopback_ip(), _root: root })
    }

    /// lb's address (all its listeners are on it).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, LB_HTTP_PORT))
    }

    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, LB_HTTPS_PORT))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, LB_ADMIN_PORT))
    }

    pub fn manifests(&self) -> &ManifestDir {
        &self.manifests
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// A fake API server listening on loopback, and a kubeconfig for it in
    /// this bed's log directory (what `lb run --kubeconfig` is given).
    pub fn fake_api(&self) -> Result<(crate::fake_api::FakeApi, PathBuf)> {
        let api = crate::fake_api::FakeApi::new();
        let addr = api.listen()?;
        let kubeconfig = self.log_dir.join("kubeconfig");
        std::fs::write(&kubeconfig, api.kubeconfig(addr))?;
        Ok((api, kubeconfig))
    }

    /// Starts an echo pod on a fresh loopback address.
    pub fn echo(&mut self, name: &str) -> Result<EchoPod> {
        self.echo_on(name, unique_loopback_ip())
    }

    /// Starts an echo pod on `ip` (port [`ECHO_PORT`]).
    pub fn echo_on(&mut self, name: &str, ip: Ipv4Addr) -> Result<EchoPod> {
        self.echo_with(name, ip, &[])
    }

    /// Starts an echo pod on `ip` (port [`ECHO_PORT`]) with more `lb-echo`
    /// arguments.
    pub fn echo_with(&mut self, name: &str, ip: Ipv4Addr, extra: &[String]) -> Result<EchoPod> {
        let pod = start_echo_with(&self.log_dir, name, ip, ECHO_PORT, extra)?;
        self.pods.push(pod.clone());
        Ok(pod)
    }

    /// Writes a manifests file (atomically).
    pub fn write(&self, file: &str, content: &str) -> Result<()> {
        self.manifests.write(file, content)
    }

    /// Removes a manifests file.
    pub fn remove(&self, file: &str) -> Result<()> {
        self.manifests.remove(file)
    }

    /// Writes `svc-<name>.yaml`: Service `name` (port `http` [`SERVICE_PORT`]
    /// → [`ECHO_PORT`]) and one EndpointSlice with `pods` as ready endpoints.
    pub fn service(&self, name: &str, pods: &[&EchoPod]) -> Result<()> {
        let svc = Service::new(name).port("http", SERVICE_PORT, ECHO_PORT);
        let mut slice = EndpointSlice::named(&format!("{name}-1"), name).port("http", ECHO_PORT);
        for pod in pods {
            slice = slice.endpoint(pod.ip(), true);
        }
        self.write(&format!("svc-{name}.yaml"), &docs(&[svc.yaml(), slice.yaml()]))
    }

    /// Writes `ing-<name>.yaml` holding `ingress`.
    pub fn ingress(&self, name: &str, ingress: &Ingress) -> Result<()> {
        self.write(&format!("ing-{name}.yaml"), &ingress.yaml())
    }

    /// Starts lb with default options and waits until it is ready.
    pub async fn start_lb(&mut self) -> Result<()> {
        self.start_lb_with(LbOptions::default()).await
    }

    /// Starts `lb run --no-xdp` and waits until `/readyz` answers 200.
    pub async fn start_lb_with(&mut self, opts: LbOptions) -> Result<()> {
        if self.lb.is_some() {
            bail!("lb already runs");
        }
        let run = LbRun::proxy_only();
        let run = match &opts.kubeconfig {
            Some(file) => run.kubeconfig(file),
            None => run.manifests(self.manifests.path()),
        };
        let run =
            opts.apply(run.http_addr(self.http_addr()).https_addr(self.https_addr()).admin_addr(self.admin_addr()));
        let lb = Process::spawn(&self.log_dir, "lb", &lb_bin()?, run.as_args(), LB_STOP_GRACE)?;
        self.lb = Some(lb);
        let admin = self.admin_addr();
        let ready = wait_until("lb /readyz to answer 200", LB_READY_TIMEOUT, || async {
            if !self.lb_running() {
                return Some(Err(anyhow!("lb exited")));
            }
            let req = Req::get("/readyz").timeout(Duration::from_secs(1));
            match send_h1(admin, &req).await {
                Ok(r) if r.status == 200 => Some(Ok(())),
                _ => None,
            }
        })
        .await
        .and_then(|r| r);
        ready.map_err(|e| anyhow!("{e:#}\nlb {run}\n{}", self.logs()))
    }

    /// Stops lb (SIGTERM, then SIGKILL after [`LB_STOP_GRACE`]); returns
    /// whether it exited by itself with success.
    pub fn stop_lb(&mut self) -> bool {
        let status = self.lb.as_ref().and_then(Process::stop);
        status.is_some_and(|s| s.success())
    }

    /// Whether lb is running.
    pub fn lb_running(&self) -> bool {
        self.lb.as_ref().is_some_and(Process::is_running)
    }

    /// lb's whole stderr (its log, the access log included).
    pub fn lb_stderr(&self) -> String {
        self.lb.as_ref().map(|lb| lb.stderr()).unwrap_or_default()
    }

    /// lb's logs (tails), for failure messages.
    pub fn logs(&self) -> String {
        self.lb.as_ref().map(|lb| lb.logs(16 * 1024)).unwrap_or_else(|| "(lb not started)".into())
    }

    /// Panics with `e` and lb's logs.
    pub fn fail(&self, e: impl std::fmt::Display) -> ! {
        panic!("{e}\n{}", self.logs())
    }

    /// Unwraps, or panics with the error and lb's logs.
    pub fn ok<T>(&self, r: Result<T>) -> T {
        r.unwrap_or_else(|e| self.fail(format!("{e:#}")))
    }

    /// `req` over HTTP/1.1 to lb's plain listener.
    pub async fn send(&self, req: &Req) -> Result<Resp> {
        send_h1(self.http_addr(), req).await
    }

    /// `GET path` with `Host: host` to lb's plain listener.
    pub async fn get(&self, host: &str, path: &str) -> Result<Resp> {
        self.send(&Req::get(path).host(host)).await
    }

    /// `GET path` for `host`: status and the pod that answered (if any).
    pub async fn route(&self, host: &str, path: &str) -> Result<(u16, Option<String>)> {
        let r = self.get(host, path).await?;
        Ok((r.status, r.pod()))
    }

    /// Waits until `GET host path` answers `status` from `pod` (None: no pod).
    pub async fn wait_route(&self, host: &str, path: &str, status: u16, pod: Option<&str>) -> Result<()> {
        self.wait_route_within(host, path, status, pod, RELOAD_TIMEOUT).await
    }

    /// [`wait_route`](Self::wait_route), waiting at most `timeout`.
    pub async fn wait_route_within(
        &self,
        host: &str,
        path: &str,
        status: u16,
        pod: Option<&str>,
        timeout: Duration,
    ) -> Result<()> {
        let last = std::cell::RefCell::new(None);
        let r = wait_until(&format!("GET {host}{path} -> {status} from {pod:?}"), timeout, || {
            let fut = self.route(host, path);
            let last = &last;
            async move {
                let got = fut.await.map_err(|e| format!("{e:#}"));
                let ok = matches!(&got, Ok((s, p)) if *s == status && p.as_deref() == pod);
                *last.borrow_mut() = Some(got);
                ok.then_some(())
            }
        })
        .await;
        r.map_err(|e| anyhow!("{e:#}; last answer: {:?}", last.borrow()))
    }
}

/// The users' seed manifests: `../shared/seed-examples` next to the
/// repository (CI), else `/work/shared/seed-examples`, or env `LB_SEED_EXAMPLES`.
pub fn seed_examples_dir() -> Result<PathBuf> {
    let candidates = [
        std::env::var_os("LB_SEED_EXAMPLES").map(PathBuf::from),
        Some(crate::bins::repo_root().join("..").join("shared").join("seed-examples")),
        Some(PathBuf::from("/work/shared/seed-examples")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("ingress-hosts.yaml").is_file())
        .ok_or_else(|| anyhow!("seed examples not found (../shared/seed-examples, /work/shared/seed-examples)"))
}
