//! Fuzzing the kernel programs through `BPF_PROG_TEST_RUN`: frames mutated
//! from well-formed ones (`lb_testbed::fuzz`) go through
//!
//! - `xdp`: `lb_xdp` on an uplink where XDP sends frames itself;
//! - `xdp+tc`: `lb_xdp` on an uplink whose frames TC finishes, and
//!   `lb_tc_ingress` on what it passed (the hand-off, notes in `HANDOFFS`);
//! - `tc-egress`: `lb_tc_egress`;
//! - `tc-ingress`: `lb_tc_ingress` on the raw frame (the ARP responder, and
//!   frames carrying a hand-off mark they have no note for),
//!
//! with services (NodePorts to a remote and a local pod, one without
//! endpoints, a LoadBalancer address) and an address the ARP responder
//! answers for. Invariants for every frame: the run succeeds; a frame
//! that comes out changed is a service flow's NAT (to a backend, or from a
//! frontend), an ICMP port unreachable to its sender, or the ARP reply for
//! the announced address; NATed frames keep their length, and their
//! checksums are right whenever the input's were; no half-finished frame
//! (still carrying the hand-off mark) leaves TC.
//!
//! Every distinct outcome (verdict and what the frame became) of each
//! pipeline is kept as a fixture in `tests/fixtures/xdp_fuzz_verdicts.txt`
//! (the first frame that gave it and gives it again on a fresh data path,
//! whose conntrack holds the seeds' flows); the test replays them first.
//! Outcomes that depend on what came before (a rate limit, a table
//! running full) cannot be replayed alone and are not kept.
//! A verdict not yet kept fails the test: `cargo xtask fuzz` (10M frames,
//! `LB_FUZZ_RECORD=1`) records it. `LB_FUZZ_COUNT` and `LB_FUZZ_SEED`
//! change the run (default: 200,000 frames, a fixed seed).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use etherparse::PacketBuilder;
use lb_common::{INTERFACE_TC_TRANSMIT, Interface, L2Vip, L2VipKey, addr_to_map};
use lb_testbed::fixture::{FixtureNet, NODE_IP, NODE_MAC, PEER_MAC};
use lb_testbed::fuzz::{Ipv4Frame, Mutator, arp_reply, hex, unhex};
use lb_userspace::compile::{
    BackendAddr, DataplaneTables, FrontendAddr, FrontendEntry, Protocol, ServiceEntry, ServicePortName, ServiceView,
};
use lb_userspace::dataplane::{Applier, Datapath, DataplaneSettings, HandoffTransport, XdpTransmit};

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 10);
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 150);
const MAGLEV_SIZE: u32 = 251;
const DEFAULT_COUNT: u64 = 200_000;
const DEFAULT_SEED: u64 = 0x6c62_6675_7a7a;

const XDP_PASS: u32 = 2;

/// The frontends and where they lead.
fn tables() -> DataplaneTables {
    let view = |name: &str, protocol| {
        ServiceView::cluster(ServicePortName {
            namespace: "default".into(),
            name: name.into(),
            port: String::new(),
            protocol,
        })
    };
    let entry = |backends: &[BackendAddr]| {
        let names: Vec<String> = backends.iter().map(|b| b.to_string()).collect();
        let input: Vec<lb_common::maglev::MaglevBackend<'_>> =
            names.iter().map(|n| lb_common::maglev::MaglevBackend { name: n.as_bytes(), weight: 1 }).collect();
        let maglev = lb_common::maglev::build_table(&input, MAGLEV_SIZE).expect("maglev");
        ServiceEntry { backends: backends.to_vec(), maglev: maglev.into(), ..ServiceEntry::default() }
    };
    let mut t = DataplaneTables::default();
    let services = [
        ("remote-tcp", Protocol::Tcp, NODE_IP, 30007, vec![BackendAddr { ip: REMOTE_POD, port: 80 }]),
        ("local-udp", Protocol::Udp, NODE_IP, 30053, vec![BackendAddr { ip: LOCAL_POD, port: 5353 }]),
        ("no-endpoints", Protocol::Tcp, NODE_IP, 30099, vec![]),
        (
            "load-balancer",
            Protocol::Tcp,
            VIP,
            80,
            vec![BackendAddr { ip: LOCAL_POD, port: 80 }, BackendAddr { ip: REMOTE_POD, port: 80 }],
        ),
    ];
    for (name, protocol, ip, port, backends) in services {
        let view = view(name, protocol);
        let entry = if backends.is_empty() { ServiceEntry::default() } else { entry(&backends) };
        t.services.insert(view.clone(), entry);
        t.frontends.insert(FrontendAddr { ip, port, protocol }, FrontendEntry { service: view, snat: true });
    }
    t
}

