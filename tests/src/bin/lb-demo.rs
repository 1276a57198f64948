//! `lb-demo`: the load balancer on a two-node netns cluster.
//!
//! Builds the test bed, starts the echo pods and `lb run` on both nodes with
//! the example manifests, then sends requests from the client to the
//! NodePort on both nodes, the LoadBalancer IP (an address of the users'
//! MetalLB pool, reached with no route: a node answers ARP) and the UDP
//! NodePort, and
//! shows which pod answered; then, from inside pods on both nodes, the seed
//! `nginx-service` ClusterIP and a DNS-style UDP query to a ClusterIP
//! (balanced at the socket); then the seed Ingresses through the ingress
//! controller's LoadBalancer IP and NodePorts (hosts, paths, TLS by SNI,
//! the default backend). Everything is removed at the end, also on Ctrl-C /
//! SIGTERM (then the exit code is 130).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use lb_testbed::echo::parse_body;
use lb_testbed::l7::{Req, TestCa, TlsOpts, send_tls, tls_secret};
use lb_testbed::{
    CleanupHandle, INGRESS_IP, LOADBALANCER_IP, NODE1_IP, NODE2_IP, TestBed, example_manifests_dir, http_get,
    http_request, in_netns, udp_echo, wait_for_http,
};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// NodePort of `my-service-nodeport` (TCP 80 -> pods :80).
const HTTP_NODE_PORT: u16 = 30007;
/// Port of the LoadBalancer service `nginx2-service` (-> pods :80).
const LOADBALANCER_PORT: u16 = 8088;
/// UDP NodePort of the examples (-> pods :5353).
const UDP_NODE_PORT: u16 = 30053;
/// NodePort of the ingress controller's http port (`lb-system/lb-ingress`).
const INGRESS_HTTP_NODE_PORT: u16 = 30080;
/// The seed `nginx-service`'s ClusterIP (`curl 10.103.98.179` in the
/// users' notes).
const NGINX_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 103, 98, 179);
/// `echo-udp`'s DNS-like ClusterIP (port 53 -> pods :5353).
const DNS_LIKE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 53);
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);
/// The seed TLS Ingress's host.
const TLS_HOST: &str = "https-example.foo.com";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const LB_READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(name = "lb-demo", about = "Runs lb on a two-node network-namespace cluster and shows it balancing")]
struct Args {
    /// Requests to send to the NodePort of each node.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    requests: u32,
    /// Directory of Kubernetes manifests for `lb run` (default: a copy of
    /// manifests/examples with a generated certificate for the TLS example).
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// Leave the bed up after the requests until Enter is pressed.
    #[arg(long)]
    keep: bool,
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);
static CLEANUP: OnceLock<CleanupHandle> = OnceLock::new();

extern "C" fn on_signal(_: nix::libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM set a flag; a watcher thread then removes the bed and exits 130.
fn install_signal_handlers() -> Result<()> {
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }.with_context(|| format!("installing {sig} handler"))?;
    }
    std::thread::spawn(|| {
        while !SIGNALLED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("\nlb-demo: interrupted, removing the test bed ...");
        if let Some(handle) = CLEANUP.get() {
            handle.cleanup();
        }
        eprintln!("lb-demo: cleaned up");
        std::process::exit(130);
    });
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = install_signal_handlers().and_then(|()| run(&args)) {
        if SIGNALLED.load(Ordering::SeqCst) {
            // The failure is the interruption itself (its cleanup killed our
            // processes): let the watcher thread finish and exit 130.
            for _ in 0..600 {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::process::exit(130);
        }
        eprintln!("lb-demo: error: {e:#}");
        std::process::exit(1);
    }
}

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

