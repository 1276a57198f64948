//! The test bed: its description (nodes, pods), its builder, and what tests
//! do with it (start processes, echo pods, the `lb` agent).

use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::lb_run::LbRun;
use crate::probe::{Exchange, parse_exchanges};
use crate::process::{Process, ProcessHandle, STOP_GRACE};
use crate::resources::{CleanupHandle, Resources, cleanup_stale, cleanup_stale_cgroups, cleanup_stale_pins};
use crate::{ECHO_HTTP_ALT_PORT, ECHO_HTTP_PORT, ECHO_UDP_PORT, NAMESPACE_SCHEME_PREFIX, client, netns};
use lb_userspace::dataplane::pins::BPFFS;

mod topology;

/// A pod to create: its name, the node it runs on (`node1`/`node2`), its IP
/// (inside that node's pod CIDR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    pub name: String,
    pub node: String,
    pub ip: Ipv4Addr,
}

impl PodSpec {
    pub fn new(name: &str, node: &str, ip: Ipv4Addr) -> Self {
        Self { name: name.to_string(), node: node.to_string(), ip }
    }
}

/// The three nginx pods of the users' deployment: two on node1, one on node2.
pub fn default_pods() -> Vec<PodSpec> {
    vec![
        PodSpec::new("nginx-7c5ddbdf54-2xkqn", "node1", Ipv4Addr::new(10, 244, 1, 10)),
        PodSpec::new("nginx-7c5ddbdf54-8rz4m", "node1", Ipv4Addr::new(10, 244, 1, 11)),
        PodSpec::new("nginx-7c5ddbdf54-q9wvt", "node2", Ipv4Addr::new(10, 244, 2, 10)),
    ]
}

/// A node of the bed.
#[derive(Debug, Clone)]
pub struct Node {
    /// `node1` / `node2` (the Kubernetes node name).
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    /// Its LAN address on `eth0`.
    pub ip: Ipv4Addr,
    /// Its `cni0` bridge address (the pods' gateway).
    pub cni_ip: Ipv4Addr,
    /// Its pod CIDR (`10.244.N.0`, /24).
    pub pod_cidr: Ipv4Addr,
    /// The bridge-side veth in the LAN namespace (`n1` / `n2`).
    pub lan_port: String,
    /// The cgroup v2 directory of its pods (and of host-network clients the
    /// tests start on it): its agent's `--cgroup-root`.
    pub cgroup: PathBuf,
    /// Its agent's `--bpf-pin-dir` (the bed's nodes share one kernel and one
    /// bpffs, so each has its own directory).
    pub pin_dir: PathBuf,
}

/// A pod of the bed.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    pub ip: Ipv4Addr,
    /// Name of the node it runs on.
    pub node: String,
    /// Its veth's node-side end (in the node namespace, on `cni0`).
    pub host_veth: String,
}

/// Options of a bed; `build()` creates it.
#[derive(Debug, Clone)]
pub struct TestBedBuilder {
    pods: Vec<PodSpec>,
    rp_filter: u8,
    remove_stale: bool,
    lan_peer_xdp: bool,
    wire_checksums: bool,
    load_balancer_routes: bool,
}

impl Default for TestBedBuilder {
    fn default() -> Self {
        Self {
            pods: default_pods(),
            rp_filter: 0,
            remove_stale: true,
            lan_peer_xdp: false,
            wire_checksums: false,
            load_balancer_routes: true,
        }
    }
}

impl TestBedBuilder {
    /// The pods to create (default: [`default_pods`]).
    pub fn pods(mut self, pods: Vec<PodSpec>) -> Self {
        self.pods = pods;
        self
    }

    /// `net.ipv4.conf.{all,default}.rp_filter` on the nodes (default 0: an
    /// L4 balancer's asymmetric paths are not dropped as spoofed).
    pub fn rp_filter(mut self, mode: u8) -> Self {
        self.rp_filter = mode;
        self
    }

    /// Whether the LAN-side peers of the node uplinks run an `XDP_PASS`
    /// program (default false). Users do not control that side of their
    /// uplinks (in kind it belongs to Docker on the host); with the program
    /// the nodes' XDP can send frames itself (`lb run --xdp-transmit xdp`).
    pub fn lan_peer_xdp(mut self, yes: bool) -> Self {
        self.lan_peer_xdp = yes;
        self
    }

