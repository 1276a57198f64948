//! Katran-style fixtures for the kernel programs, run with
//! `BPF_PROG_TEST_RUN`: each case is a packet in, the verdict expected, and
//! the exact bytes expected out (built independently with `etherparse`, so
//! the incremental checksum updates are checked against full checksums).
//!
//! The programs run in a network namespace of their own that holds the
//! routes and neighbours the FIB lookups need:
//!
//! The socket programs (cgroup `sock_addr` hooks) have no fixtures here:
//! the kernel cannot test-run that program type (`BPF_PROG_TEST_RUN` is
//! implemented for XDP, TC, flow dissector, raw tracepoint, tracing,
//! syscall, sk_lookup and netfilter programs only), so they are tested on
//! real sockets in the netns bed (`netns_cluster_ip.rs`).
//!
//! ```text
//!   up0 192.168.1.11/24 (02:00:00:00:00:11) ── peer 192.168.1.12 (02:00:00:00:00:12)
//!   route 10.244.2.0/24 via 192.168.1.12          (pods on another node)
//!   pods0 10.244.1.1/24                           (pods on this node)
//! ```

use std::net::Ipv4Addr;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use etherparse::{Icmpv4Type, PacketBuilder, icmpv4::DestUnreachableHeader};
use lb_common::{Counter, HANDOFF_MAGIC, flow_hash::flow_hash};
use lb_testbed::fixture::{FixtureNet, NODE_IP, NODE_MAC, PEER_MAC};
use lb_userspace::compile::{
    BackendAddr, DataplaneTables, FrontendAddr, FrontendEntry, Protocol, ServiceEntry, ServicePortName, ServiceView,
};
use lb_userspace::dataplane::{
    Applier, Datapath, DataplaneSettings, HandoffTransport, PortRange, XdpAttachMode, XdpTransmit, read_counters,
};

#[path = "xdp_fixtures/arp.rs"]
mod arp;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 10);
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
const MAGLEV_SIZE: u32 = 251;

fn service(name: &str, protocol: Protocol) -> ServiceView {
    ServiceView::cluster(ServicePortName {
        namespace: "default".into(),
        name: name.into(),
        port: String::new(),
        protocol,
    })
}

fn entry(backends: &[BackendAddr]) -> ServiceEntry {
    let mut backends = backends.to_vec();
    backends.sort();
    let names: Vec<String> = backends.iter().map(|b| b.to_string()).collect();
    let input: Vec<lb_common::maglev::MaglevBackend<'_>> =
        names.iter().map(|n| lb_common::maglev::MaglevBackend { name: n.as_bytes(), weight: 1 }).collect();
    let maglev = lb_common::maglev::build_table(&input, MAGLEV_SIZE).expect("maglev");
    ServiceEntry { backends, maglev: maglev.into(), ..ServiceEntry::default() }
}

/// NodePort 30007/TCP → one pod on another node (masqueraded); NodePort
/// 30053/UDP → one pod on this node; NodePort 30099/TCP → no endpoints.
fn tables() -> DataplaneTables {
    let mut t = DataplaneTables::default();
    let tcp = service("remote-tcp", Protocol::Tcp);
    let udp = service("local-udp", Protocol::Udp);
    let empty = service("no-endpoints", Protocol::Tcp);
    t.services.insert(tcp.clone(), entry(&[BackendAddr { ip: REMOTE_POD, port: 80 }]));
    t.services.insert(udp.clone(), entry(&[BackendAddr { ip: LOCAL_POD, port: 5353 }]));
    t.services.insert(empty.clone(), ServiceEntry::default());
    for (port, protocol, svc) in
        [(30007, Protocol::Tcp, tcp), (30053, Protocol::Udp, udp), (30099, Protocol::Tcp, empty)]
    {
        t.frontends.insert(FrontendAddr { ip: NODE_IP, port, protocol }, FrontendEntry { service: svc, snat: true });
    }
    t
}

struct Loaded {
    datapath: Datapath,
    applier: Applier,
    ifindex: u32,
}

fn settings() -> DataplaneSettings {
    DataplaneSettings { maglev_table_size: MAGLEV_SIZE, max_services: 16, ..Default::default() }
}

/// Loaded and attached with frames sent by XDP itself (`XDP_TX`, redirect).
fn load(net: &FixtureNet) -> Loaded {
    load_with(net, settings(), XdpTransmit::Xdp)
}

