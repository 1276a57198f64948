//! The planner and the executor on [`FakeMaps`], which checks after every
//! write what the kernel programs rely on: write order, adoption of maps a
//! previous agent left, and recovery from a failed write.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use lb_common::{Backend, FrontendKey, SCOPE_SOCKET, SCOPE_XDP};

use crate::compile::test_support::{slice, snapshot};
use crate::compile::{CompileOptions, DataplaneTables, NodeContext, compile_l4};
use crate::dataplane::{Applier, FakeMaps};

const MAGLEV: u32 = 61;
const MAX_SERVICES: u32 = 8;

/// A NodePort Service `name` with cluster IP `10.96.0.<n>`, node port
/// `30000 + n` and one endpoint per address of `pods`.
fn service(name: &str, n: u8, pods: &[&str]) -> String {
    let endpoints: Vec<(&str, &str)> = pods.iter().map(|ip| (*ip, "")).collect();
    let slice = slice(&format!("{name}-1"), name, "[{port: 8080}]", &endpoints);
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: NodePort
  clusterIP: 10.96.0.{n}
  ports:
  - {{port: 80, targetPort: 8080, nodePort: {}}}
{slice}",
        30000 + u16::from(n)
    )
}

fn tables(services: &[String]) -> DataplaneTables {
    let node = NodeContext { name: "node-a".into(), addresses: vec![Ipv4Addr::new(192, 168, 1, 10)], ingress: None };
    let (tables, diagnostics) =
        compile_l4(&snapshot(&services.concat()), &node, &CompileOptions { maglev_table_size: MAGLEV });
    assert_eq!(diagnostics, []);
    tables
}

fn cluster_ip(n: u8) -> FrontendKey {
    FrontendKey::new(Ipv4Addr::new(10, 96, 0, n), 80, 6, SCOPE_SOCKET)
}

fn node_port(n: u8) -> FrontendKey {
    FrontendKey::new(Ipv4Addr::new(192, 168, 1, 10), 30000 + u16::from(n), 6, SCOPE_XDP)
}

fn pods(ips: &[&str]) -> Vec<Backend> {
    let mut out: Vec<Backend> = ips.iter().map(|ip| Backend::new(ip.parse().unwrap(), 8080)).collect();
    out.sort_by_key(|b| (b.addr, b.port));
    out
}

fn applier(maps: FakeMaps) -> Applier<FakeMaps> {
    Applier::new(maps, MAGLEV, MAX_SERVICES)
}

/// What each frontend of the maps reaches.
fn reachable(maps: &FakeMaps) -> BTreeMap<FrontendKey, Vec<Backend>> {
    maps.frontends.keys().map(|key| (*key, maps.reachable(key))).collect()
}

#[test]
fn a_first_apply_writes_in_an_order_the_programs_can_follow() {
    let mut lb = applier(FakeMaps::new(MAGLEV, MAX_SERVICES));
    let first = tables(&[service("web", 1, &["10.244.1.1", "10.244.2.1"]), service("dns", 2, &["10.244.1.2"])]);
    let report = lb.apply(&first).unwrap();
    assert_eq!(report.adopted.map(|a| a.services), Some(0));
    assert_eq!((report.backends_written, report.frontends_written, report.services_written), (3, 6, 2));
    // (cluster IP, node port from outside, node port from the node's own sockets) × 2
    let maps = lb.maps();
    assert_eq!(maps.reachable(&cluster_ip(1)), pods(&["10.244.1.1", "10.244.2.1"]));
    assert_eq!(maps.reachable(&node_port(1)), pods(&["10.244.1.1", "10.244.2.1"]));
    assert_eq!(maps.reachable(&cluster_ip(2)), pods(&["10.244.1.2"]));
    // The high-water mark comes first, frontends after every row.
    assert!(maps.writes[0].starts_with("high_water 3"), "{:?}", maps.writes);
    let last_row = maps.writes.iter().rposition(|w| w.starts_with("maglev")).unwrap();
    let first_frontend = maps.writes.iter().position(|w| w.starts_with("insert_frontend")).unwrap();
    assert!(last_row < first_frontend);

    // Changes: a pod replaced, a Service removed, one added.
    let second = tables(&[service("web", 1, &["10.244.1.1", "10.244.3.1"]), service("api", 3, &["10.244.1.3"])]);
    let report = lb.apply(&second).unwrap();
    assert_eq!(report.adopted, None);
    assert_eq!((report.services_deleted, report.backends_deleted), (1, 2));
    let maps = lb.maps();
    assert_eq!(maps.reachable(&cluster_ip(1)), pods(&["10.244.1.1", "10.244.3.1"]));
    assert_eq!(maps.reachable(&cluster_ip(3)), pods(&["10.244.1.3"]));
    assert!(!maps.frontends.contains_key(&cluster_ip(2)) && !maps.frontends.contains_key(&node_port(2)));
    assert_eq!(maps.backends.len(), 3);

    // The same tables again: nothing to write.
    let writes = lb.maps().writes.len();
    lb.apply(&second).unwrap();
    assert_eq!(lb.maps().writes.len(), writes);
}