    /// Whether frames on the LAN carry complete checksums, as on a wire
    /// between machines (default false: the client's stack leaves partial
    /// checksums for "the NIC", and a veth passes them on to the node as
    /// they are, as from the host of a kind cluster). True turns TX checksum
    /// offload off on every veth of the LAN.
    pub fn wire_checksums(mut self, yes: bool) -> Self {
        self.wire_checksums = yes;
        self
    }

    /// Whether the client routes the LoadBalancer and ingress addresses
    /// (`LOADBALANCER_IP`, `INGRESS_IP`) via node1, as if a BGP speaker
    /// had announced them (default true). False: the client has only its
    /// connected LAN route, and reaches them only if a node answers ARP
    /// for them (MetalLB's layer 2).
    pub fn load_balancer_routes(mut self, yes: bool) -> Self {
        self.load_balancer_routes = yes;
        self
    }

    /// Whether `build` first removes namespaces of crashed runs (default true).
    pub fn remove_stale(mut self, yes: bool) -> Self {
        self.remove_stale = yes;
        self
    }

    /// Creates the namespaces, links, addresses and routes. On error,
    /// whatever was created is removed again.
    pub fn build(self) -> Result<TestBed> {
        crate::require_root()?;
        netns::require_tool("ip", "iproute2")?;
        netns::require_tool("ethtool", "ethtool")?;
        let cgroup_mount = lb_userspace::cgroup::machine_mount()?
            .context("the bed needs a cgroup2 mount (for the nodes' pods and the agents' socket programs)")?;
        if self.remove_stale {
            cleanup_stale(NAMESPACE_SCHEME_PREFIX)?;
            cleanup_stale_cgroups(NAMESPACE_SCHEME_PREFIX, &cgroup_mount);
            cleanup_stale_pins(NAMESPACE_SCHEME_PREFIX, Path::new(BPFFS));
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let prefix =
            format!("{NAMESPACE_SCHEME_PREFIX}{}-{}-", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let log_dir = std::env::temp_dir().join("lb-testbed").join(prefix.trim_end_matches('-'));
        let cgroup_dir = cgroup_mount.join(prefix.trim_end_matches('-'));
        let pin_root = Path::new(BPFFS).join(prefix.trim_end_matches('-'));
        let nodes = topology::nodes(&prefix, &cgroup_dir, &pin_root);
        let pods = topology::pods(&prefix, &nodes, &self.pods)?;
        std::fs::create_dir_all(&log_dir).with_context(|| format!("creating log dir {}", log_dir.display()))?;
        let bed = TestBed {
            lan: format!("{prefix}lan"),
            client: format!("{prefix}client"),
            prefix,
            nodes,
            pods,
            resources: Arc::new(Resources::new(log_dir)),
            lan_xdp: None,
        };
        // `bed` owns everything from here on: an error drops it, which cleans up.
        let mut bed = bed;
        bed.resources.add_pin_root(&pin_root);
        bed.resources.add_cgroup(&cgroup_dir)?;
        for node in &bed.nodes {
            bed.resources.add_cgroup(&node.cgroup)?;
        }
        topology::create(&bed, self.rp_filter, self.wire_checksums, self.load_balancer_routes)
            .context("building the test bed")?;
        if self.lan_peer_xdp {
            bed.lan_xdp = Some(bed.lan_peer_xdp()?);
        }
        Ok(bed)
    }
}

/// A running bed. Dropping it stops its processes and deletes its namespaces.
pub struct TestBed {
    prefix: String,
    lan: String,
    client: String,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    resources: Arc<Resources>,
    /// The pass-everything XDP program on the LAN ports facing the nodes,
    /// when the builder asked for it.
    lan_xdp: Option<LanPeerXdp>,
}

/// An `XDP_PASS` program on the LAN ports facing the nodes (see
/// [`TestBedBuilder::lan_peer_xdp`]); dropping it detaches it.
pub struct LanPeerXdp {
    _program: aya::Ebpf,
}

/// The agents' admin port (`lb run`'s default `--admin-addr`).
pub const ADMIN_PORT: u16 = 10254;

/// How long [`TestBed::start_echo_pods`] waits for every pod to answer.
pub const ECHO_READY_TIMEOUT: Duration = Duration::from_secs(15);

impl TestBed {
    /// A bed with the default pods.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    pub fn builder() -> TestBedBuilder {
        TestBedBuilder::default()
    }

    /// Prefix of this bed's namespace names (`lbt{pid}-{n}-`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace holding the LAN bridge `br0`.
    pub fn lan_ns(&self) -> &str {
        &self.lan
    }

    /// The client's namespace.
    pub fn client_ns(&self) -> &str {
        &self.client
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node called `name` (`node1`/`node2`).
    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes.iter().find(|n| n.name == name).with_context(|| format!("no node {name} in the bed"))
    }

    /// Namespace of node `name`.
    pub fn node_ns(&self, name: &str) -> Result<&str> {
        Ok(&self.node(name)?.ns)
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The pod called `name`.
    pub fn pod(&self, name: &str) -> Result<&Pod> {
        self.pods.iter().find(|p| p.name == name).with_context(|| format!("no pod {name} in the bed"))
    }

    /// Every namespace of the bed (LAN, client, nodes, pods).
    pub fn namespaces(&self) -> Vec<String> {
        let mut all = vec![self.lan.clone(), self.client.clone()];
        all.extend(self.nodes.iter().map(|n| n.ns.clone()));
        all.extend(self.pods.iter().map(|p| p.ns.clone()));
        all
    }

    /// Directory holding the processes' stdout/stderr files (removed with
    /// the bed unless a panic is under way or `LB_TESTBED_KEEP_LOGS` is set).
    pub fn log_dir(&self) -> &Path {
        self.resources.log_dir()
    }

    /// Attaches an `XDP_PASS` program to the LAN ports facing the nodes
    /// until the returned guard is dropped (see
    /// [`TestBedBuilder::lan_peer_xdp`]).
    pub fn lan_peer_xdp(&self) -> Result<LanPeerXdp> {
        topology::attach_lan_xdp(self).map(|program| LanPeerXdp { _program: program })
    }

    /// A handle that can remove the bed from another thread (signal handler).
    pub fn cleanup_handle(&self) -> CleanupHandle {
        CleanupHandle(self.resources.clone())
    }

    /// Starts `program args` inside namespace `ns` (`nsenter --net`, see
    /// [`Process::spawn_in`]: the program keeps the machine's mounts), output
    /// captured under [`log_dir`](Self::log_dir) as `NN-program@ns.stdout|.stderr`.
    /// The bed stops it on drop (SIGTERM, then SIGKILL after [`STOP_GRACE`]).
    pub fn spawn_in<I, S>(&self, ns: &str, program: &Path, args: I) -> Result<ProcessHandle>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        if !netns::ns_exists(ns) {
            bail!("namespace {ns} does not exist");
        }
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let seq = self.resources.process_count();
        let base = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "proc".into());
        let label = format!("{seq:02}-{base}@{ns}");
        let process = Arc::new(Process::spawn_in(Some(ns), self.log_dir(), &label, program, &args, STOP_GRACE)?);
        self.resources.add_process(process.clone());
        Ok(ProcessHandle(process))
    }