fn run(args: &Args) -> Result<()> {
    if let Some(dir) = args.manifests.as_ref().filter(|d| !d.is_dir()) {
        bail!("manifest directory {} does not exist", dir.display());
    }
    println!("==> building the test bed (client, LAN bridge, node1, node2, pods)");
    // The client routes nothing beyond its LAN: the LoadBalancer addresses
    // are reached because a node answers ARP for them (MetalLB's layer 2).
    let bed = TestBed::builder().load_balancer_routes(false).build()?;
    let _ = CLEANUP.set(bed.cleanup_handle());
    print_topology(&bed);
    let ca = TestCa::new()?;
    let manifests = match &args.manifests {
        Some(dir) => dir.clone(),
        None => example_manifests_with_secret(&bed, &ca)?,
    };

    println!("==> starting echo pods");
    bed.start_echo_pods()?;
    println!("==> starting `lb run` on node1 and node2 (manifests: {})", manifests.display());
    let lb1 = bed.start_lb("node1", &manifests)?;
    let lb2 = bed.start_lb("node2", &manifests)?;
    println!("    lb on node1: pid {}, lb on node2: pid {}", lb1.pid(), lb2.pid());

    // Every node's agent must be ready, not only node1's: node2's NodePort
    // is asked too, and each node's pods use their own node's agent.
    for (node, lb) in [("node1", &lb1), ("node2", &lb2)] {
        println!("==> waiting (at most {LB_READY_TIMEOUT:?}) until lb on {node} is ready (/readyz)");
        if let Err(e) = bed.wait_for_ready(node, lb, LB_READY_TIMEOUT) {
            bed.dump_logs();
            return Err(e);
        }
    }
    for (node_ip, lb) in [(NODE1_IP, &lb1), (NODE2_IP, &lb2)] {
        let nodeport = addr(node_ip, HTTP_NODE_PORT);
        println!("==> waiting (at most {LB_READY_TIMEOUT:?}) until {nodeport} answers the client");
        if let Err(e) = wait_for_http(bed.client_ns(), nodeport, LB_READY_TIMEOUT, Some(lb)) {
            bed.dump_logs();
            return Err(e.context(format!("the NodePort on {node_ip} never answered")));
        }
    }

    let mut failures = 0u32;
    for node_ip in [NODE1_IP, NODE2_IP] {
        failures += nodeport_round(&bed, addr(node_ip, HTTP_NODE_PORT), args.requests);
    }

    println!(
        "\n==> LoadBalancer IP from the MetalLB pool (metallb-pool.yaml; the client has no route for it, a node \
         answers ARP) and UDP NodePort"
    );
    let lb_addr = addr(LOADBALANCER_IP, LOADBALANCER_PORT);
    match http_get(bed.client_ns(), lb_addr, REQUEST_TIMEOUT) {
        Ok((pod, _)) => println!("client -> {lb_addr}  answered by {pod}{}", arp_owner(&bed, LOADBALANCER_IP)),
        Err(e) => {
            failures += 1;
            println!("client -> {lb_addr}  FAILED: {e:#}");
        }
    }
    let udp_addr = addr(NODE1_IP, UDP_NODE_PORT);
    match udp_echo(bed.client_ns(), udp_addr, "hello", REQUEST_TIMEOUT) {
        Ok((pod, echoed)) => println!("client -> {udp_addr}/udp  answered by {pod} ({echoed:?})"),
        Err(e) => {
            failures += 1;
            println!("client -> {udp_addr}/udp  FAILED: {e:#}");
        }
    }

    failures += cluster_ip_round(&bed, args.requests);
    failures += ingress_round(&bed, &ca);
    failures += restart_round(&bed, &manifests, &lb1)?;
    failures += inspect_node1(&bed);

    if args.keep {
        keep_until_enter(&bed);
    }
    if failures > 0 {
        bed.dump_logs();
        bail!("{failures} requests failed");
    }
    println!("\n==> all requests answered; removing the test bed");
    drop(bed);
    Ok(())
}

