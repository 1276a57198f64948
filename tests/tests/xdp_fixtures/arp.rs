//! The ARP responder: a request for an announced address becomes the exact
//! reply; anything else passes untouched; a stale heartbeat silences it;
//! on uplinks TC finishes, TC ingress answers.

use std::collections::BTreeMap;
use std::time::Duration;

use lb_common::{AgentState, L2Vip, L2VipKey, addr_to_map};

use super::*;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 150);
const NOT_OURS: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 151);
const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet frame with an ARP packet (padded to the 60-byte minimum as
/// on the wire).
fn arp(eth: ([u8; 6], [u8; 6]), oper: u8, sender: ([u8; 6], Ipv4Addr), target: ([u8; 6], Ipv4Addr)) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&eth.1);
    f.extend_from_slice(&eth.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, oper]);
    f.extend_from_slice(&sender.0);
    f.extend_from_slice(&sender.1.octets());
    f.extend_from_slice(&target.0);
    f.extend_from_slice(&target.1.octets());
    f.resize(60, 0);
    f
}

fn request(target: Ipv4Addr) -> Vec<u8> {
    arp((CLIENT_MAC, BROADCAST), 1, (CLIENT_MAC, CLIENT), ([0; 6], target))
}

/// Announces `VIP` on the uplink and beats.
fn announce(l: &mut Loaded) {
    let key = L2VipKey { ifindex: l.ifindex, addr: addr_to_map(VIP) };
    let maps = l.applier.maps_mut();
    maps.set_l2_vips(&BTreeMap::from([(key, L2Vip { mac: NODE_MAC, _pad: [0; 2] })])).unwrap();
    maps.heartbeat(Duration::from_secs(15)).unwrap();
}

#[test]
fn an_arp_request_for_an_announced_address_becomes_its_reply() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load(net);
        // Not announced yet: the kernel's.
        let asked = request(VIP);
        assert_frame("before announcing", run_xdp(&mut l, &asked), XDP_PASS, &asked);
        announce(&mut l);
        let want = arp((NODE_MAC, CLIENT_MAC), 2, (NODE_MAC, VIP), (CLIENT_MAC, CLIENT));
        assert_frame("reply", run_xdp(&mut l, &asked), XDP_TX, &want);
        // An RFC 5227 probe (sender address 0) is answered too, as Linux does.
        let probe = arp((CLIENT_MAC, BROADCAST), 1, (CLIENT_MAC, Ipv4Addr::UNSPECIFIED), ([0; 6], VIP));
        let want_probe = arp((NODE_MAC, CLIENT_MAC), 2, (NODE_MAC, VIP), (CLIENT_MAC, Ipv4Addr::UNSPECIFIED));
        assert_frame("probe", run_xdp(&mut l, &probe), XDP_TX, &want_probe);
        assert_eq!(counter(&l, Counter::ArpReply), 2);

        let mut untouched: Vec<(&str, Vec<u8>)> = vec![
            ("another address", request(NOT_OURS)),
            ("a reply", arp((CLIENT_MAC, NODE_MAC), 2, (CLIENT_MAC, CLIENT), (NODE_MAC, VIP))),
            ("gratuitous", arp((CLIENT_MAC, BROADCAST), 1, (CLIENT_MAC, VIP), ([0; 6], VIP))),
            ("cut short", asked[..41].to_vec()),
            ("ethernet only", asked[..14].to_vec()),
        ];
        let mut odd = |name, at: usize, value: u8| {
            let mut frame = asked.clone();
            frame[at] = value;
            untouched.push((name, frame));
        };
        odd("hardware type 6", 15, 6);
        odd("protocol type IPv6", 16, 0x86);
        odd("hardware length 8", 18, 8);
        odd("protocol length 16", 19, 16);
        odd("opcode 3 (RARP)", 21, 3);
        for (name, frame) in untouched {
            assert_frame(name, run_xdp(&mut l, &frame), XDP_PASS, &frame);
        }
        // On another interface (lo) the address is not announced.
        let other = Loaded { ifindex: 1, ..l };
        let mut l = other;
        assert_frame("other uplink", run_xdp(&mut l, &asked), XDP_PASS, &asked);
        assert_eq!(counter(&l, Counter::ArpReply), 2);
    });
}

#[test]
fn a_stale_heartbeat_silences_the_responder() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load(net);
        announce(&mut l);
        let asked = request(VIP);
        assert_eq!(run_xdp(&mut l, &asked).0, XDP_TX);
        // The last beat 1 ns after boot: long older than the lease.
        l.applier.maps_mut().agent_state.set(AgentState::HeartbeatNs as u32, 1, 0).unwrap();
        assert_frame("stale", run_xdp(&mut l, &asked), XDP_PASS, &asked);
        assert_eq!(counter(&l, Counter::ArpAgentStale), 1);
        // Beating again brings it back.
        l.applier.maps_mut().heartbeat(Duration::from_secs(15)).unwrap();
        assert_eq!(run_xdp(&mut l, &asked).0, XDP_TX);
    });
}

#[test]
fn on_an_uplink_tc_finishes_tc_ingress_answers() {
    let net = FixtureNet::create().expect("fixture namespace");
    net.run(|net| {
        let mut l = load_with(net, settings(), XdpTransmit::Auto);
        announce(&mut l);
        let asked = request(VIP);
        assert_frame("xdp leaves it to tc", run_xdp(&mut l, &asked), XDP_PASS, &asked);
        let want = arp((NODE_MAC, CLIENT_MAC), 2, (NODE_MAC, VIP), (CLIENT_MAC, CLIENT));
        assert_frame("tc reply", tc_ingress_on_uplink(&mut l, &asked), TC_ACT_REDIRECT, &want);
        let other = request(NOT_OURS);
        assert_frame("tc other address", tc_ingress_on_uplink(&mut l, &other), TC_ACT_OK, &other);
        assert_eq!(counter(&l, Counter::ArpReply), 1);
    });
}

/// Runs TC ingress on `frame` as received on the uplink (`struct
/// __sk_buff` up to `ifindex`, at offset 40, set: the device the skb is on).
fn tc_ingress_on_uplink(l: &mut Loaded, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut ctx = vec![0u8; 44];
    ctx[40..44].copy_from_slice(&l.ifindex.to_ne_bytes());
    let mut out = vec![0u8; 512];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        repeat: 1,
        ..Default::default()
    };
    let result = l.datapath.tc_ingress().unwrap().test_run(options).expect("BPF_PROG_TEST_RUN (tc ingress)");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}