fn load_with(net: &FixtureNet, settings: DataplaneSettings, transmit: XdpTransmit) -> Loaded {
    let (mut datapath, maps, _) = Datapath::load(&settings, None).expect("load eBPF (root and BPF are required)");
    let mut applier = Applier::new(maps, MAGLEV_SIZE, 16);
    let uplink = net.uplink();
    datapath
        .attach(applier.maps_mut(), &uplink, XdpAttachMode::Driver, transmit, false)
        .expect("attach to the fixture uplink");
    applier.apply(&tables()).expect("apply tables");
    Loaded { datapath, applier, ifindex: uplink.ifindex }
}

/// Runs the XDP program once on `packet` as if it arrived on the uplink.
fn run_xdp(l: &mut Loaded, packet: &[u8]) -> (u32, Vec<u8>) {
    // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
    let ctx: Vec<u8> = [0, packet.len() as u32, 0, l.ifindex, 0, 0].iter().flat_map(|v| v.to_ne_bytes()).collect();
    let mut out = vec![0u8; 512];
    let result = l
        .datapath
        .xdp()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat: 1,
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN (xdp)");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

fn run_tc(l: &mut Loaded, packet: &[u8]) -> (u32, Vec<u8>) {
    run_classifier(l.datapath.tc_egress().unwrap(), packet)
}

fn run_tc_ingress(l: &mut Loaded, packet: &[u8]) -> (u32, Vec<u8>) {
    run_classifier(l.datapath.tc_ingress().unwrap(), packet)
}

fn run_classifier(program: &mut SchedClassifier, packet: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; 512];
    let result = program
        .test_run(TestRunOptions { data_in: Some(packet), data_out: Some(&mut out), repeat: 1, ..Default::default() })
        .expect("BPF_PROG_TEST_RUN (tc)");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

fn tcp(src_mac: [u8; 6], dst_mac: [u8; 6], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), ttl: u8, syn: bool) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.0.octets(), dst.0.octets(), ttl)
        .tcp(src.1, dst.1, 1000, 64240);
    let builder = if syn { builder.syn() } else { builder.ack(2000) };
    let payload: &[u8] = if syn { b"" } else { b"GET / HTTP/1.1\r\n\r\n" };
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    out
}

fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), ttl: u8) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.0.octets(), dst.0.octets(), ttl)
        .udp(src.1, dst.1)
        .write(&mut out, b"hello pods")
        .unwrap();
    out
}

/// The masquerade port the data path picks first for a client tuple.
fn expected_snat_port(client_port: u16, frontend_port: u16) -> u16 {
    let h = flow_hash(
        u32::from_ne_bytes(CLIENT.octets()),
        u32::from_ne_bytes(NODE_IP.octets()),
        client_port.to_be(),
        frontend_port.to_be(),
        6,
    );
    let start = h ^ (h >> 16);
    (61000 + start % (65535 - 61000 + 1)) as u16
}

fn counter(l: &Loaded, c: Counter) -> u64 {
    read_counters(l.applier.maps()).unwrap().get(c)
}

#[track_caller]
fn assert_frame(name: &str, (verdict, out): (u32, Vec<u8>), want_verdict: u32, want: &[u8]) {
    assert_eq!(verdict, want_verdict, "{name}: verdict");
    assert_eq!(hex(&out), hex(want), "{name}: output bytes");
}

fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| c.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn tcp_nodeport_syn_established_and_reply() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load(net);
        let cport = 40001;
        let snat = expected_snat_port(cport, 30007);

        // TCP SYN to a NodePort whose pod is on another node: DNAT + SNAT,
        // TTL - 1, MACs from the FIB, out of the same port.
        let syn = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, cport), (NODE_IP, 30007), 64, true);
        let want = tcp(NODE_MAC, PEER_MAC, (NODE_IP, snat), (REMOTE_POD, 80), 63, true);
        assert_frame("syn", run_xdp(&mut l, &syn), XDP_TX, &want);
        assert_eq!(counter(&l, Counter::FlowNew), 1);

        // Established flow: the conntrack entry translates the same way.
        let ack = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, cport), (NODE_IP, 30007), 64, false);
        let want = tcp(NODE_MAC, PEER_MAC, (NODE_IP, snat), (REMOTE_POD, 80), 63, false);
        assert_frame("established", run_xdp(&mut l, &ack), XDP_TX, &want);
        assert_eq!(counter(&l, Counter::FlowHit), 1);
        assert_eq!(counter(&l, Counter::FlowNew), 1, "no second flow");

        // The pod's reply comes back from the other node to the masquerade
        // port: reverse NAT to frontend → client, back to the client's MAC.
        let reply = tcp(PEER_MAC, NODE_MAC, (REMOTE_POD, 80), (NODE_IP, snat), 64, false);
        let want = tcp(NODE_MAC, CLIENT_MAC, (NODE_IP, 30007), (CLIENT, cport), 63, false);
        assert_frame("reply", run_xdp(&mut l, &reply), XDP_TX, &want);
    });
}

