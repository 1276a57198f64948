//! What the report says besides the figures: every parameter, and the
//! caveats a reader needs (method, generator, table size, failures seen).

use super::params::Params;
use super::results::Results;
use super::subject;
use crate::Report;

pub fn params_json(params: &Params) -> serde_json::Value {
    let mut v = serde_json::to_value(params).unwrap_or_default();
    let extra = serde_json::json!({
        "topology": "client 192.168.1.2 → LAN bridge → node1 192.168.1.11 (the subject) → pods 10.244.1.10/.11 \
                     on node1's cni0, and over the LAN → node2 (plain routing) → pods 10.244.2.10/.11",
        "uplink_queues": "one rx/tx queue per CPU on each node's eth0 and its LAN-side peer (ethtool -L), as RSS",
        "measured_services": "two NodePort Services (TCP 31080 → :8080, UDP 31053 → :5353), \
                              externalTrafficPolicy Cluster, endpoints: the four pods",
        "background_services": "ClusterIP + one external IP, TCP port 80, 2 endpoints each, carrying no traffic",
        "lb_flags": format!(
            "run --manifests DIR --interface eth0 --max-services max(1024, services + 64) \
             --maglev-table-size {} --log-level warn",
            params.maglev_table_size
        ),
        "lb_subjects": "lb: the defaults (native XDP; translated frames finished by a TC ingress program, which \
                        fixes their L4 checksum and redirects the skb or lets it into the stack: --xdp-transmit \
                        auto on a veth; nothing on the LAN side). lb XDP_TX (peer XDP): --xdp-mode driver --xdp-transmit xdp, with an XDP_PASS program \
                        attached to the LAN side of both uplinks for this subject only (the path before the veth \
                        fix, which users cannot have). lb generic XDP: --xdp-mode skb",
        "kube_proxy_layout": "bench/src/kube_proxy (full sync, masquerade-all for NodePort traffic as kube-proxy does)",
        "udp_generator": "own: sendmmsg on one connected UDP socket per flow, flows spread over threads, \
                          unpaced; each run uses fresh source ports",
        "pods": "the bench's own UDP sinks (recvmmsg, counting) and TCP echo servers, threads of lb-bench \
                 whose sockets live in the pods' namespaces",
        "cpu_method": "paced generator at cpu_rate_pps; CPU time of lb-bench (all threads: generator, sinks, \
                       and the softirq work they carry), ksoftirqd/* and the lb process over the interval, \
                       divided by datagrams delivered",
        "rr_method": "rr_threads threads, each cycling over rr_connections_per_thread open connections, one \
                      64-byte request at a time (closed loop); every round trip timed",
        "cps_method": "cps_threads threads, each: connect, 64-byte request, read the echo, close (client closes \
                       first; tcp_tw_reuse=1 on the client)",
        "quiet_wait": "after starting and after stopping each subject, the bench waits (at most 120 s) until \
                       less than 15% of the machine's CPUs are busy for two consecutive half-second windows, so \
                       that nothing a start or teardown left running is measured (waits over 2 s are logged)",
    });
    if let (Some(map), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        map.extend(extra);
    }
    v
}

pub fn add(report: &mut Report, params: &Params, results: &Results) {
    report.note(
        "One machine runs the client, both nodes and the pods: the generator, the forwarding (softirq work runs \
         on the CPU of the sending thread) and the pods share the CPUs. Every figure is the whole bed's; subjects \
         differ only in node1's work, so differences between subjects are differences in node1's cost.",
    );
    report.note(format!(
        "UDP packet rate: an unpaced sendmmsg generator ({} threads × {} flows, {}-byte payloads); each \
         measurement records what it sent and what the pods received (extras). Because forwarding runs in the \
         sender's context, the sending rate falls as the per-packet cost of the path rises: the packet rate is \
         the bed's capacity for that path. The routed reference (client → pods' addresses, node1 only routes) \
         shows what the same generator and pods achieve without any Service translation (extra \
         routed_reference_pps; at {} services: {:.0} pps).",
        params.udp_threads,
        params.udp_flows_per_thread,
        params.udp_payload_bytes,
        params.service_counts[0],
        results.reference_pps(params.service_counts[0]).unwrap_or(f64::NAN)
    ));
    report.note(format!(
        "CPU per packet: at a fixed offered rate of {:.0} packets/s (below every subject's limit; loss in \
         extras), the CPU time of lb-bench's threads (generator, sinks and the softirq work they carry), \
         ksoftirqd/* and the lb agent over the interval, divided by the datagrams the pods received. The \
         machine-wide /proc/stat busy time per packet is in extra machine_wide_ns (it also counts other programs \
         running on the machine). The same figure for the routed reference is extra routed_reference_ns; \
         minus_routed_reference_ns is the Service translation's cost over plain routing — it can be negative for \
         lb, whose frames for pods on node2 skip node1's IP stack and netfilter altogether (sent by XDP_TX, or \
         by a TC redirect right after the skb is built).",
        params.cpu_rate_pps
    ));
    report.note(
        "Each node's uplink veth and its LAN-side peer get one queue per CPU (`ethtool -L`), as a NIC with RSS \
         has: a veth runs an XDP program in the NAPI context of the receive queue a frame lands in (by flow \
         hash), so with one queue all of lb's work on node1 would run on one CPU at a time and frames overflowing \
         its 256-frame ring would be dropped, while the kernel's own path (iptables, nftables) runs on every \
         sending CPU either way.",
    );
    report.note(format!(
        "lb runs with --maglev-table-size {} at every service count (default 16381): lb's Maglev array is \
         max-services × table size × 8 bytes, which with 10,000 Services and the default would be 1.3 GiB. \
         The per-packet cost does not depend on the table size (one array lookup). --max-services is \
         max(1024, services + 64).",
        params.maglev_table_size
    ));
    report.note(
        "services = N means N idle background Services (ClusterIP + external IP, each a frontend in lb's maps \
         and two rules plus chains in kube-proxy's layouts) plus the two measured NodePort Services. kube-proxy \
         evaluates its NAT rules only for a flow's first packet (conntrack does the rest), so the rule count shows \
         most in connections per second.",
    );
    let troubles = results.troubles();
    if troubles.is_empty() {
        return;
    }
    report.note(format!(
        "Seen in this run: {}. A short connection whose SYN is lost fails after the client's 1 s connect timeout \
         (where a real client would retransmit the SYN), so each failure costs its thread a second of the run and \
         lowers tcp_cps.",
        troubles.join("; ")
    ));
    // Every lb subject's name starts with OURS.
    if troubles.iter().any(|t| t.starts_with(subject::OURS) && t.contains("connections failed")) {
        report.note(
            "lb's failed short connections: a SYN lb drops because no masquerade port is free is counted as \
             `drop_snat_exhausted` in the per-CPU `COUNTERS` map (`bpftool map dump name COUNTERS`); lb runs \
             here with its default `--snat-port-range` (the widest range outside the node's \
             ip_local_port_range: 1024-32767 here); a frame lb could not hand from XDP to TC (a driver without XDP \
             metadata) is counted as `drop_handoff`.",
        );
    }
}