/// What node1's agent serves, as `lb inspect services` shows it (run in
/// node1's namespace against its admin listener). Returns 1 if it failed.
fn inspect_node1(bed: &TestBed) -> u32 {
    let admin = format!("{NODE1_IP}:10254");
    println!("\n==> lb inspect services --admin-addr {admin}   (on node1)");
    let run = || -> Result<String> {
        let node1 = bed.node("node1")?;
        let lb = lb_testbed::lb_bin()?;
        let lb = lb.to_str().context("lb's path is not UTF-8")?;
        let out = lb_testbed::netns::exec_in(&node1.ns, lb, &["inspect", "--admin-addr", &admin, "services"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    match run() {
        Ok(table) => {
            print!("{table}");
            0
        }
        Err(e) => {
            println!("lb inspect services FAILED: {e:#}");
            1
        }
    }
}

/// From inside a pod on each node (in its node's cgroup, where lb's socket
/// programs apply): the seed `nginx-service` ClusterIP, as the users'
/// `curl 10.103.98.179`, and a DNS-style UDP query to `echo-udp`'s
/// ClusterIP. Returns the number of failed exchanges.
fn cluster_ip_round(bed: &TestBed, count: u32) -> u32 {
    let mut failures = 0;
    let pods: Vec<_> =
        ["node1", "node2"].iter().filter_map(|node| bed.pods().iter().find(|p| p.node == *node)).cloned().collect();
    for pod in &pods {
        let target = addr(NGINX_SERVICE_IP, 80);
        println!("\n==> {count} connections from pod {} ({}) to the ClusterIP {target}", pod.name, pod.node);
        let count_arg = count.to_string();
        let exchanges = match bed.run_probe(
            &pod.ns,
            Some(&pod.node),
            &["tcp", &target.to_string(), "--count", &count_arg],
            PROBE_TIMEOUT,
        ) {
            Ok(exchanges) => exchanges,
            Err(e) => {
                println!("{} -> {target}  FAILED: {e:#}", pod.name);
                failures += count;
                continue;
            }
        };
        let mut tally: BTreeMap<String, u32> = BTreeMap::new();
        for e in &exchanges {
            match (&e.pod, &e.error) {
                (Some(answered), None) => {
                    let peer = e.peer.map(|p| p.to_string()).unwrap_or_default();
                    println!("{} -> {target}  answered by {answered} (getpeername: {peer})", pod.name);
                    *tally.entry(answered.clone()).or_default() += 1;
                }
                _ => {
                    failures += 1;
                    println!("{} -> {target}  FAILED: {:?}", pod.name, e.error);
                }
            }
        }
        failures += count.saturating_sub(exchanges.len() as u32);
        println!("tally for {target} from {}:", pod.name);
        for p in bed.pods() {
            println!("  {:<28} ({}) {:>4}", p.name, p.node, tally.get(&p.name).copied().unwrap_or(0));
        }
    }
    let dns = addr(DNS_LIKE_IP, 53);
    for pod in &pods {
        match bed.run_probe(&pod.ns, Some(&pod.node), &["udp", &dns.to_string(), "--count", "3"], PROBE_TIMEOUT) {
            Ok(exchanges) => {
                for e in exchanges {
                    match (&e.pod, e.from) {
                        (Some(answered), Some(from)) => {
                            println!("{} -> {dns}/udp  answered by {answered}, from {from}", pod.name)
                        }
                        _ => {
                            failures += 1;
                            println!("{} -> {dns}/udp  FAILED: {:?}", pod.name, e.error);
                        }
                    }
                }
            }
            Err(e) => {
                failures += 3;
                println!("{} -> {dns}/udp  FAILED: {e:#}", pod.name);
            }
        }
    }
    println!("    (the pods' connects and sends go straight to a pod: lb's socket programs on each node's cgroup)");
    failures
}

/// `count` requests to `target`, one line each, then a tally per pod.
/// Returns the number of failed requests.
fn nodeport_round(bed: &TestBed, target: SocketAddr, count: u32) -> u32 {
    println!("\n==> {count} requests to {target}");
    let mut tally: BTreeMap<String, u32> = BTreeMap::new();
    let mut failures = 0;
    for _ in 0..count {
        match http_get(bed.client_ns(), target, REQUEST_TIMEOUT) {
            Ok((pod, _)) => {
                println!("client -> {target}  answered by {pod}");
                *tally.entry(pod).or_default() += 1;
            }
            Err(e) => {
                failures += 1;
                println!("client -> {target}  FAILED: {e:#}");
            }
        }
    }
    println!("tally for {target}:");
    for pod in bed.pods() {
        let n = tally.get(&pod.name).copied().unwrap_or(0);
        println!("  {:<28} ({}) {n:>4}", pod.name, pod.node);
    }
    for (pod, n) in tally.iter().filter(|(p, _)| bed.pod(p).is_err()) {
        println!("  {pod:<28} (unknown!) {n:>4}");
    }
    if failures > 0 {
        println!("  failed                       {failures:>4}");
    }
    failures
}

/// The data path outlives its agent: node1's agent is killed (SIGKILL), its
/// NodePort keeps answering, and a new agent adopts the pinned maps and
/// links. Returns the number of failed requests.
fn restart_round(bed: &TestBed, manifests: &Path, lb: &lb_testbed::ProcessHandle) -> Result<u32> {
    let target = addr(NODE1_IP, HTTP_NODE_PORT);
    println!("\n==> restarts: kill -9 lb on node1 (pid {}); its pinned data path keeps serving", lb.pid());
    lb.kill();
    let mut failures = 0;
    for _ in 0..5 {
        match http_get(bed.client_ns(), target, REQUEST_TIMEOUT) {
            Ok((pod, _)) => println!("client -> {target}  answered by {pod} (no agent on node1)"),
            Err(e) => {
                failures += 1;
                println!("client -> {target}  FAILED: {e:#}");
            }
        }
    }
    let again = bed.start_lb("node1", manifests)?;
    bed.wait_for_ready("node1", &again, LB_READY_TIMEOUT)?;
    let logs = again.logs(64 * 1024);
    let adopted = logs.lines().find_map(|l| l.split_once("adopted the maps' contents ")).map_or("", |(_, what)| what);
    println!("    a new lb on node1 (pid {}) adopted the pinned maps: {adopted}", again.pid());
    Ok(failures + nodeport_round(bed, target, 5))
}

/// A copy of manifests/examples in the bed's directory, plus the TLS
/// example's Secret `testsecret-tls` with a certificate for its host, issued
/// by a CA made for this run (the users brought their own pair).
fn example_manifests_with_secret(bed: &TestBed, ca: &TestCa) -> Result<PathBuf> {
    let dir = bed.log_dir().join("manifests");
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(example_manifests_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.join(path.file_name().context("file name")?))?;
        }
    }
    let pair = ca.issue(&[TLS_HOST])?;
    std::fs::write(dir.join("ingress-tls-secret.yaml"), tls_secret("testsecret-tls", &pair))?;
    Ok(dir)
}

/// The seed Ingresses, through the ingress controller's addresses: each
/// request on one line with the pod that answered and what it was told.
/// Returns the number of failed checks.
fn ingress_round(bed: &TestBed, ca: &TestCa) -> u32 {
    println!("\n==> Ingress: the seeds' host, path and TLS rules via the ingress controller");
    println!("    (XDP hands {INGRESS_IP}:80/443 and NodePorts 30080/30443 to the proxy of the node they reach)");
    let lb_http = addr(INGRESS_IP, 80);
    let checks: [(SocketAddr, &str, &str, u16); 6] = [
        (lb_http, "a.com", "/", 200),
        (lb_http, "a.com", "/a", 200),
        (lb_http, "a.com", "/b", 200),
        (lb_http, "b.com", "/", 200),
        (addr(NODE2_IP, INGRESS_HTTP_NODE_PORT), "b.com", "/hello", 200),
        (lb_http, "nobody.example", "/", 404),
    ];
    let mut failures = 0;
    for (to, host, path, want) in checks {
        let line = format!("curl -H 'Host: {host}' http://{to}{path}");
        match http_request(bed.client_ns(), to, path, &[("Host", host)], REQUEST_TIMEOUT) {
            Ok(resp) if resp.status == want => {
                let seen = parse_body(&resp.body);
                let xff = seen.as_ref().and_then(|s| s.header("x-forwarded-for")).unwrap_or("-").to_string();
                match resp.pod_name() {
                    Some(pod) => println!("{line:<58} {} {pod} (X-Forwarded-For: {xff})", resp.status),
                    None => println!("{line:<58} {} {}", resp.status, resp.body.trim()),
                }
            }
            Ok(resp) => {
                failures += 1;
                println!("{line:<58} FAILED: status {} (want {want})", resp.status);
            }
            Err(e) => {
                failures += 1;
                println!("{line:<58} FAILED: {e:#}");
            }
        }
    }
    let to = addr(INGRESS_IP, 443);
    let line = format!("curl https://{TLS_HOST}/ (SNI, via {to})");
    let answer = in_netns(bed.client_ns(), || -> Result<(Vec<String>, String)> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (tls, resp) = runtime.block_on(send_tls(to, TlsOpts::new(TLS_HOST).verify(ca), &Req::get("/")))?;
        Ok((tls.cert.dns_names, format!("{} {}", resp.status, resp.pod().unwrap_or_default())))
    });
    match answer.and_then(|a| a) {
        Ok((names, answer)) => println!("{line:<58} {answer} (certificate for {})", names.join(", ")),
        Err(e) => {
            failures += 1;
            println!("{line:<58} FAILED: {e:#}");
        }
    }
    failures + annotation_round(bed)
}