/// Where a NATed frame may go to, or come from.
fn backends() -> BTreeSet<(Ipv4Addr, u16)> {
    [(REMOTE_POD, 80), (LOCAL_POD, 5353), (LOCAL_POD, 80)].into_iter().collect()
}

fn frontends() -> BTreeSet<(Ipv4Addr, u16)> {
    [(NODE_IP, 30007), (NODE_IP, 30053), (NODE_IP, 30099), (VIP, 80)].into_iter().collect()
}

/// Well-formed frames of every kind the programs look at.
fn seeds() -> Vec<Vec<u8>> {
    let tcp = |src_mac, dst_mac, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), syn: bool| {
        let b = PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .tcp(src.1, dst.1, 1000, 64240);
        let b = if syn { b.syn() } else { b.ack(2000) };
        let mut out = Vec::new();
        b.write(&mut out, if syn { b"" } else { b"GET / HTTP/1.1\r\n\r\n" }).unwrap();
        out
    };
    let udp = |src_mac, dst_mac, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .udp(src.1, dst.1)
            .write(&mut out, b"query")
            .unwrap();
        out
    };
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&CLIENT.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&VIP.octets());
    arp.resize(60, 0);
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .ipv4(CLIENT.octets(), NODE_IP.octets(), 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut ping, b"ping")
        .unwrap();
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .tcp(40000, 30007, 1, 100)
        .syn()
        .write(&mut v6, b"")
        .unwrap();
    vec![
        tcp(CLIENT_MAC, NODE_MAC, (CLIENT, 40000), (NODE_IP, 30007), true),
        tcp(CLIENT_MAC, NODE_MAC, (CLIENT, 40000), (NODE_IP, 30007), false),
        tcp(CLIENT_MAC, NODE_MAC, (CLIENT, 40001), (VIP, 80), true),
        tcp(CLIENT_MAC, NODE_MAC, (CLIENT, 40002), (NODE_IP, 30099), true),
        udp(CLIENT_MAC, NODE_MAC, (CLIENT, 5000), (NODE_IP, 30053)),
        // Replies: from the remote pod to a masquerade port, from the local
        // pods leaving through the uplink.
        tcp(PEER_MAC, NODE_MAC, (REMOTE_POD, 80), (NODE_IP, first_masquerade_port(40000, 30007)), false),
        udp(NODE_MAC, CLIENT_MAC, (LOCAL_POD, 5353), (CLIENT, 5000)),
        tcp(NODE_MAC, CLIENT_MAC, (LOCAL_POD, 80), (CLIENT, 40001), false),
        tcp(CLIENT_MAC, NODE_MAC, (CLIENT, 40003), (NODE_IP, 22), true),
        arp,
        ping,
        v6,
    ]
}

/// The masquerade port the data path picks first for a client's TCP flow
/// to a NodePort (the start of its search, see `conntrack.rs`).
fn first_masquerade_port(client_port: u16, node_port: u16) -> u16 {
    let h = lb_common::flow_hash::flow_hash(
        addr_to_map(CLIENT),
        addr_to_map(NODE_IP),
        client_port.to_be(),
        node_port.to_be(),
        6,
    );
    let start = h ^ (h >> 16);
    (61000 + start % (65535 - 61000 + 1)) as u16
}