/// A pod whose endpoint turns terminating while another is ready: the
/// flow already open to it keeps going there (its backend stays in the
/// maps, flagged draining); new flows go to the ready pod.
#[test]
fn a_draining_backend_keeps_its_flows_and_gets_no_new_one() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load(net);
        let cport = 40011;
        let snat = expected_snat_port(cport, 30007);
        let syn = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, cport), (NODE_IP, 30007), 64, true);
        assert_eq!(run_xdp(&mut l, &syn).0, XDP_TX);

        let mut draining = tables();
        let view = service("remote-tcp", Protocol::Tcp);
        let mut moved = entry(&[BackendAddr { ip: LOCAL_POD, port: 80 }]);
        moved.draining = vec![BackendAddr { ip: REMOTE_POD, port: 80 }];
        draining.services.insert(view, moved);
        l.applier.apply(&draining).expect("apply the draining tables");

        let ack = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, cport), (NODE_IP, 30007), 64, false);
        let want = tcp(NODE_MAC, PEER_MAC, (NODE_IP, snat), (REMOTE_POD, 80), 63, false);
        assert_frame("open flow to the draining pod", run_xdp(&mut l, &ack), XDP_TX, &want);
        assert_eq!(counter(&l, Counter::FlowBackendGone), 0, "the flow kept its backend");
        // A new flow: the ready pod on this node (DNAT only, into the stack).
        let fresh = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, cport + 1), (NODE_IP, 30007), 64, true);
        let want = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, cport + 1), (LOCAL_POD, 80), 64, true);
        assert_frame("new flow to the ready pod", run_xdp(&mut l, &fresh), XDP_PASS, &want);
    });
}

/// `--xdp-transmit tc` (the default on a veth): the same translation, but
/// the frame is passed with a note for `lb_tc_ingress` instead of being
/// sent by XDP, and its L4 checksum is left for TC, which can tell a
/// partial checksum from a complete one. The note goes in the frame's
/// metadata where the kernel allows it (`BPF_PROG_TEST_RUN` hands the
/// metadata back in front of the frame), else in the `HANDOFFS` map with
/// the frame marked; both ways are run where the kernel has both.
#[test]
fn frames_are_handed_to_tc_on_a_veth() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut ways = vec![HandoffTransport::Map];
        let l = load_with(net, settings(), XdpTransmit::Auto);
        if l.datapath.handoff_in_metadata() {
            ways.push(HandoffTransport::Metadata);
        }
        drop(l);
        for way in ways {
            handed_to_tc(net, way);
        }
    });
}