/// The seeds' annotated Ingresses (`manifests/examples/ingress-annotations.yaml`):
/// the regex order of `tour.xyz` and the rewrite of `myproject.project.io`,
/// each request with the pod that answered (it tells the Service: see the
/// file) and the path that pod received. Returns the number of failed checks.
fn annotation_round(bed: &TestBed) -> u32 {
    println!("\n==> Ingress annotations: regex paths in ingress-nginx order, rewrite-target /$2");
    let to = addr(INGRESS_IP, 80);
    // (host, path, the Service's pod, the path the pod receives)
    let checks: [(&str, &str, &str, &str); 6] = [
        ("tour.xyz", "/api/v1/tours/42/bookings", "nginx-7c5ddbdf54-8rz4m", "/api/v1/tours/42/bookings"),
        ("tour.xyz", "/api/v1/tours/42/reviews", "nginx-7c5ddbdf54-q9wvt", "/api/v1/tours/42/reviews"),
        ("tour.xyz", "/api/v1/tours/42", "nginx-7c5ddbdf54-2xkqn", "/api/v1/tours/42"),
        ("tour.xyz", "/API/V1/TOURS/42/BOOKINGS", "nginx-7c5ddbdf54-8rz4m", "/API/V1/TOURS/42/BOOKINGS"),
        ("myproject.project.io", "/chatforyouio/user/create", "nginx-7c5ddbdf54-q9wvt", "/user/create"),
        ("myproject.project.io", "/chatforyouio", "nginx-7c5ddbdf54-q9wvt", "/"),
    ];
    let mut failures = 0;
    for (host, path, want_pod, want_path) in checks {
        let line = format!("curl -H 'Host: {host}' http://{to}{path}");
        let answer = http_request(bed.client_ns(), to, path, &[("Host", host)], REQUEST_TIMEOUT);
        let seen = answer.as_ref().ok().and_then(|resp| Some((resp.status, resp.pod_name()?, parse_body(&resp.body)?)));
        match (answer, seen) {
            (_, Some((200, pod, seen))) if pod == want_pod && seen.path == want_path => {
                println!("{line:<72} 200 {pod} got {}", seen.path);
            }
            (_, Some((status, pod, seen))) => {
                failures += 1;
                println!("{line:<72} FAILED: {status} {pod} got {} (want {want_pod} and {want_path})", seen.path);
            }
            (Ok(resp), None) => {
                failures += 1;
                println!("{line:<72} FAILED: status {} {}", resp.status, resp.body.trim());
            }
            (Err(e), None) => {
                failures += 1;
                println!("{line:<72} FAILED: {e:#}");
            }
        }
    }
    failures
}

