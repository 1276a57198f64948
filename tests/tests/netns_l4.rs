//! The L4 data path on a bed that looks like a small cluster: a client and
//! two nodes on one LAN, pods behind each node's CNI bridge, `lb run
//! --interface eth0` on both nodes, real TCP and UDP from the client.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use lb_testbed::{
    CLIENT_IP, KeepAliveConn, LOADBALANCER_IP, NODE1_IP, NODE2_IP, ProcessHandle, TestBed, copy_example_manifests,
    example_manifests_dir, http_request, in_netns, udp_echo,
};

const TIMEOUT: Duration = Duration::from_secs(3);
const POD_A: &str = "nginx-7c5ddbdf54-2xkqn"; // node1
const POD_B: &str = "nginx-7c5ddbdf54-8rz4m"; // node1
const POD_C: &str = "nginx-7c5ddbdf54-q9wvt"; // node2

fn addr(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// A bed with echo pods and `lb run` on both nodes serving `manifests`;
/// returns once node1's NodePort answers. Nothing runs on the LAN side of
/// the nodes' uplinks, as on a user's machines.
fn start(manifests: &Path) -> (TestBed, Vec<ProcessHandle>) {
    start_on(TestBed::new().expect("test bed (needs root)"), manifests, &[])
}

fn start_on(bed: TestBed, manifests: &Path, lb_args: &[&str]) -> (TestBed, Vec<ProcessHandle>) {
    bed.start_echo_pods().expect("echo pods");
    let lbs = bed.start_lb_on_every_node_with(manifests, lb_args).expect("start lb");
    for (node, lb) in [NODE1_IP, NODE2_IP].into_iter().zip(&lbs) {
        lb_testbed::bed::wait_for_http(bed.client_ns(), addr(node, 30007), Duration::from_secs(30), Some(lb))
            .unwrap_or_else(|e| panic!("NodePort 30007 on {node} answers: {e:#}"));
    }
    (bed, lbs)
}

/// One request on a fresh connection: (pod, the address the pod saw the
/// request come from).
fn get(bed: &TestBed, to: SocketAddr) -> (String, String) {
    try_get(bed, to).unwrap_or_else(|e| panic!("GET {to}: {e}"))
}

fn try_get(bed: &TestBed, to: SocketAddr) -> Result<(String, String), String> {
    let resp = http_request(bed.client_ns(), to, "/", &[], TIMEOUT).map_err(|e| format!("{e:#}"))?;
    if resp.status != 200 {
        return Err(format!("status {}", resp.status));
    }
    let pod = resp.pod_name().ok_or("the answer names no pod")?;
    let seen_from = resp.header("x-remote-addr").ok_or("no x-remote-addr")?.to_string();
    Ok((pod, seen_from.rsplit_once(':').map(|(ip, _)| ip.to_string()).unwrap_or(seen_from)))
}

/// What `n` fresh connections (or UDP exchanges) to one frontend found.
#[derive(Default)]
struct Tally {
    per_pod: BTreeMap<String, u32>,
    /// The source address each pod saw.
    sources: BTreeMap<String, String>,
    failures: Vec<String>,
    slowest: Duration,
}

/// No connection may fail or take a second: a flow held by the uplink's
/// far side shows up as a 3 s timeout or a retransmitted SYN (1 s).
const SLOWEST_ALLOWED: Duration = Duration::from_secs(1);

impl Tally {
    fn collect(n: usize, mut one: impl FnMut(usize) -> Result<(String, String), String>) -> Self {
        let mut tally = Tally::default();
        for i in 0..n {
            let started = Instant::now();
            let result = one(i);
            tally.slowest = tally.slowest.max(started.elapsed());
            match result {
                Ok((pod, from)) => {
                    *tally.per_pod.entry(pod.clone()).or_default() += 1;
                    tally.sources.insert(pod, from);
                }
                Err(e) => tally.failures.push(format!("#{i}: {e}")),
            }
        }
        tally
    }

    fn tcp(bed: &TestBed, to: SocketAddr, n: usize) -> Self {
        Self::collect(n, |_| try_get(bed, to))
    }

    fn udp(bed: &TestBed, to: SocketAddr, n: usize) -> Self {
        Self::collect(n, |i| {
            let (pod, payload) =
                udp_echo(bed.client_ns(), to, &format!("q{i}"), TIMEOUT).map_err(|e| format!("{e:#}"))?;
            if payload != format!("q{i}") {
                return Err(format!("echoed {payload:?}"));
            }
            Ok((pod, String::new()))
        })
    }

    /// Every exchange answered within [`SLOWEST_ALLOWED`], spread over all
    /// three pods with each between 20% and 50%.
    #[track_caller]
    fn assert_clean_spread(&self, what: &str, n: u32) {
        eprintln!("{what}: {:?}, slowest {:?}", self.per_pod, self.slowest);
        assert!(self.failures.is_empty(), "{what}: {} of {n} failed: {:?}", self.failures.len(), self.failures);
        assert!(self.slowest < SLOWEST_ALLOWED, "{what}: the slowest took {:?}", self.slowest);
        assert_eq!(self.per_pod.len(), 3, "{what}: all three pods answer: {:?}", self.per_pod);
        for (pod, got) in &self.per_pod {
            assert!((n / 5..=n / 2).contains(got), "{what}: {pod} got {got} of {n} (want 20%–50%): {:?}", self.per_pod);
        }
    }
}

/// Flows to a pod on the other node leave through the uplink they came in
/// on, and their replies too: on a veth whose far side runs no XDP program
/// the agent hands them to TC (`--xdp-transmit auto`).
#[test]
fn nodeport_spreads_connections_over_pods_on_both_nodes() {
    let (bed, lbs) = start(&example_manifests_dir());
    let via_node1 = Tally::tcp(&bed, addr(NODE1_IP, 30007), 300);
    via_node1.assert_clean_spread("TCP to node1's NodePort", 300);
    // Native (driver-mode) XDP on the veth, frames finished by TC.
    for lb in &lbs {
        let logs = lb.logs(20_000);
        assert!(logs.contains("xdp_mode=\"driver\" transmit=\"tc\""), "a veth uplink hands off:\n{logs}");
    }
    // Pods on node1 see the client; the pod on node2 is reached through
    // node1's NodePort with the source masqueraded to node1.
    assert_eq!(via_node1.sources[POD_A], CLIENT_IP.to_string());
    assert_eq!(via_node1.sources[POD_B], CLIENT_IP.to_string());
    assert_eq!(via_node1.sources[POD_C], NODE1_IP.to_string(), "masqueraded to node1");

    // NodePort 30007 answers on node2 as well, for pods on both nodes.
    let via_node2 = Tally::tcp(&bed, addr(NODE2_IP, 30007), 300);
    via_node2.assert_clean_spread("TCP to node2's NodePort", 300);
    assert_eq!(via_node2.sources[POD_A], NODE2_IP.to_string(), "masqueraded to node2");
    assert_eq!(via_node2.sources[POD_C], CLIENT_IP.to_string());

    // UDP NodePort, from many source ports; the LoadBalancer IP
    // (status.loadBalancer.ingress) and an external IP. node1 counts the
    // datagrams in the Service's counters: each of the 300 goes in, and
    // its reply comes out, through node1's data path.
    let udp_packets = || service_packets(&bed, "echo-udp");
    let before = udp_packets();
    Tally::udp(&bed, addr(NODE1_IP, 30053), 300).assert_clean_spread("UDP to node1's NodePort", 300);
    let grown = udp_packets() - before;
    assert!((300..=600).contains(&grown), "echo-udp's counters grew by {grown} for 300 exchanges");
    Tally::tcp(&bed, addr(LOADBALANCER_IP, 8088), 300).assert_clean_spread("TCP to the LoadBalancer IP", 300);
    let external = addr("198.51.100.10".parse().unwrap(), 8080);
    Tally::tcp(&bed, external, 300).assert_clean_spread("TCP to an external IP", 300);

    // Every agent wrote its maps at least once, and says so as kube-proxy
    // does.
    for node in ["node1", "node2"] {
        let metrics = bed.admin_get(node, "/metrics").expect("/metrics answers");
        assert_eq!(metrics.status, 200, "{}", metrics.body);
        let scrape = prometheus_parse::Scrape::parse(metrics.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let sample = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name)
                .unwrap_or_else(|| panic!("{node}: no {name}"))
                .value
                .clone()
        };
        let prometheus_parse::Value::Histogram(buckets) = sample("kubeproxy_sync_proxy_rules_duration_seconds") else {
            panic!("{node}: not a histogram");
        };
        let syncs = buckets.last().map_or(0.0, |inf| inf.count);
        assert!(syncs >= 1.0, "{node}: {syncs} syncs counted:\n{}", metrics.body);
        let prometheus_parse::Value::Gauge(last) = sample("kubeproxy_sync_proxy_rules_last_timestamp_seconds") else {
            panic!("{node}: not a gauge");
        };
        assert!(last > 1.7e9, "{node}: last sync at {last}");
    }
}