/// A pipeline of programs a frame goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pipeline {
    Xdp,
    XdpThenTc,
    TcEgress,
    TcIngress,
}

impl Pipeline {
    const ALL: [Pipeline; 4] = [Pipeline::Xdp, Pipeline::XdpThenTc, Pipeline::TcEgress, Pipeline::TcIngress];

    fn name(self) -> &'static str {
        match self {
            Pipeline::Xdp => "xdp",
            Pipeline::XdpThenTc => "xdp+tc",
            Pipeline::TcEgress => "tc-egress",
            Pipeline::TcIngress => "tc-ingress",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Where frames are finished: by XDP itself, or by TC (hand-off notes
    /// in `HANDOFFS`, which every kernel supports).
    fn transmit(self) -> XdpTransmit {
        match self {
            Pipeline::Xdp | Pipeline::TcEgress => XdpTransmit::Xdp,
            Pipeline::XdpThenTc | Pipeline::TcIngress => XdpTransmit::Auto,
        }
    }
}

/// What became of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Untouched,
    Dropped,
    ForwardNat,
    ReplyNat,
    Reject,
    ArpReply,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

struct Loaded {
    datapath: Datapath,
    _applier: Applier,
    ifindex: u32,
}

fn load(net: &FixtureNet, transmit: XdpTransmit) -> Loaded {
    let settings = DataplaneSettings {
        maglev_table_size: MAGLEV_SIZE,
        max_services: 16,
        handoff: HandoffTransport::Map,
        ..Default::default()
    };
    let (datapath, maps, _) = Datapath::load(&settings, None).expect("load eBPF (root and BPF are required)");
    let mut applier = Applier::new(maps, MAGLEV_SIZE, 16);
    // Test runs need the programs loaded, not attached: the uplink is only
    // registered, flagged as attaching would (so several data paths, the
    // fuzzed one and fresh ones for fixtures, can exist at once).
    let uplink = net.uplink();
    let flags = if transmit.hands_off(&uplink.driver) { INTERFACE_TC_TRANSMIT } else { 0 };
    let iface = Interface { snat_addr: addr_to_map(uplink.snat_addr), flags };
    applier.maps_mut().interfaces.insert(uplink.ifindex, iface, 0).expect("registering the uplink");
    applier.apply(&tables()).expect("apply tables");
    let key = L2VipKey { ifindex: uplink.ifindex, addr: addr_to_map(VIP) };
    let maps = applier.maps_mut();
    maps.set_l2_vips(&BTreeMap::from([(key, L2Vip { mac: NODE_MAC, _pad: [0; 2] })])).unwrap();
    maps.heartbeat(Duration::from_secs(3600)).unwrap();
    let mut loaded = Loaded { datapath, _applier: applier, ifindex: uplink.ifindex };
    // The seeds' flows exist (conntrack), so that replies and TC egress
    // find them.
    for seed in seeds() {
        run_xdp(&mut loaded, &seed);
    }
    loaded
}

/// `None` for frames shorter than an Ethernet header, which the kernel
/// refuses to test-run (a driver never hands such frames to XDP or TC).
fn run_xdp(l: &mut Loaded, frame: &[u8]) -> Option<(u32, Vec<u8>)> {
    if frame.len() < 14 {
        return None;
    }
    let ctx: Vec<u8> = [0, frame.len() as u32, 0, l.ifindex, 0, 0].iter().flat_map(|v| v.to_ne_bytes()).collect();
    let mut out = vec![0u8; frame.len() + 512];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        repeat: 1,
        ..Default::default()
    };
    let result = l.datapath.xdp().unwrap().test_run(options).unwrap_or_else(|e| {
        panic!("BPF_PROG_TEST_RUN (xdp) failed on {}: {e}", hex(frame));
    });
    out.truncate(result.data_size_out as usize);
    Some((result.return_value, out))
}

fn run_tc(program: &mut SchedClassifier, ifindex: u32, frame: &[u8]) -> Option<(u32, Vec<u8>)> {
    if frame.len() < 14 {
        return None;
    }
    let mut ctx = vec![0u8; 44];
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    let mut out = vec![0u8; frame.len() + 512];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        repeat: 1,
        ..Default::default()
    };
    let result = match program.test_run(options) {
        Ok(result) => result,
        // The kernel refuses to build a test skb of an IPv4 or IPv6 frame
        // cut before the end of its IP header (EINVAL); anything else is a
        // failure.
        Err(_) if ip_header_cut_short(frame) => return None,
        Err(e) => panic!("BPF_PROG_TEST_RUN (tc) failed on {}: {e:?}", hex(frame)),
    };
    out.truncate(result.data_size_out as usize);
    Some((result.return_value, out))
}