    /// Logs of every process started so far (last `max_bytes` of each stream).
    pub fn logs(&self, max_bytes: usize) -> String {
        self.resources.processes().iter().map(|p| p.logs(max_bytes)).collect::<Vec<_>>().join("\n")
    }

    /// Prints every process's logs to stderr.
    pub fn dump_logs(&self) {
        eprintln!("{}", self.logs(16 * 1024));
    }

    /// Starts `lb-echo --name POD` (HTTP :80 and :8080, UDP :5353) in every pod and
    /// waits until each answers HTTP on its pod IP from its node.
    pub fn start_echo_pods(&self) -> Result<Vec<ProcessHandle>> {
        let bin = crate::lb_echo_bin()?;
        let mut handles = Vec::new();
        for pod in &self.pods {
            let args = [
                "--name".to_string(),
                pod.name.clone(),
                "--http".to_string(),
                format!("0.0.0.0:{ECHO_HTTP_PORT}"),
                "--http".to_string(),
                format!("0.0.0.0:{ECHO_HTTP_ALT_PORT}"),
                "--udp".to_string(),
                format!("0.0.0.0:{ECHO_UDP_PORT}"),
            ];
            let handle = self.spawn_in(&pod.ns, &bin, args)?;
            // The pod's container runs in its node's cgroup (the pod only
            // listens, so joining just after the start is soon enough).
            let cgroup = &self.node(&pod.node)?.cgroup;
            std::fs::write(cgroup.join("cgroup.procs"), handle.pid().to_string())
                .with_context(|| format!("moving pod {} into {}", pod.name, cgroup.display()))?;
            handles.push(handle);
        }
        for (pod, handle) in self.pods.iter().zip(&handles) {
            let node_ns = self.node_ns(&pod.node)?;
            let addr = SocketAddr::V4(SocketAddrV4::new(pod.ip, ECHO_HTTP_PORT));
            let (name, _) = wait_for_http(node_ns, addr, ECHO_READY_TIMEOUT, Some(handle))
                .with_context(|| format!("echo pod {} did not come up", pod.name))?;
            if name != pod.name {
                bail!("pod {} at {addr} answered as {name:?}", pod.name);
            }
        }
        Ok(handles)
    }