#[test]
fn a_restarted_agent_adopts_the_maps_and_writes_nothing_that_is_right() {
    let running = tables(&[service("web", 1, &["10.244.1.1", "10.244.2.1"]), service("dns", 2, &["10.244.1.2"])]);
    let mut old = applier(FakeMaps::new(MAGLEV, MAX_SERVICES));
    old.apply(&running).unwrap();
    let mut pinned = old.maps().clone();
    pinned.writes.clear();
    let stats_before = pinned.stats_resets.clone();

    let mut new = applier(pinned);
    let report = new.apply(&running).unwrap();
    let adopted = report.adopted.clone().unwrap();
    assert_eq!((adopted.services, adopted.backends, adopted.orphan_services), (2, 3, 0));
    assert_eq!(new.maps().writes, Vec::<String>::new(), "{report:?}");
    assert_eq!(new.maps().stats_resets, stats_before, "counters of adopted services are kept");
    assert_eq!(reachable(new.maps()), reachable(old.maps()));
}

#[test]
fn a_restarted_agent_applies_what_changed_while_it_was_away() {
    let mut old = applier(FakeMaps::new(MAGLEV, MAX_SERVICES));
    old.apply(&tables(&[
        service("web", 1, &["10.244.1.1", "10.244.2.1"]),
        service("dns", 2, &["10.244.1.2"]),
        service("gone", 4, &["10.244.1.4"]),
    ]))
    .unwrap();
    let gone_backend = *old.maps().backends.keys().next_back().unwrap();

    let now = tables(&[service("web", 1, &["10.244.1.1", "10.244.3.1"]), service("api", 3, &["10.244.1.3"])]);
    let mut new = applier(old.maps().clone());
    let report = new.apply(&now).unwrap();
    assert_eq!(report.adopted.as_ref().map(|a| (a.services, a.orphan_services)), Some((1, 2)));
    let maps = new.maps();
    assert_eq!(maps.reachable(&cluster_ip(1)), pods(&["10.244.1.1", "10.244.3.1"]));
    assert_eq!(maps.reachable(&node_port(3)), pods(&["10.244.1.3"]));
    for n in [2, 4] {
        assert!(!maps.frontends.contains_key(&cluster_ip(n)) && !maps.frontends.contains_key(&node_port(n)));
    }
    assert_eq!(maps.backends.len(), 3, "{:?}", maps.backends);
    assert!(maps.services.values().filter(|s| s.backend_count > 0).count() == 2);
    // Backend ids are not reused after a restart: new ones are above all
    // that were ever handed out.
    let new_ids: Vec<u32> = maps.backends.keys().copied().filter(|id| !old.maps().backends.contains_key(id)).collect();
    assert!(!new_ids.is_empty() && new_ids.iter().all(|&id| id > gone_backend), "{new_ids:?} vs {gone_backend}");

    // And the adopted picture is right: the next apply writes nothing.
    let writes = new.maps().writes.len();
    new.apply(&now).unwrap();
    assert_eq!(new.maps().writes.len(), writes);
}

#[test]
fn after_a_failed_write_the_next_apply_starts_from_what_the_maps_hold() {
    let before = tables(&[service("web", 1, &["10.244.1.1", "10.244.2.1"]), service("dns", 2, &["10.244.1.2"])]);
    let after = tables(&[service("web", 1, &["10.244.1.1", "10.244.3.1"]), service("api", 3, &["10.244.1.3"])]);
    let mut reference = applier(FakeMaps::new(MAGLEV, MAX_SERVICES));
    reference.apply(&before).unwrap();
    let start = reference.maps().writes.len();
    reference.apply(&after).unwrap();
    let writes = reference.maps().writes.len() - start;
    assert!(writes > 10);
    for fail_at in 0..writes {
        let mut lb = applier(FakeMaps::new(MAGLEV, MAX_SERVICES));
        lb.apply(&before).unwrap();
        lb.maps_mut().fail_at = Some(lb.maps().writes.len() + fail_at);
        let error = lb.apply(&after).unwrap_err();
        assert!(format!("{error:#}").contains("injected failure"), "{error:#}");
        lb.maps_mut().fail_at = None;
        let report = lb.apply(&after).unwrap();
        assert!(report.adopted.is_some(), "write {fail_at}: the retry adopts");
        assert_eq!(reachable(lb.maps()), reachable(reference.maps()), "write {fail_at} failed");
        assert_eq!(lb.maps().backends.len(), reference.maps().backends.len(), "write {fail_at} failed");
    }
}