fn handed_to_tc(net: &FixtureNet, way: HandoffTransport) {
    let mut l = load_with(net, DataplaneSettings { handoff: way, ..settings() }, XdpTransmit::Auto);
    assert_eq!(l.datapath.handoff_in_metadata(), way == HandoffTransport::Metadata);
    let cport = 40011;
    let snat = expected_snat_port(cport, 30007);

    let syn = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, cport), (NODE_IP, 30007), 64, true);
    let want = tcp(NODE_MAC, PEER_MAC, (NODE_IP, snat), (REMOTE_POD, 80), 63, true);
    let ifindex = l.ifindex;
    assert_handed_off(&format!("{way:?} syn"), &mut l, &syn, &want, ifindex, TCP_CHECK);
    assert_eq!(counter(&l, Counter::XdpHandoff), 1);
    assert_eq!(counter(&l, Counter::Tx), 0, "nothing sent by XDP");

    let reply = tcp(PEER_MAC, NODE_MAC, (REMOTE_POD, 80), (NODE_IP, snat), 64, false);
    let want = tcp(NODE_MAC, CLIENT_MAC, (NODE_IP, 30007), (CLIENT, cport), 63, false);
    assert_handed_off(&format!("{way:?} reply"), &mut l, &reply, &want, ifindex, TCP_CHECK);

    // A local pod: into the stack (ifindex 0) once TC fixed the checksum.
    let local = udp(CLIENT_MAC, NODE_MAC, (CLIENT, 5000), (NODE_IP, 30053), 64);
    let want = udp(CLIENT_MAC, NODE_MAC, (CLIENT, 5000), (LOCAL_POD, 5353), 64);
    assert_handed_off(&format!("{way:?} local udp"), &mut l, &local, &want, 0, UDP_CHECK);
    assert_eq!(counter(&l, Counter::XdpHandoff), 3);

    // TC ingress lets frames without a note through untouched, also one
    // marked by someone else.
    let before = counter(&l, Counter::TcHandoff);
    let (verdict, out) = run_tc_ingress(&mut l, &syn);
    assert_eq!((verdict, out), (TC_ACT_OK, syn.clone()));
    let foreign = with_handed_off_flag(&syn);
    let (verdict, out) = run_tc_ingress(&mut l, &foreign);
    assert_eq!((verdict, out), (TC_ACT_OK, foreign));
    assert_eq!(counter(&l, Counter::TcHandoff), before);
}

/// `frame` with the reserved IPv4 flag set and its IPv4 checksum to match.
fn with_handed_off_flag(frame: &[u8]) -> Vec<u8> {
    let mut marked = frame.to_vec();
    marked[14 + 6] |= 0x80;
    marked[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let header = &marked[14..34];
    let mut sum: u32 = header.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    marked[14 + 10..14 + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    marked
}

const TCP_CHECK: usize = 14 + 20 + 16;
const UDP_CHECK: usize = 14 + 20 + 6;

/// `lb_common::Handoff` as the test reads it back from the metadata.
#[derive(Debug)]
struct Note {
    magic: u32,
    ifindex: u32,
    pseudo_diff: u32,
    ports_diff: u32,
    check_off: u16,
    udp: u8,
}

const NOTE_LEN: usize = 20;

impl Note {
    fn read(b: &[u8]) -> Note {
        let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
        let note = Note {
            magic: u32_at(0),
            ifindex: u32_at(4),
            pseudo_diff: u32_at(8),
            ports_diff: u32_at(12),
            check_off: u16::from_ne_bytes([b[16], b[17]]),
            udp: b[18],
        };
        assert_eq!(note.magic, HANDOFF_MAGIC, "the frame starts with a note: {note:?}");
        note
    }
}

/// What `bpf_l4_csum_replace` with size 0 does to a complete checksum:
/// `csum_fold(csum_add(diff, ~csum_unfold(check)))`.
fn apply_diff(check: u16, diff: u32) -> u16 {
    let mut sum = u64::from(diff) + u64::from(!u32::from(check));
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// XDP on `sent` passes `want` with the L4 checksum still the one `sent`
/// carried, and a note for `ifindex` whose differences turn it into
/// `want`'s: in the metadata (read back here) or in `HANDOFFS` (the frame
/// marked, and TC run on it).
#[track_caller]
fn assert_handed_off(name: &str, l: &mut Loaded, sent: &[u8], want: &[u8], ifindex: u32, check: usize) {
    let (verdict, out) = run_xdp(l, sent);
    assert_eq!(verdict, XDP_PASS, "{name}: verdict");
    let udp = u8::from(check == UDP_CHECK);
    let mut untouched_l4 = want.to_vec();
    untouched_l4[check..check + 2].copy_from_slice(&sent[check..check + 2]);
    if !l.datapath.handoff_in_metadata() {
        // The frame, marked; TC finds its note, clears the mark, fixes the
        // checksum and sends the frame on.
        assert_eq!(
            hex(&out),
            hex(&with_handed_off_flag(&untouched_l4)),
            "{name}: marked frame (L4 checksum left for TC)"
        );
        let (verdict, finished) = run_tc_ingress(l, &out);
        let sent_on = if ifindex == 0 { TC_ACT_OK } else { TC_ACT_REDIRECT };
        assert_eq!(verdict, sent_on, "{name}: TC verdict");
        assert_eq!(hex(&finished), hex(want), "{name}: the frame TC finished");
        return;
    }
    let note = Note::read(&out);
    assert_eq!((note.ifindex, usize::from(note.check_off), note.udp), (ifindex, check, udp), "{name}: {note:?}");
    let frame = &out[NOTE_LEN..];
    assert_eq!(hex(frame), hex(&untouched_l4), "{name}: frame bytes (L4 checksum left for TC)");
    let sent_check = u16::from_ne_bytes([sent[check], sent[check + 1]]);
    let fixed = apply_diff(apply_diff(sent_check, note.pseudo_diff), note.ports_diff);
    assert_eq!(fixed, u16::from_ne_bytes([want[check], want[check + 1]]), "{name}: checksum after TC's fix");
}

#[test]
fn udp_to_local_pod_and_tc_reverse_nat() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load(net);
        // UDP to a NodePort whose pod is on this node: DNAT only (client
        // address kept), handed to the kernel to forward (TTL untouched).
        let query = udp(CLIENT_MAC, NODE_MAC, (CLIENT, 5000), (NODE_IP, 30053), 64);
        let want = udp(CLIENT_MAC, NODE_MAC, (CLIENT, 5000), (LOCAL_POD, 5353), 64);
        assert_frame("udp to local pod", run_xdp(&mut l, &query), XDP_PASS, &want);
        assert_eq!(counter(&l, Counter::PassLocal), 1);

        // The pod's answer leaves through the uplink: TC egress gives it the
        // frontend's address and port.
        let answer = udp(NODE_MAC, CLIENT_MAC, (LOCAL_POD, 5353), (CLIENT, 5000), 63);
        let want = udp(NODE_MAC, CLIENT_MAC, (NODE_IP, 30053), (CLIENT, 5000), 63);
        assert_frame("tc reverse nat", run_tc(&mut l, &answer), TC_ACT_OK, &want);
        assert_eq!(counter(&l, Counter::TcReplyNat), 1);

        // Unrelated egress traffic is left alone.
        let other = udp(NODE_MAC, CLIENT_MAC, (NODE_IP, 5353), (CLIENT, 5001), 64);
        assert_frame("tc other", run_tc(&mut l, &other), TC_ACT_OK, &other);
    });
}