    /// Starts `lb run --manifests DIR --interface eth0` in node `node`'s
    /// namespace ([`LbRun::on_bed_node`]).
    pub fn start_lb(&self, node: &str, manifests: &Path) -> Result<ProcessHandle> {
        self.start_lb_with(node, manifests, &[])
    }

    /// [`start_lb`](Self::start_lb) with `extra` arguments appended.
    pub fn start_lb_with(&self, node: &str, manifests: &Path, extra: &[&str]) -> Result<ProcessHandle> {
        self.start_lb_run(node, LbRun::on_bed_node(manifests).args(extra))
    }

    /// Starts `lb` with the command line `run` (e.g.
    /// `LbRun::on_bed_node(dir).xdp_mode("skb")`) in node `node`'s namespace,
    /// told, unless `run` says otherwise, its node name, its pods' cgroup
    /// and its pin directory (`--node-name`, `--cgroup-root`,
    /// `--bpf-pin-dir`) as a DaemonSet's pod would be.
    pub fn start_lb_run(&self, node: &str, run: LbRun) -> Result<ProcessHandle> {
        let n = self.node(node)?;
        let has = |run: &LbRun, flag: &str| run.as_args().iter().any(|a| a == flag);
        let run = match has(&run, "--cgroup-root") {
            true => run,
            false => run.flag("--cgroup-root", &n.cgroup),
        };
        let run = match has(&run, "--bpf-pin-dir") || has(&run, "--no-xdp") {
            true => run,
            false => run.flag("--bpf-pin-dir", &n.pin_dir),
        };
        let run = match has(&run, "--node-name") {
            true => run,
            false => run.flag("--node-name", &n.name),
        };
        let ns = n.ns.clone();
        self.spawn_in(&ns, &crate::lb_bin()?, run.into_args())
    }

