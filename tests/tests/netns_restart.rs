//! The pinned data path outlives its agent (issue: hitless restarts). On the
//! bed, node1's agent pins its maps and links under its own
//! `--bpf-pin-dir`; it is killed with SIGKILL while long TCP connections
//! run through its NodePort to pods on both nodes; new TCP and UDP flows
//! are tried while no agent runs; a new agent adopts the pins; a third
//! agent started beside it stands by and takes over when it stops (an
//! upgrade); `lb cleanup` removes everything.
//!
//! The first test counts the machine's lb program links: no other test of
//! this binary attaches any.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use aya::programs::{loaded_links, loaded_programs};
use lb_testbed::probe::{Exchange, parse_exchanges};
use lb_testbed::{NODE1_IP, ProcessHandle, TestBed, copy_example_manifests, lb_bin};

const POD_ON_NODE2: &str = "nginx-7c5ddbdf54-q9wvt";
/// Kept-alive connections held across the kill and the restart: with 24,
/// the chance that none lands on node2's pod (one of three) is 6 in 100,000.
const HELD: usize = 24;
const HOLD_SECONDS: u64 = 20;

fn node_port(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(NODE1_IP), port)
}

/// How many BPF links of lb's programs (named `lb_…`) the machine has.
fn lb_links() -> usize {
    let lb_programs: BTreeSet<u32> = loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("lb_")))
        .map(|p| p.id())
        .collect();
    loaded_links().filter_map(Result::ok).filter(|l| lb_programs.contains(&l.program_id())).count()
}

/// The id of the XDP program on node1's `eth0` (`ip -d link`), if any.
fn xdp_program(bed: &TestBed) -> Option<u64> {
    let ns = bed.node_ns("node1").unwrap();
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["ip", "-j", "-d", "link", "show", "dev", "eth0"])
        .output()
        .expect("ip link");
    assert!(out.status.success(), "ip link: {}", String::from_utf8_lossy(&out.stderr));
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    links[0]["xdp"]["prog"]["id"].as_u64()
}

