//! What the ClusterIP report says besides the figures: every parameter and
//! the caveats a reader needs.

use super::params::Params;
use super::results::Results;
use crate::Report;

pub fn params_json(params: &Params) -> serde_json::Value {
    let mut v = serde_json::to_value(params).unwrap_or_default();
    let extra = serde_json::json!({
        "topology": "client pod 10.244.1.20 on node1 (no Service's endpoint) → node1's cni0 → pods \
                     10.244.1.10/.11 on node1's cni0, and over node1's eth0 and the LAN → node2 (plain \
                     routing) → pods 10.244.2.10/.11",
        "uplink_queues": "one rx/tx queue per CPU on each node's eth0 and its LAN-side peer (ethtool -L), as RSS",
        "measured_service": "ClusterIP 10.100.0.10:80/TCP → targetPort 8080, internalTrafficPolicy Cluster, \
                             endpoints: the four pods",
        "background_services": "ClusterIP + one external IP, TCP port 80, 2 endpoints each, carrying no traffic",
        "lb_flags": format!(
            "run --manifests DIR --interface eth0 --cgroup-root NODE1_PODS_CGROUP --node-name node1 \
             --max-services max(1024, services + 64) --maglev-table-size {} --log-level warn",
            params.maglev_table_size
        ),
        "kube_proxy_layout": "bench/src/kube_proxy, full sync, in node1's namespace: nat PREROUTING/OUTPUT → \
                              KUBE-SERVICES (iptables) / nat-prerouting, nat-output → services with the \
                              service-ips verdict map (nftables); the Service's chain marks sources outside \
                              --cluster-cidr 10.244.0.0/16 for masquerade, picks an endpoint at random and DNATs",
        "lb_subjects": "lb: the defaults (native XDP on the uplink eth0, socket programs on node1's pods' cgroup). \
                        lb generic XDP: --xdp-mode skb, the same otherwise",
        "direct": "no lb, no rules: the generator's connections go round-robin to the four pods' own addresses",
        "generator": "threads of lb-bench whose sockets live in the client pod's namespace; lb-bench joins \
                      node1's pods' cgroup (cgroup.procs) for each subject's probe and measurements and \
                      leaves it afterwards, for every subject alike",
        "pods": "the bench's own TCP echo servers, threads of lb-bench whose sockets live in the pods' \
                 namespaces",
        "cps_method": "cps_threads threads, each: connect, 64-byte request, read the echo, close (client closes \
                       first; tcp_tw_reuse=1 in the client pod)",
        "rr_method": "rr_threads threads, each cycling over rr_connections_per_thread open connections, one \
                      64-byte request at a time (closed loop); every round trip timed",
        "cpu_method": "cpu_threads threads opening short connections at cpu_rate_cps in total; CPU time of \
                       lb-bench (all threads: generator, echo servers and the softirq work they carry), \
                       ksoftirqd/* and the lb process over the run, divided by completed connections",
    });
    if let (Some(map), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        map.extend(extra);
    }
    v
}

pub fn add(report: &mut Report, params: &Params, results: &Results) {
    report.note(
        "East-west: the generator runs in a pod on node1 (a pod that is no endpoint, so no connection is a \
         hairpin to itself) and connects to a ClusterIP whose four endpoints are two pods on node1 and two on \
         node2. lb rewrites the connect() in the pod's cgroup (connect4): the socket is connected straight to \
         a pod, no packet is translated and node1 keeps no conntrack entry. kube-proxy's layouts DNAT the \
         first packet of each connection in node1's PREROUTING, and conntrack translates every later packet \
         both ways. The direct baseline connects to the pods' own addresses with nothing installed: what the \
         same generator, pods and routing give without any Service.",
    );
    report.note(
        "One machine runs the generator, both nodes and the pods: every figure is the whole bed's, and the \
         subjects differ only in node1's work (and lb's connect hook in the generator's own connect() call). \
         Extras direct_to_pods and over_direct give the baseline's figure and each subject's ratio to it.",
    );
    report.note(
        "Both lb subjects balance at the socket alike; they differ in the XDP program lb always attaches to the \
         uplink for NodePort and external traffic, which every frame arriving on node1's eth0 passes (here the \
         replies of node2's pods). On a veth, native XDP (lb's default) moves the receiving side from the \
         backlog queue to the veth's own NAPI ring and turns each skb into an XDP buffer and back; generic XDP \
         runs the program on the skb as it is. The difference between the two is that, not socket balancing.",
    );
    report.note(format!(
        "CPU per connection: {} threads open short connections at {:.0} connections/s in total (below every \
         subject's limit; completed_cps in extras), and the CPU time of lb-bench (generator, echo servers and \
         the softirq work they carry), ksoftirqd/* and the lb agent over the run is divided by the completed \
         connections (the kernel's exact run time of those tasks; /proc/stat's tick-sampled busy time misses \
         most of these short bursts, so no machine-wide figure is given). lb_agent_us is the agent's own \
         process's share.",
        params.cpu_threads, params.cpu_rate_cps
    ));
    report.note(format!(
        "services = N means N idle background Services (ClusterIP + external IP, each two rules plus chains in \
         kube-proxy's layouts and two frontends in lb's maps) plus the measured one, which comes last: \
         kube-proxy's iptables layout walks KUBE-SERVICES rule by rule for every new connection, its nftables \
         layout looks the destination up in one verdict map, lb looks it up in one hash map. lb runs with \
         --maglev-table-size {} (see the NodePort notes).",
        params.maglev_table_size
    ));
    let troubles = results.troubles();
    if !troubles.is_empty() {
        report.note(format!(
            "Seen in this run: {}. A short connection whose SYN is lost fails after the client's 1 s connect \
             timeout, so each failure costs its thread a second of the run and lowers tcp_cps.",
            troubles.join("; ")
        ));
    }
}