/// The packets (both directions) of every view of Service `default/name`
/// in node1's data path, as `/inspect/services` reports them.
fn service_packets(bed: &TestBed, name: &str) -> u64 {
    let resp = bed.admin_get("node1", "/inspect/services").expect("/inspect/services answers");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let report: serde_json::Value = serde_json::from_str(&resp.body).expect("JSON");
    let views = report["services"].as_array().expect("services");
    let views: Vec<&serde_json::Value> =
        views.iter().filter(|s| s["namespace"] == "default" && s["name"] == name).collect();
    assert!(!views.is_empty(), "no {name} in {}", resp.body);
    views.iter().map(|s| s["packets"].as_u64().expect("packets")).sum()
}

/// `lb inspect services` (the CLI, in node1's namespace, against node1's
/// agent) lists the NodePort Service with its frontends and its three
/// pods; `-o json` has the same in the report's shape.
#[test]
fn lb_inspect_lists_the_nodeport_service_with_its_pods() {
    let (bed, _lbs) = start(&example_manifests_dir());
    let node1 = bed.node("node1").unwrap();
    let admin = format!("{NODE1_IP}:10254");
    let lb = lb_testbed::lb_bin().unwrap();
    let inspect = |args: &[&str]| {
        let mut all = vec!["inspect", "--admin-addr", admin.as_str()];
        all.extend_from_slice(args);
        let out = lb_testbed::netns::exec_in(&node1.ns, lb.to_str().unwrap(), &all).expect("lb inspect runs");
        String::from_utf8(out.stdout).unwrap()
    };
    let table = inspect(&["services"]);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("SERVICE") && rows[0].contains("BACKENDS"), "{table}");
    let first =
        rows.iter().position(|r| r.starts_with("default/my-service-nodeport/TCP")).unwrap_or_else(|| panic!("{table}"));
    let block: Vec<&str> = rows[first..]
        .iter()
        .take_while(|r| r.starts_with("default/my-service-nodeport/TCP") || r.starts_with(' '))
        .copied()
        .collect();
    let text = block.join("\n");
    assert!(text.contains(&format!("NodePort {NODE1_IP}:30007/TCP")), "{table}");
    for pod in bed.pods() {
        assert!(text.contains(&format!("{}:80 (ready,serving", pod.ip)), "pod {} in\n{table}", pod.name);
    }

    let json: serde_json::Value = serde_json::from_str(&inspect(&["services", "-o", "json"])).expect("-o json is JSON");
    let service = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "my-service-nodeport" && s["scope"] == "cluster")
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(service["backends"].as_array().unwrap().len(), 3, "{service:#}");
    let share: f64 = service["backends"].as_array().unwrap().iter().map(|b| b["maglev_share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-9, "the shares cover the row: {share}");
    let shape = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        shape(service),
        ["backends", "bytes", "frontends", "id", "name", "namespace", "packets", "port", "protocol", "scope"]
    );
    assert_eq!(shape(&service["backends"][0]), ["address", "local", "maglev_share", "ready", "serving", "terminating"]);
    assert_eq!(shape(&service["frontends"][0]), ["address", "kind", "masquerade"]);

    // The Maglev shares of its backends.
    let backends = inspect(&["backends", "default/my-service-nodeport"]);
    assert!(backends.starts_with("SERVICE PORT") && backends.lines().count() >= 4, "{backends}");
    assert!(backends.contains('%'), "{backends}");

    // A kept-alive connection through node1's NodePort is a live flow,
    // listed for its Service and not for another.
    let mut conn = KeepAliveConn::open(bed.client_ns(), addr(NODE1_IP, 30007), TIMEOUT).expect("connection");
    conn.get_pod().expect("answered");
    let flows = |service: &str| -> serde_json::Value {
        let out = inspect(&["conntrack", "--service", service, "--limit", "1000", "-o", "json"]);
        serde_json::from_str(&out).expect("-o json is JSON")
    };
    let report = flows("default/my-service-nodeport");
    let ours = report["flows"].as_array().unwrap().iter().find(|f| {
        f["client"].as_str().is_some_and(|c| c.starts_with(&format!("{CLIENT_IP}:")))
            && f["frontend"] == format!("{NODE1_IP}:30007")
    });
    let flow = ours.unwrap_or_else(|| panic!("no flow from the client in {report:#}"));
    assert_eq!(flow["service"], "default/my-service-nodeport/TCP");
    assert!(bed.pods().iter().any(|p| flow["backend"] == format!("{}:80", p.ip)), "{flow:#}");
    assert!(report["entries"].as_u64().unwrap() >= 2 && report["capacity"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(
        shape(flow),
        ["backend", "client", "frontend", "idle_seconds", "masquerade", "protocol", "service", "source"]
    );
    let other = flows("default/echo-udp");
    assert!(other["flows"].as_array().unwrap().iter().all(|f| f["service"] != "default/my-service-nodeport/TCP"));
    assert!(inspect(&["conntrack"]).contains("conntrack entries in use"));
}

/// The XDP fast path (`XDP_TX`, redirects from XDP), for uplinks whose far
/// side can take XDP frames: here a LAN side that runs an XDP program.
#[test]
fn xdp_transmit_with_a_peer_that_runs_xdp() {
    let bed = TestBed::builder().lan_peer_xdp(true).wire_checksums(true).build().expect("test bed (needs root)");
    let (bed, lbs) = start_on(bed, &example_manifests_dir(), &["--xdp-transmit", "xdp"]);
    let via_node1 = Tally::tcp(&bed, addr(NODE1_IP, 30007), 300);
    via_node1.assert_clean_spread("TCP to node1's NodePort", 300);
    for lb in &lbs {
        assert!(lb.logs(20_000).contains("transmit=\"xdp\""), "sent by XDP:\n{}", lb.logs(4000));
    }
    assert_eq!(via_node1.sources[POD_C], NODE1_IP.to_string(), "masqueraded to node1");
    Tally::udp(&bed, addr(NODE2_IP, 30053), 300).assert_clean_spread("UDP to node2's NodePort", 300);
}

#[test]
fn removing_an_endpoint_moves_only_new_flows() {
    let manifests = copy_example_manifests().expect("copy of the example manifests");
    let (bed, lbs) = start(manifests.path());

    // An open connection to a pod on node1 that stays.
    let keep_to = addr(NODE1_IP, 30007);
    let (mut kept, kept_pod) = (0..50)
        .find_map(|_| {
            let mut conn = KeepAliveConn::open(bed.client_ns(), keep_to, TIMEOUT).ok()?;
            let pod = conn.get_pod().ok()?;
            (pod == POD_A).then_some((conn, pod))
        })
        .expect("a keep-alive connection to pod A");

    // Remove pod B from my-service-nodeport's EndpointSlice.
    let slices = manifests.path().join("endpointslices.yaml");
    let text = std::fs::read_to_string(&slices).unwrap();
    let docs: Vec<String> = text
        .split("\n---\n")
        .map(|doc| if doc.contains("name: my-service-nodeport-") { without_endpoint(doc, POD_B) } else { doc.into() })
        .collect();
    // Stamped as the EndpointSlice controller stamps a change.
    let trigger = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let docs: Vec<String> = docs
        .iter()
        .map(|doc| match doc.contains("name: my-service-nodeport-") {
            true => doc.replacen(
                "  namespace: default\n",
                &format!(
                    "  namespace: default\n  annotations:\n    endpoints.kubernetes.io/last-change-trigger-time: \"{trigger}\"\n"
                ),
                1,
            ),
            false => doc.clone(),
        })
        .collect();
    let removed_at = Instant::now();
    std::fs::write(&slices, docs.join("\n---\n")).unwrap();

    // Within a second no new connection reaches pod B.
    std::thread::sleep(Duration::from_millis(1200));
    let mut per_pod: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..100 {
        *per_pod.entry(get(&bed, keep_to).0).or_default() += 1;
    }
    assert!(!per_pod.contains_key(POD_B), "removed pod still gets new connections: {per_pod:?}\n{}", lbs[0].logs(4000));
    assert_eq!(per_pod.len(), 2, "the two remaining pods share the load: {per_pod:?}");

    // The open connection to pod A keeps working, on the same pod.
    for _ in 0..3 {
        assert_eq!(kept.get_pod().expect("open connection still answers"), kept_pod);
    }
    eprintln!("endpoint removal applied and verified {:?} after the write", removed_at.elapsed());

    // kube-proxy's network programming latency: one change, served within
    // the seconds above (the trigger time has whole seconds).
    let metrics = bed.admin_get("node1", "/metrics").expect("/metrics answers");
    let scrape = prometheus_parse::Scrape::parse(metrics.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let latency = scrape.samples.iter().find(|s| s.metric == "kubeproxy_network_programming_duration_seconds");
    let Some(prometheus_parse::Value::Histogram(buckets)) = latency.map(|s| &s.value) else {
        panic!("no network programming histogram:\n{}", metrics.body);
    };
    assert_eq!(buckets.last().map(|b| b.count), Some(1.0), "{buckets:?}");
    let within_3s = buckets.iter().find(|b| b.less_than == 3.0).map(|b| b.count);
    assert_eq!(within_3s, Some(1.0), "{buckets:?}");
}

/// The EndpointSlice document without the endpoint of `pod`.
fn without_endpoint(doc: &str, pod: &str) -> String {
    let (head, endpoints) = doc.split_once("endpoints:\n").expect("slice has endpoints");
    let kept: Vec<&str> =
        endpoints.split("- addresses:").filter(|e| !e.trim().is_empty() && !e.contains(pod)).collect();
    format!("{head}endpoints:\n{}", kept.iter().map(|e| format!("- addresses:{e}")).collect::<String>())
}

#[test]
fn service_without_endpoints_is_refused_and_bad_input_is_skipped() {
    let manifests = copy_example_manifests().expect("copy of the example manifests");
    std::fs::write(
        manifests.path().join("extra.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: nobody-home\nspec:\n  type: NodePort\n  ports:\n  \
         - port: 80\n    nodePort: 30099\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: broken-port\nspec:\n  \
         ports:\n  - port: eighty\n",
    )
    .unwrap();
    std::fs::write(manifests.path().join("garbage.yaml"), "kind: [unclosed\n").unwrap();
    let (bed, lbs) = start(manifests.path());

    // Like kube-proxy: ICMP port unreachable, so connect() is refused at once.
    let to = addr(NODE1_IP, 30099);
    let started = Instant::now();
    let refused = in_netns(bed.client_ns(), || TcpStream::connect_timeout(&to, TIMEOUT)).unwrap();
    match refused {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{to}: {e}"),
        Ok(_) => panic!("{to} has no endpoints but accepted a connection"),
    }
    assert!(started.elapsed() < Duration::from_secs(1), "refused quickly, not timed out");

    // Everything else keeps working, and the log names the bad objects.
    assert!(!get(&bed, addr(NODE1_IP, 30007)).0.is_empty());
    let logs = lbs[0].logs(20_000);
    assert!(logs.contains("garbage.yaml"), "log names the unparsable file:\n{logs}");
    assert!(logs.contains("broken-port"), "log names the bad Service:\n{logs}");
}

/// Large requests and responses: the client's stack sends 64 KiB segments
/// with partial checksums, which the LAN side cuts into frames that still
/// carry partial checksums; every translated frame's checksum must come out
/// right, which every pod verifies (its veth computes what is partial).
#[test]
fn large_transfers_keep_their_checksums() {
    let (bed, _lbs) = start(&example_manifests_dir());
    let body = "0123456789abcdef".repeat(16 * 1024); // 256 KiB
    let mut per_pod: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..30 {
        let to = addr(if i % 2 == 0 { NODE1_IP } else { NODE2_IP }, 30007);
        let answer = post(&bed, to, &body).unwrap_or_else(|e| panic!("POST #{i} to {to}: {e}"));
        assert!(answer.starts_with("HTTP/1.1 200"), "POST #{i} to {to}: {}", &answer[..answer.len().min(200)]);
        assert!(answer.contains(&body), "POST #{i} to {to}: the pod echoed the whole body back");
        let pod = answer.lines().find_map(|l| l.strip_prefix("x-pod-name: ")).expect("x-pod-name").to_string();
        *per_pod.entry(pod).or_default() += 1;
    }
    assert_eq!(per_pod.len(), 3, "all three pods answered: {per_pod:?}");
}

/// `POST /` with `body` on a fresh connection; the whole answer as text.
fn post(bed: &TestBed, to: SocketAddr, body: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = in_netns(bed.client_ns(), || TcpStream::connect_timeout(&to, TIMEOUT))
        .map_err(|e| format!("{e:#}"))?
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let head = format!("POST / HTTP/1.1\r\nHost: {to}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes())).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| format!("reading the answer: {e}"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// `--manifests` mode gives LoadBalancer Services addresses in memory, from
/// a MetalLB `IPAddressPool` in the files (nothing written back): a new
/// Service without a status address that asks for the pool
/// (`metallb.io/address-pool`) gets its lowest free address, which the
/// data path serves; the files are unchanged.
#[test]
fn metallb_pool_in_the_files_gives_addresses_in_memory() {
    let manifests = copy_example_manifests().expect("copy of the example manifests");
    let pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: lan\n  namespace: metallb-system\n\
                spec:\n  addresses:\n  - 192.168.1.210-192.168.1.219\n";
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: fresh-lb\n  annotations:\n    \
                   metallb.io/address-pool: lan\nspec:\n  type: LoadBalancer\n  \
                   selector:\n    app: nginx\n  ports:\n  - name: http\n    port: 8099\n    targetPort: 80\n";
    std::fs::write(manifests.path().join("pool.yaml"), pool).unwrap();
    std::fs::write(manifests.path().join("fresh.yaml"), service).unwrap();
    let (bed, _lbs) = start(manifests.path());
    let resp = bed.admin_get("node1", "/inspect/services").expect("/inspect/services answers");
    let report: serde_json::Value = serde_json::from_str(&resp.body).expect("JSON");
    let fresh = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "fresh-lb")
        .unwrap_or_else(|| panic!("fresh-lb in {report:#}"));
    let frontends: Vec<&str> =
        fresh["frontends"].as_array().unwrap().iter().map(|f| f["address"].as_str().unwrap()).collect();
    assert!(frontends.contains(&"192.168.1.210:8099/TCP"), "the pool's first address: {frontends:?}");
    assert_eq!(std::fs::read_to_string(manifests.path().join("fresh.yaml")).unwrap(), service, "nothing written back");
}