#[test]
fn no_endpoints_answers_icmp_port_unreachable() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load(net);
        let syn = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, 40002), (NODE_IP, 30099), 64, true);
        // ICMP payload: the original IPv4 header and the first 8 TCP bytes.
        let quoted = &syn[14..14 + 28];
        let mut want = Vec::new();
        PacketBuilder::ethernet2(NODE_MAC, CLIENT_MAC)
            .ipv4(NODE_IP.octets(), CLIENT.octets(), 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port))
            .write(&mut want, quoted)
            .unwrap();
        assert_frame("reject", run_xdp(&mut l, &syn), XDP_TX, &want);
        assert_eq!(counter(&l, Counter::RejectNoBackend), 1);
        assert_eq!(counter(&l, Counter::FlowNew), 0, "a rejected flow is not tracked");
    });
}

#[test]
fn packets_that_are_not_ours_pass_untouched() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load(net);
        let syn = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, 40003), (NODE_IP, 30007), 64, true);

        let mut cases: Vec<(&str, Vec<u8>, Counter)> = Vec::new();
        // Not a frontend (ssh to the node).
        cases.push((
            "non-frontend",
            tcp(CLIENT_MAC, NODE_MAC, (CLIENT, 40003), (NODE_IP, 22), 64, true),
            Counter::PassNotService,
        ));
        // Truncated: the TCP header is cut after 10 bytes.
        cases.push(("truncated tcp", syn[..14 + 20 + 10].to_vec(), Counter::PassTruncated));
        // Truncated: IPv4 total length claims more than the frame holds.
        let mut long = syn.clone();
        long[16..18].copy_from_slice(&200u16.to_be_bytes());
        cases.push(("tot_len beyond frame", long, Counter::PassTruncated));
        // Truncated: Ethernet header only.
        cases.push(("ethernet only", syn[..14].to_vec(), Counter::PassTruncated));
        // IPv4 options (ihl = 6, a NOP option word inserted).
        let mut opts = syn[..34].to_vec();
        opts[14] = 0x46;
        opts[16..18].copy_from_slice(&((syn.len() - 14 + 4) as u16).to_be_bytes());
        opts.extend_from_slice(&[1, 1, 1, 0]);
        opts.extend_from_slice(&syn[34..]);
        cases.push(("ip options", opts, Counter::PassIpOptions));
        // Fragments: more-fragments set; and a later fragment (offset ≠ 0).
        let mut first = syn.clone();
        first[20] |= 0x20;
        cases.push(("first fragment", first, Counter::PassFragment));
        let mut later = syn.clone();
        later[20] = 0x00;
        later[21] = 0x10;
        cases.push(("later fragment", later, Counter::PassFragment));
        // Not IPv4: ARP, IPv6.
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&CLIENT_MAC);
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&CLIENT_MAC);
        arp.extend_from_slice(&CLIENT.octets());
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&NODE_IP.octets());
        cases.push(("arp", arp, Counter::PassNotIpv4));
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40003, 30007, 1, 100)
            .syn()
            .write(&mut v6, b"")
            .unwrap();
        cases.push(("ipv6", v6, Counter::PassNotIpv4));
        // ICMP to a node address (ping) is not service traffic.
        let mut ping = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
            .ipv4(CLIENT.octets(), NODE_IP.octets(), 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut ping, b"ping")
            .unwrap();
        cases.push(("icmp echo", ping, Counter::PassNotService));

        let mut failures = Vec::new();
        for (name, packet, reason) in cases {
            let before = counter(&l, reason);
            let (verdict, out) = run_xdp(&mut l, &packet);
            if verdict != XDP_PASS || out != packet {
                failures.push(format!("{name}: verdict {verdict}, output changed: {}", out != packet));
            }
            if counter(&l, reason) != before + 1 {
                failures.push(format!("{name}: counter {} not incremented", reason.name()));
            }
        }
        assert_eq!(counter(&l, Counter::FlowNew), 0, "no flow created");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}