#[test]
fn service_ports_beyond_the_capacity_are_reported_and_left_out() {
    let many: Vec<String> =
        (1..=MAX_SERVICES as u8 + 2).map(|n| service(&format!("s{n}"), n, &["10.244.1.1"])).collect();
    let mut lb = applier(FakeMaps::new(MAGLEV, MAX_SERVICES));
    let report = lb.apply(&tables(&many)).unwrap();
    assert_eq!(report.services_over_capacity.len(), 2);
    assert_eq!(lb.maps().services.values().filter(|s| s.backend_count > 0).count(), MAX_SERVICES as usize);
}

/// `web` (cluster IP 10.96.0.1) with a ready pod 10.244.1.1 and 10.244.2.1
/// ready, or terminating (and serving), or gone.
fn web_with_second_pod(second: Option<&str>) -> String {
    let mut endpoints = vec![("10.244.1.1", "")];
    if let Some(conditions) = second {
        endpoints.push(("10.244.2.1", conditions));
    }
    let slice = slice("web-1", "web", "[{port: 8080}]", &endpoints);
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  clusterIP: 10.96.0.1
  ports:
  - {{port: 80, targetPort: 8080, nodePort: 30001}}
{slice}"
    )
}

#[test]
fn a_terminating_endpoint_keeps_its_backend_id_draining_until_it_is_gone() {
    const TERMINATING: &str = "\n  conditions: {ready: false, serving: true, terminating: true}";
    let id_of = |maps: &FakeMaps, ip: &str| {
        let want = Backend::new(ip.parse().unwrap(), 8080);
        maps.backends.iter().find(|(_, b)| (b.addr, b.port) == (want.addr, want.port)).map(|(id, b)| (*id, b.flags))
    };
    let mut lb = applier(FakeMaps::new(MAGLEV, MAX_SERVICES));
    lb.apply(&tables(&[web_with_second_pod(Some(""))])).unwrap();
    let (second, flags) = id_of(lb.maps(), "10.244.2.1").unwrap();
    assert_eq!(flags, 0);

    // Terminating while a ready pod remains: the same id, flagged; no row
    // names it, so new flows go to the ready pod only.
    let draining = tables(&[web_with_second_pod(Some(TERMINATING))]);
    let report = lb.apply(&draining).unwrap();
    assert_eq!(id_of(lb.maps(), "10.244.2.1"), Some((second, lb_common::BACKEND_DRAINING)));
    assert_eq!(report.backends_deleted, 0);
    assert_eq!(lb.maps().reachable(&node_port(1)), pods(&["10.244.1.1"]));

    // A restarted agent finds it by flag and address: nothing to write.
    let mut pinned = lb.maps().clone();
    pinned.writes.clear();
    let mut restarted = applier(pinned);
    restarted.apply(&draining).unwrap();
    assert_eq!(restarted.maps().writes, Vec::<String>::new());
    assert_eq!(id_of(restarted.maps(), "10.244.2.1"), Some((second, lb_common::BACKEND_DRAINING)));

    // Ready again: the flag goes, the id stays, the row names it again.
    restarted.apply(&tables(&[web_with_second_pod(Some(""))])).unwrap();
    assert_eq!(id_of(restarted.maps(), "10.244.2.1"), Some((second, 0)));
    assert_eq!(restarted.maps().reachable(&node_port(1)), pods(&["10.244.1.1", "10.244.2.1"]));

    // Gone from the slice: deleted.
    restarted.apply(&draining).unwrap();
    let report = restarted.apply(&tables(&[web_with_second_pod(None)])).unwrap();
    assert_eq!(report.backends_deleted, 1);
    assert_eq!(id_of(restarted.maps(), "10.244.2.1"), None);

    // A draining backend no service port wants any more is removed by the
    // next adoption.
    let mut lb = applier(FakeMaps::new(MAGLEV, MAX_SERVICES));
    lb.apply(&draining).unwrap();
    let mut pinned = lb.maps().clone();
    pinned.writes.clear();
    let mut restarted = applier(pinned);
    restarted.apply(&tables(&[web_with_second_pod(None)])).unwrap();
    assert_eq!(id_of(restarted.maps(), "10.244.2.1"), None);
}