fn ip_header_cut_short(frame: &[u8]) -> bool {
    match frame[12..14] {
        [0x08, 0x00] => frame.len() < 14 + 20,
        [0x86, 0xdd] => frame.len() < 14 + 40,
        _ => false,
    }
}

/// Runs `frame` through `pipeline`: (verdict, frame out).
fn run(pipeline: Pipeline, l: &mut Loaded, frame: &[u8]) -> Option<(String, Vec<u8>)> {
    let ifindex = l.ifindex;
    match pipeline {
        Pipeline::Xdp => {
            let (verdict, out) = run_xdp(l, frame)?;
            Some((xdp_verdict(verdict).into(), out))
        }
        Pipeline::XdpThenTc => {
            let (verdict, out) = run_xdp(l, frame)?;
            // What XDP passes, the stack gives to TC ingress.
            if verdict != XDP_PASS {
                return Some((xdp_verdict(verdict).into(), out));
            }
            let (tc, out) = run_tc(l.datapath.tc_ingress().unwrap(), ifindex, &out)?;
            Some((format!("XDP_PASS→{}", tc_verdict(tc)), out))
        }
        Pipeline::TcEgress => {
            let (tc, out) = run_tc(l.datapath.tc_egress().unwrap(), ifindex, frame)?;
            Some((tc_verdict(tc).into(), out))
        }
        Pipeline::TcIngress => {
            let (tc, out) = run_tc(l.datapath.tc_ingress().unwrap(), ifindex, frame)?;
            Some((tc_verdict(tc).into(), out))
        }
    }
}

fn xdp_verdict(v: u32) -> &'static str {
    ["XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"].get(v as usize).copied().unwrap_or("XDP_?")
}

fn tc_verdict(v: u32) -> &'static str {
    match v {
        0 => "TC_ACT_OK",
        2 => "TC_ACT_SHOT",
        7 => "TC_ACT_REDIRECT",
        _ => "TC_ACT_?",
    }
}