#[test]
fn maglev_choice_in_kernel_matches_userspace_and_removed_backend_moves() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load(net);
        let pods: Vec<BackendAddr> =
            (10..13).map(|i| BackendAddr { ip: Ipv4Addr::new(10, 244, 2, i), port: 80 }).collect();
        let mut t = tables();
        let name = service("remote-tcp", Protocol::Tcp);
        t.services.insert(name.clone(), entry(&pods));
        l.applier.apply(&t).unwrap();

        let row = t.services[&name].clone();
        let mut chosen = Vec::new();
        for cport in 41000..41060u16 {
            let syn = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, cport), (NODE_IP, 30007), 64, true);
            let (verdict, out) = run_xdp(&mut l, &syn);
            assert_eq!(verdict, XDP_TX);
            let dst = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
            let h = flow_hash(
                u32::from_ne_bytes(CLIENT.octets()),
                u32::from_ne_bytes(NODE_IP.octets()),
                cport.to_be(),
                30007u16.to_be(),
                6,
            );
            let want = row.backends[row.maglev[(h % MAGLEV_SIZE) as usize] as usize].ip;
            assert_eq!(dst, want, "client port {cport}: kernel and userspace Maglev disagree");
            chosen.push((cport, dst));
        }
        let used: std::collections::BTreeSet<_> = chosen.iter().map(|(_, d)| *d).collect();
        assert_eq!(used.len(), 3, "60 flows should use all three pods");

        // Remove one pod: its flows move to the others, the rest stay put.
        let removed = pods[0].ip;
        t.services.insert(name.clone(), entry(&pods[1..]));
        l.applier.apply(&t).unwrap();
        for (cport, before) in &chosen {
            let ack = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, *cport), (NODE_IP, 30007), 64, false);
            let (_, out) = run_xdp(&mut l, &ack);
            let now = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
            if *before == removed {
                assert_ne!(now, removed, "flow {cport} still goes to the removed pod");
            } else {
                assert_eq!(now, *before, "flow {cport} moved although its pod stayed");
            }
        }
        let moved = chosen.iter().filter(|(_, d)| *d == removed).count() as u64;
        assert_eq!(counter(&l, Counter::FlowBackendGone), moved);
    });
}