    /// Uninstalls node `node`'s data path: `lb cleanup` on its pin directory
    /// (stop its agent first). A stopped agent's programs stay attached by
    /// design; what measures the node without lb next must call this.
    pub fn uninstall_lb(&self, node: &str) -> Result<()> {
        let pin_dir = &self.node(node)?.pin_dir;
        let out = std::process::Command::new(crate::lb_bin()?)
            .args(["cleanup", "--bpf-pin-dir"])
            .arg(pin_dir)
            .output()
            .context("running lb cleanup")?;
        if !out.status.success() {
            bail!("lb cleanup --bpf-pin-dir {}: {}", pin_dir.display(), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Starts `lb-probe ARGS` in namespace `ns`, in node `node`'s cgroup
    /// (`None`: outside every node's, as a client outside the cluster).
    pub fn spawn_probe(&self, ns: &str, node: Option<&str>, args: &[&str]) -> Result<ProcessHandle> {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(node) = node {
            argv.push("--cgroup".into());
            argv.push(self.node(node)?.cgroup.clone().into_os_string());
        }
        argv.extend(args.iter().map(OsString::from));
        self.spawn_in(ns, &crate::bins::lb_probe_bin()?, argv)
    }

    /// [`spawn_probe`](Self::spawn_probe) and wait (at most `timeout`) for
    /// it to end: the exchanges it reports.
    pub fn run_probe(&self, ns: &str, node: Option<&str>, args: &[&str], timeout: Duration) -> Result<Vec<Exchange>> {
        let probe = self.spawn_probe(ns, node, args)?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = probe.exit_status() {
                break status;
            }
            if Instant::now() > deadline {
                probe.stop();
                bail!("lb-probe {args:?} did not end within {timeout:?}:\n{}", probe.logs(4000));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !status.success() {
            bail!("lb-probe {args:?} failed ({status}):\n{}", probe.logs(4000));
        }
        Ok(parse_exchanges(&probe.stdout()))
    }

    /// `GET path` from node `node`'s agent's admin port (10254 on the node
    /// address), from the node's own namespace.
    pub fn admin_get(&self, node: &str, path: &str) -> Result<client::HttpResponse> {
        let n = self.node(node)?;
        let admin = SocketAddr::V4(SocketAddrV4::new(n.ip, ADMIN_PORT));
        client::http_request(&n.ns, admin, path, &[], Duration::from_secs(2))
    }

    /// Polls node `node`'s agent's `/readyz` (admin port 10254 on the node
    /// address) until it answers 200: its first snapshot is in the maps and
    /// its programs are attached. Fails at once, with its logs, if `lb`
    /// exits meanwhile.
    pub fn wait_for_ready(&self, node: &str, lb: &ProcessHandle, timeout: Duration) -> Result<()> {
        let n = self.node(node)?;
        let readyz = SocketAddr::V4(SocketAddrV4::new(n.ip, ADMIN_PORT));
        let deadline = Instant::now() + timeout;
        loop {
            let last = match client::http_request(&n.ns, readyz, "/readyz", &[], Duration::from_millis(500)) {
                Ok(resp) if resp.status == 200 => return Ok(()),
                Ok(resp) => format!("status {}", resp.status),
                Err(e) => format!("{e:#}"),
            };
            if let Some(status) = lb.exit_status() {
                bail!("lb on {node} exited ({status}) before it was ready\n{}", lb.logs(8 * 1024));
            }
            if Instant::now() >= deadline {
                bail!("lb on {node} not ready within {timeout:?} ({last})\n{}", lb.logs(8 * 1024));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`start_lb`](Self::start_lb) on every node, in node order.
    pub fn start_lb_on_every_node(&self, manifests: &Path) -> Result<Vec<ProcessHandle>> {
        self.start_lb_on_every_node_with(manifests, &[])
    }

    /// [`start_lb_with`](Self::start_lb_with) on every node, in node order.
    pub fn start_lb_on_every_node_with(&self, manifests: &Path, extra: &[&str]) -> Result<Vec<ProcessHandle>> {
        self.nodes.iter().map(|node| self.start_lb_with(&node.name, manifests, extra)).collect()
    }
}

/// Polls `GET /` from `ns` to `addr` until it answers 200 (every 50 ms, at
/// most `timeout`). If `process` is given and exits meanwhile, fails at
/// once with its logs.
pub fn wait_for_http(
    ns: &str,
    addr: SocketAddr,
    timeout: Duration,
    process: Option<&ProcessHandle>,
) -> Result<(String, String)> {
    let deadline = Instant::now() + timeout;
    let per_try = Duration::from_millis(500);
    let mut tries = 0u32;
    loop {
        tries += 1;
        let last = match client::http_get(ns, addr, per_try) {
            Ok(answer) => return Ok(answer),
            Err(e) => e,
        };
        if let Some(p) = process
            && let Some(status) = p.exit_status()
        {
            bail!("{} exited ({status}) while waiting for {addr}\n{}", p.label(), p.logs(8 * 1024));
        }
        if Instant::now() >= deadline || tries >= 10_000 {
            let logs = process.map(|p| p.logs(8 * 1024)).unwrap_or_default();
            bail!("{addr} did not answer from {ns} within {timeout:?} ({tries} tries): {last:#}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking && self.resources.process_count() > 0 {
            eprintln!("[testbed] panic: logs of the bed's processes (kept in {}):", self.log_dir().display());
            self.dump_logs();
        }
        self.resources.cleanup(panicking);
    }
}

/// The path of this bed's namespace for a role, e.g. `{prefix}node1`.
pub(crate) fn ns_name(prefix: &str, role: &str) -> String {
    let role: String = role
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' { c } else { '_' })
        .collect();
    format!("{prefix}{role}")
}