/// What `out` is, given `input` and the verdict; `Err` names a broken invariant.
fn classify(input: &[u8], verdict: &str, out: &[u8]) -> Result<Class, String> {
    if verdict == "XDP_ABORTED" || verdict.ends_with('?') {
        return Err(format!("verdict {verdict}"));
    }
    if verdict.ends_with("XDP_DROP") || verdict.ends_with("TC_ACT_SHOT") {
        return Ok(Class::Dropped);
    }
    if out == input {
        return Ok(Class::Untouched);
    }
    if let Some((mac, sender, target)) = arp_reply(out) {
        let asker = input.get(28..32).map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        return if mac == NODE_MAC && sender == VIP && Some(target) == asker && out.len() == input.len() {
            Ok(Class::ArpReply)
        } else {
            Err(format!("an ARP reply that is not the announced address's: {mac:?} {sender} → {target}"))
        };
    }
    let Some(after) = Ipv4Frame::parse(out) else {
        return Err("changed into something that is not IPv4".into());
    };
    if out[20] & 0x80 != 0 && input.get(20).is_none_or(|b| b & 0x80 == 0) {
        return Err("left carrying the hand-off mark".into());
    }
    if after.protocol == 1 && after.icmp == (3, 3) {
        let sender = Ipv4Frame::parse(input).map(|f| f.src);
        return match (Some(after.dst) == sender, after.checksums_valid(out)) {
            (true, true) => Ok(Class::Reject),
            (false, _) => Err(format!("a port unreachable to {} instead of the sender {sender:?}", after.dst)),
            (_, false) => Err("a port unreachable with a wrong checksum".into()),
        };
    }
    let class = if backends().contains(&(after.dst, after.dst_port)) {
        Class::ForwardNat
    } else if frontends().contains(&(after.src, after.src_port)) {
        Class::ReplyNat
    } else {
        return Err(format!("changed into {after:?}, neither to a backend nor from a frontend"));
    };
    if out.len() != input.len() {
        return Err(format!("NAT changed the length {} → {}", input.len(), out.len()));
    }
    let valid_before = Ipv4Frame::parse(input).is_some_and(|f| f.checksums_valid(input));
    if valid_before && !after.checksums_valid(out) {
        return Err("checksums right before, wrong after".into());
    }
    Ok(class)
}

/// One kept verdict: the pipeline, the verdict, what the frame became,
/// and the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Kept {
    pipeline: Pipeline,
    verdict: String,
    class: Class,
    frame: Vec<u8>,
}

fn kept_path() -> PathBuf {
    lb_testbed::repo_root().join("tests/fixtures/xdp_fuzz_verdicts.txt")
}

fn read_kept() -> Vec<Kept> {
    let text = std::fs::read_to_string(kept_path()).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [pipeline, verdict, class, frame] = fields[..] else { panic!("bad fixture line {line:?}") };
            let class =
                [Class::Untouched, Class::Dropped, Class::ForwardNat, Class::ReplyNat, Class::Reject, Class::ArpReply]
                    .into_iter()
                    .find(|c| c.to_string() == class)
                    .unwrap_or_else(|| panic!("bad class in {line:?}"));
            Kept {
                pipeline: Pipeline::parse(pipeline).unwrap_or_else(|| panic!("bad pipeline in {line:?}")),
                verdict: verdict.to_string(),
                class,
                frame: unhex(frame).unwrap_or_else(|| panic!("bad frame in {line:?}")),
            }
        })
        .collect()
}

fn write_kept(kept: &[Kept]) {
    let mut text = String::from(
        "# Every distinct outcome the fuzzer found, per pipeline, with the first frame that gave it\n\
         # on a fresh data path (tests/tests/xdp_fuzz.rs; `cargo xtask fuzz` adds new ones).\n\
         # pipeline verdict class frame\n",
    );
    for k in kept {
        text.push_str(&format!("{} {} {} {}\n", k.pipeline.name(), k.verdict, k.class, hex(&k.frame)));
    }
    std::fs::write(kept_path(), text).expect("writing the fuzz fixtures");
}

/// The outcome of `frame` on a freshly loaded data path.
fn fresh_outcome(net: &FixtureNet, pipeline: Pipeline, frame: &[u8]) -> Option<(String, Result<Class, String>)> {
    let mut l = load(net, pipeline.transmit());
    let (verdict, out) = run(pipeline, &mut l, frame)?;
    let class = classify(frame, &verdict, &out);
    Some((verdict, class))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}: not a number")))
        .unwrap_or(default)
}