fn start_agent(bed: &TestBed, manifests: &std::path::Path) -> ProcessHandle {
    let lb = bed.start_lb("node1", manifests).expect("start lb");
    bed.wait_for_ready("node1", &lb, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e:#}"));
    lb
}

/// Waits until `lb` logs `what`; fails with its logs if it exits or takes
/// longer than `timeout`.
fn wait_for_log(lb: &ProcessHandle, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !lb.logs(256 * 1024).contains(what) {
        assert!(Instant::now() < deadline && lb.is_running(), "lb logs {what:?}:\n{}", lb.logs(16 * 1024));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// New connections from the client: answers per pod; panics on a failure.
#[track_caller]
fn new_flows(bed: &TestBed, args: &[&str], what: &str) -> BTreeMap<String, usize> {
    let exchanges =
        bed.run_probe(bed.client_ns(), None, args, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    let failed: Vec<&Exchange> = exchanges.iter().filter(|e| !e.ok()).collect();
    assert!(failed.is_empty(), "{what}: {} of {} failed: {:?}", failed.len(), exchanges.len(), &failed[..1]);
    let mut pods = BTreeMap::new();
    for e in &exchanges {
        *pods.entry(e.pod.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    eprintln!("{what}: {pods:?}");
    pods
}

#[test]
fn the_pinned_data_path_outlives_the_agent_and_a_new_agent_adopts_it() {
    let manifests = copy_example_manifests().expect("manifests");
    let bed = TestBed::new().expect("test bed (needs root)");
    bed.start_echo_pods().expect("echo pods");
    let pin_dir = bed.node("node1").unwrap().pin_dir.clone();
    let first = start_agent(&bed, manifests.path());
    lb_testbed::bed::wait_for_http(bed.client_ns(), node_port(30007), Duration::from_secs(30), Some(&first))
        .unwrap_or_else(|e| panic!("NodePort 30007 answers: {e:#}"));
    let links_before = lb_links();
    let xdp_before = xdp_program(&bed).expect("XDP on node1's uplink");
    assert!(links_before >= 3, "XDP, TC and the socket programs are linked: {links_before}");
    assert!(pin_dir.join("links").read_dir().unwrap().count() >= 3, "links are pinned");

    // Long connections through node1's NodePort, to pods on both nodes.
    let port = node_port(30007).to_string();
    let hold_args = ["hold", &port, "--seconds", &HOLD_SECONDS.to_string(), "--interval-ms", "200"];
    let holds: Vec<ProcessHandle> =
        (0..HELD).map(|_| bed.spawn_probe(bed.client_ns(), None, &hold_args).expect("lb-probe hold")).collect();
    let started = Instant::now();
    while holds.iter().any(|h| h.stdout().lines().count() < 2) {
        assert!(started.elapsed() < Duration::from_secs(10), "held connections answer");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The agent dies without a chance to clean up.
    first.kill();
    assert!(!first.is_running());
    assert_eq!(xdp_program(&bed), Some(xdp_before), "XDP stays attached without its agent");
    assert_eq!(lb_links(), links_before, "every link stays");
    // New flows while no agent runs: TCP over every pod, UDP too.
    let pods = new_flows(&bed, &["tcp", &port, "--count", "60"], "new TCP flows without an agent");
    assert_eq!(pods.len(), 3, "new flows spread over the three pods: {pods:?}");
    new_flows(&bed, &["udp", &node_port(30053).to_string(), "--count", "30"], "UDP without an agent");

    // A new agent adopts what is pinned: nothing to write, programs
    // swapped into the same links, exactly one XDP program.
    let second = start_agent(&bed, manifests.path());
    let logs = second.logs(64 * 1024);
    let adopted = logs.lines().find(|l| l.contains("adopted the maps' contents")).expect("adoption is logged");
    assert!(!adopted.contains(" services=0"), "the new agent adopts the services in the maps: {adopted}");
    assert!(logs.contains("program swapped into the pinned link"), "TC links are updated in place:\n{logs}");
    let first_apply = logs.lines().find(|l| l.contains("frontends_written=")).expect("an apply is logged");
    for written in ["frontends_written=0", "backends_written=0", "maglev_slots_written=0"] {
        assert!(first_apply.contains(written), "a restart rewrites nothing that is right: {first_apply}");
    }
    let xdp_after = xdp_program(&bed).expect("XDP on node1's uplink");
    assert_ne!(xdp_after, xdp_before, "the new agent's XDP program is the one attached");
    assert_eq!(lb_links(), links_before, "no link is added: the new programs replace the old ones");

    // Every held connection kept its pod through the kill and the restart.
    for hold in &holds {
        while hold.is_running() {
            assert!(started.elapsed() < Duration::from_secs(HOLD_SECONDS + 20), "held connections end");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut held_pods = BTreeSet::new();
    for hold in &holds {
        let exchanges = parse_exchanges(&hold.stdout());
        assert!(exchanges.len() as u64 >= HOLD_SECONDS * 3, "a held connection asked all along: {}", exchanges.len());
        assert!(exchanges.iter().all(Exchange::ok), "a held connection failed: {:?}", exchanges.last());
        let pods: BTreeSet<_> = exchanges.iter().map(|e| e.pod.clone()).collect();
        assert_eq!(pods.len(), 1, "a held connection keeps its pod: {pods:?}");
        held_pods.extend(pods.into_iter().flatten());
    }
    assert!(held_pods.contains(POD_ON_NODE2) && held_pods.len() == 3, "held to local and remote pods: {held_pods:?}");
    let pods = new_flows(&bed, &["tcp", &port, "--count", "60"], "new TCP flows after the restart");
    assert_eq!(pods.len(), 3, "new flows spread over the three pods: {pods:?}");

    // An upgrade: a third agent starts beside the second with the same
    // flags. It stands by (serving Ingress, ready) while the second holds
    // the data path, and takes it over when the second gets SIGTERM.
    // Its /readyz shares the port with the second's; its --ready-file
    // (the DaemonSet's readiness probe) is its own.
    let ready_file = bed.log_dir().join("third-ready");
    let third = bed.start_lb_with("node1", manifests.path(), &["--ready-file", ready_file.to_str().unwrap()]).unwrap();
    wait_for_log(&third, "standby=true", Duration::from_secs(30));
    assert!(ready_file.exists(), "an agent standing by is ready");
    assert!(third.logs(64 * 1024).contains("standing by"), "the new agent waits:\n{}", third.logs(8192));
    assert_eq!(xdp_program(&bed), Some(xdp_after), "only one agent attaches");
    // New connections all through the handover (400 × 20 ms and more).
    let during = bed
        .spawn_probe(bed.client_ns(), None, &["tcp", &port, "--count", "400", "--interval-ms", "20"])
        .expect("lb-probe");
    std::thread::sleep(Duration::from_millis(300));
    second.stop();
    wait_for_log(&third, "took over the data path", Duration::from_secs(20));
    assert!(during.is_running(), "the new connections span the handover");
    let deadline = Instant::now() + Duration::from_secs(60);
    while during.is_running() {
        assert!(Instant::now() < deadline, "lb-probe ends");
        std::thread::sleep(Duration::from_millis(100));
    }
    let exchanges = parse_exchanges(&during.stdout());
    let failed: Vec<&Exchange> = exchanges.iter().filter(|e| !e.ok()).collect();
    assert!(exchanges.len() == 400 && failed.is_empty(), "no new connection fails in the handover: {failed:?}");
    let xdp_upgraded = xdp_program(&bed).expect("XDP on node1's uplink");
    assert!(xdp_upgraded != xdp_after && lb_links() == links_before, "the new programs replace the old ones");
    let pods = new_flows(&bed, &["tcp", &port, "--count", "30"], "new TCP flows after the upgrade");
    assert_eq!(pods.len(), 3, "new flows spread over the three pods: {pods:?}");

    // Uninstall: stop the agent, `lb cleanup` takes everything away.
    third.stop();
    assert!(!ready_file.exists(), "a stopped agent is not ready");
    assert_eq!(xdp_program(&bed), Some(xdp_upgraded), "SIGTERM leaves the data path serving");
    let refused = Command::new(lb_bin().unwrap()).args(["cleanup", "--bpf-pin-dir"]).arg(&pin_dir).output().unwrap();
    assert!(refused.status.success(), "lb cleanup: {}", String::from_utf8_lossy(&refused.stderr));
    eprintln!("{}", String::from_utf8_lossy(&refused.stdout));
    assert_eq!(xdp_program(&bed), None, "no XDP program is left on the uplink");
    assert_eq!(lb_links(), 0, "no lb program is linked anywhere");
    assert!(!pin_dir.exists(), "nothing of lb is left in bpffs");
}

#[test]
fn lb_cleanup_refuses_while_an_agent_holds_the_directory() {
    // Without a bed: a pin directory locked by this process stands in for
    // a running agent.
    let root =
        std::path::PathBuf::from(format!("{}/lbt{}-cleanup", lb_userspace::dataplane::pins::BPFFS, std::process::id()));
    let dir = lb_userspace::dataplane::PinDir::new(&root);
    dir.prepare().expect("pin directory on bpffs");
    let lock = dir.try_lock().unwrap().expect("free");
    let out = Command::new(lb_bin().unwrap()).args(["cleanup", "--bpf-pin-dir"]).arg(&root).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("an agent is running"), "{out:?}");
    assert!(root.exists());
    drop(lock);
    let out = Command::new(lb_bin().unwrap()).args(["cleanup", "--bpf-pin-dir"]).arg(&root).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!root.exists());
}
