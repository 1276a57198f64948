//! lb's data-path families, read from the maps at scrape time: packets
//! and bytes per service port (summed over CPUs and over the port's
//! views), the programs' verdicts by reason, the conntrack table's fill,
//! masquerade ports in use and the Maglev table size.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lb_common::Counter;
use lb_proxy::metrics::label_pairs;

use crate::dataplane::{ConntrackFill, CounterSnapshot};
use crate::inspect::model::ServiceReport;

/// One scrape's reading of the data path.
pub struct DataPathReading {
    pub services: Vec<ServiceReport>,
    pub counters: CounterSnapshot,
    pub conntrack: ConntrackFill,
    pub maglev_table_size: u32,
}

/// The families, in the Prometheus text format or OpenMetrics (without
/// `# EOF`).
pub fn encode(out: &mut String, reading: &DataPathReading, open_metrics: bool) {
    let mut traffic: BTreeMap<[&str; 4], (u64, u64)> = BTreeMap::new();
    for s in &reading.services {
        let sums = traffic.entry([&s.namespace, &s.name, &s.port, &s.protocol]).or_default();
        sums.0 += s.packets;
        sums.1 += s.bytes;
    }
    let counter = |out: &mut String, name: &str, help: &str| {
        let family = if open_metrics { name.strip_suffix("_total").unwrap_or(name) } else { name };
        let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
    };
    counter(out, "lb_service_packets_total", "Packets of a service port, both directions, through the data path");
    for ([namespace, service, port, protocol], (packets, _)) in &traffic {
        let labels = service_labels(namespace, service, port, protocol);
        let _ = writeln!(out, "lb_service_packets_total{{{labels}}} {packets}");
    }
    counter(out, "lb_service_bytes_total", "Bytes of a service port, both directions, through the data path");
    for ([namespace, service, port, protocol], (_, bytes)) in &traffic {
        let labels = service_labels(namespace, service, port, protocol);
        let _ = writeln!(out, "lb_service_bytes_total{{{labels}}} {bytes}");
    }
    counter(out, "lb_xdp_verdicts_total", "Packets and socket calls by what the data path did with them, and why");
    for counter in Counter::ALL {
        let _ =
            writeln!(out, "lb_xdp_verdicts_total{{reason=\"{}\"}} {}", counter.name(), reading.counters.get(counter));
    }
    let gauges: [(&str, &str, u64); 4] = [
        ("lb_conntrack_entries", "Conntrack entries in use (two per flow)", reading.conntrack.entries),
        ("lb_conntrack_capacity", "Conntrack entries the table holds", u64::from(reading.conntrack.capacity)),
        (
            "lb_masquerade_ports_in_use",
            "Flows masqueraded to the node address, each holding one of its source ports",
            reading.conntrack.masquerade_ports,
        ),
        ("lb_maglev_table_size", "Slots of each service port's Maglev row", u64::from(reading.maglev_table_size)),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
}

fn service_labels(namespace: &str, service: &str, port: &str, protocol: &str) -> String {
    label_pairs(&[("namespace", namespace), ("service", service), ("port", port), ("protocol", protocol)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_of_one_port_are_summed_and_every_reason_is_listed() {
        let view = |scope: &str, packets| ServiceReport {
            namespace: "shop".into(),
            name: "web".into(),
            port: "http".into(),
            protocol: "TCP".into(),
            scope: scope.into(),
            packets,
            bytes: packets * 100,
            ..ServiceReport::default()
        };
        let reading = DataPathReading {
            services: vec![view("cluster", 3), view("node", 4)],
            counters: CounterSnapshot(vec![(Counter::FlowNew, 7)]),
            conntrack: ConntrackFill { entries: 14, capacity: 1024, masquerade_ports: 2 },
            maglev_table_size: 16381,
        };
        let mut text = String::new();
        encode(&mut text, &reading, false);
        let labels = "namespace=\"shop\",service=\"web\",port=\"http\",protocol=\"TCP\"";
        assert!(text.contains(&format!("lb_service_packets_total{{{labels}}} 7\n")), "{text}");
        assert!(text.contains(&format!("lb_service_bytes_total{{{labels}}} 700\n")), "{text}");
        assert!(text.contains("# TYPE lb_service_packets_total counter\n"));
        assert!(text.contains("lb_xdp_verdicts_total{reason=\"flow_new\"} 7\n"));
        assert!(text.contains("lb_xdp_verdicts_total{reason=\"tx\"} 0\n"));
        assert!(
            text.contains("lb_conntrack_entries 14\nlb_conntrack_capacity 1024\n")
                || text.contains("lb_conntrack_capacity 1024\n")
        );
        assert!(text.contains("lb_masquerade_ports_in_use 2\n") && text.contains("lb_maglev_table_size 16381\n"));
        let mut open = String::new();
        encode(&mut open, &reading, true);
        assert!(open.contains("# TYPE lb_service_packets counter\n"), "{open}");
        assert!(open.contains(&format!("lb_service_packets_total{{{labels}}} 7\n")));
    }
}