#[test]
fn random_frames_leave_the_programs_as_nat_or_untouched() {
    let count = env_u64("LB_FUZZ_COUNT", DEFAULT_COUNT);
    let seed = env_u64("LB_FUZZ_SEED", DEFAULT_SEED);
    let record = std::env::var("LB_FUZZ_RECORD").is_ok_and(|v| v == "1");
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        // The kept verdicts first, each on a fresh data path.
        let mut kept = read_kept();
        for k in &kept {
            let outcome = fresh_outcome(net, k.pipeline, &k.frame);
            assert_eq!(
                outcome,
                Some((k.verdict.clone(), Ok(k.class))),
                "fixture {} {} {}: {}",
                k.pipeline.name(),
                k.verdict,
                k.class,
                hex(&k.frame)
            );
        }
        let mut new = Vec::new();
        let mut failures = Vec::new();
        for pipeline in Pipeline::ALL {
            let started = Instant::now();
            let mut l = load(net, pipeline.transmit());
            let mut mutator = Mutator::new(seed, seeds());
            let mut seen: BTreeMap<(String, Class), u64> = BTreeMap::new();
            for _ in 0..count {
                let frame = mutator.next_frame();
                let Some((verdict, out)) = run(pipeline, &mut l, &frame) else { continue };
                match classify(&frame, &verdict, &out) {
                    Ok(class) => {
                        *seen.entry((verdict.clone(), class)).or_default() += 1;
                        let known = kept
                            .iter()
                            .chain(&new)
                            .any(|k| k.pipeline == pipeline && k.verdict == verdict && k.class == class);
                        if !known
                            && fresh_outcome(net, pipeline, &frame).is_some_and(|o| o == (verdict.clone(), Ok(class)))
                        {
                            new.push(Kept { pipeline, verdict, class, frame });
                        }
                    }
                    Err(broken) if failures.len() < 20 => failures.push(format!(
                        "{}: {broken}: {verdict}\n  in:  {}\n  out: {}",
                        pipeline.name(),
                        hex(&frame),
                        hex(&out)
                    )),
                    Err(_) => {}
                }
            }
            eprintln!("{}: {count} frames in {:?}: {seen:?}", pipeline.name(), started.elapsed());
        }
        assert!(failures.is_empty(), "broken invariants (seed {seed}):\n{}", failures.join("\n"));
        if !new.is_empty() {
            let list: Vec<String> =
                new.iter().map(|k| format!("{} {} {}", k.pipeline.name(), k.verdict, k.class)).collect();
            if record {
                kept.extend(new);
                kept.sort_by(|a, b| (a.pipeline, &a.verdict, a.class).cmp(&(b.pipeline, &b.verdict, b.class)));
                write_kept(&kept);
                eprintln!("recorded new verdicts: {list:?}");
            } else {
                panic!("verdicts not kept as fixtures yet (run `cargo xtask fuzz` to record them): {list:?}");
            }
        }
    });
}

#[test]
fn the_checker_refuses_what_the_programs_must_never_do() {
    let seeds = seeds();
    let syn = &seeds[0];
    // A frame rewritten to an address that is neither a backend nor a frontend.
    let mut elsewhere = syn.clone();
    elsewhere[30..34].copy_from_slice(&[10, 9, 9, 9]);
    lb_testbed::fuzz::fix_checksums(&mut elsewhere);
    assert!(classify(syn, "XDP_TX", &elsewhere).is_err());
    // NAT to a backend, but the checksum left stale.
    let mut stale = syn.clone();
    stale[30..34].copy_from_slice(&REMOTE_POD.octets());
    stale[36..38].copy_from_slice(&80u16.to_be_bytes());
    assert!(classify(syn, "XDP_TX", &stale).unwrap_err().contains("checksums"));
    let mut fixed = stale.clone();
    lb_testbed::fuzz::fix_checksums(&mut fixed);
    assert_eq!(classify(syn, "XDP_TX", &fixed), Ok(Class::ForwardNat));
    assert_eq!(classify(syn, "XDP_PASS", syn), Ok(Class::Untouched));
    assert_eq!(classify(syn, "XDP_DROP", &[]), Ok(Class::Dropped));
    assert!(classify(syn, "XDP_ABORTED", syn).is_err());
}