#[test]
fn a_masquerade_port_that_is_a_nodeport_is_skipped() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        // 30007 is the NodePort itself: the pod's replies to it would be
        // taken for new client flows, so only 30008 may be used.
        let settings = DataplaneSettings {
            maglev_table_size: MAGLEV_SIZE,
            max_services: 16,
            snat_ports: PortRange { min: 30007, max: 30008 },
            ..Default::default()
        };
        let mut l = load_with(net, settings, XdpTransmit::Xdp);
        for cport in [40001, 40002, 40003, 40004] {
            let syn = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, cport), (NODE_IP, 30007), 64, true);
            let (verdict, out) = run_xdp(&mut l, &syn);
            let src_port = u16::from_be_bytes([out[34], out[35]]);
            if verdict == XDP_TX {
                assert_eq!(src_port, 30008, "client port {cport} was masqueraded to {src_port}");
            } else {
                // 30008 is already held by an earlier flow to the same pod.
                assert_eq!(counter(&l, Counter::DropSnatExhausted), u64::from(cport - 40001));
            }
        }
        assert_eq!(counter(&l, Counter::FlowNew), 1, "one flow got 30008, the others found no port");
        assert_eq!(counter(&l, Counter::DropSnatExhausted), 3);
    });
}

#[test]
fn client_ip_affinity_keeps_a_client_on_one_backend() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load(net);
        let pods: Vec<BackendAddr> =
            (10..14).map(|i| BackendAddr { ip: Ipv4Addr::new(10, 244, 2, i), port: 80 }).collect();
        let mut t = tables();
        let name = service("remote-tcp", Protocol::Tcp);
        t.services.insert(name.clone(), ServiceEntry { affinity_timeout_s: 60, ..entry(&pods) });
        l.applier.apply(&t).unwrap();
        let backend_of = |l: &mut Loaded, client: Ipv4Addr, cport: u16| {
            let syn = tcp(CLIENT_MAC, NODE_MAC, (client, cport), (NODE_IP, 30007), 64, true);
            let (verdict, out) = run_xdp(l, &syn);
            assert_eq!(verdict, XDP_TX);
            Ipv4Addr::new(out[30], out[31], out[32], out[33])
        };
        // Every new flow of one client goes to its first flow's backend.
        let first = backend_of(&mut l, CLIENT, 42000);
        for cport in 42001..42040 {
            assert_eq!(backend_of(&mut l, CLIENT, cport), first, "client port {cport}");
        }
        // Other clients are spread as usual (their own first choice sticks).
        let others: std::collections::BTreeSet<Ipv4Addr> =
            (20..60).map(|i| backend_of(&mut l, Ipv4Addr::new(192, 168, 1, i), 42000)).collect();
        assert!(others.len() >= 3, "40 clients used only {others:?}");
        // The backend goes away: the client moves, and sticks to the new one.
        let remaining: Vec<BackendAddr> = pods.iter().filter(|p| p.ip != first).copied().collect();
        t.services.insert(name.clone(), ServiceEntry { affinity_timeout_s: 60, ..entry(&remaining) });
        l.applier.apply(&t).unwrap();
        let moved = backend_of(&mut l, CLIENT, 43000);
        assert_ne!(moved, first);
        for cport in 43001..43010 {
            assert_eq!(backend_of(&mut l, CLIENT, cport), moved, "client port {cport} after the move");
        }
        // Without affinity the same client is spread over the backends.
        t.services.insert(name, entry(&remaining));
        l.applier.apply(&t).unwrap();
        let spread: std::collections::BTreeSet<Ipv4Addr> =
            (44000..44040).map(|cport| backend_of(&mut l, CLIENT, cport)).collect();
        assert!(spread.len() >= 2, "40 flows without affinity used only {spread:?}");
    });
}

#[test]
fn a_local_policy_without_local_endpoints_drops_instead_of_rejecting() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load(net);
        let mut t = tables();
        let empty = service("no-endpoints", Protocol::Tcp);
        t.services.insert(empty, ServiceEntry { drop_when_empty: true, ..ServiceEntry::default() });
        l.applier.apply(&t).unwrap();
        let syn = tcp(CLIENT_MAC, NODE_MAC, (CLIENT, 40000), (NODE_IP, 30099), 64, true);
        let (verdict, _) = run_xdp(&mut l, &syn);
        const XDP_DROP: u32 = 1;
        assert_eq!(verdict, XDP_DROP, "dropped, not answered with ICMP");
        assert_eq!(counter(&l, Counter::DropNoLocalBackend), 1);
        assert_eq!(counter(&l, Counter::RejectNoBackend), 0);
    });
}