/// `  (192.168.1.150 is at node1's uplink, as the client's neighbour cache
/// says)`, or nothing when that is unknown.
fn arp_owner(bed: &TestBed, ip: Ipv4Addr) -> String {
    let Ok(Some(mac)) = lb_testbed::arp::neighbour(bed.client_ns(), ip) else { return String::new() };
    let node = ["node1", "node2"]
        .into_iter()
        .find(|node| bed.node_ns(node).and_then(|ns| lb_testbed::arp::mac_of(ns, "eth0")).is_ok_and(|m| m == mac));
    match node {
        Some(node) => format!("  ({ip} is at {node}'s uplink, {}, by ARP)", lb_testbed::arp::format_mac(&mac)),
        None => String::new(),
    }
}

fn print_topology(bed: &TestBed) {
    println!("    client  ns {}  192.168.1.2/24, no other route", bed.client_ns());
    for node in bed.nodes() {
        println!("    {}   ns {}  {} (pods {}/24 on cni0)", node.name, node.ns, node.ip, node.pod_cidr);
    }
    for pod in bed.pods() {
        println!("    pod {} on {}: {}", pod.name, pod.node, pod.ip);
    }
}

fn keep_until_enter(bed: &TestBed) {
    println!(
        "\n==> bed kept up; try e.g.:\n    ip netns exec {} curl -s http://{}:{HTTP_NODE_PORT}/\n\
         logs: {}\npress Enter to remove it",
        bed.client_ns(),
        NODE1_IP,
        bed.log_dir().display()
    );
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}
