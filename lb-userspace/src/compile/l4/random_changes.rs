//! The incremental compile and the delta apply against the full ones, on
//! random sequences of changes: after every step the [`L4Compiler`] that
//! followed the whole sequence must hold the tables and diagnostics of a
//! compile from scratch, and maps applied from its deltas must serve what
//! maps applied in full from scratch serve.
//!
//! The objects are drawn from small pools (cluster IPs, external IPs, node
//! ports, pod IPs, Service names) so that Services fight over frontends,
//! slices move between Services and ports appear and vanish.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use lb_common::{Backend, FrontendKey, Service as ServiceValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::*;
use crate::dataplane::{Applier, FakeMaps};
use crate::snapshot::{Objects, object_key};

const MAGLEV: u32 = 31;
const MAX_SERVICES: u32 = 256;
const STEPS: usize = 400;

fn node() -> NodeContext {
    NodeContext { name: "node-a".into(), addresses: vec![Ipv4Addr::new(192, 168, 1, 10)], ingress: None }
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn service(rng: &mut StdRng, namespace: &str, name: &str) -> Service {
    let kind = *pick(rng, &["ClusterIP", "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]);
    let mut ports = Vec::new();
    for i in 0..rng.random_range(0..3) {
        let mut port = json!({
            "port": *pick(rng, &[80, 443, 53]),
            "protocol": *pick(rng, &["TCP", "TCP", "UDP"]),
            "targetPort": *pick(rng, &[json!(8080), json!(53), json!("web")]),
        });
        if i > 0 || rng.random_bool(0.3) {
            port["name"] = json!(*pick(rng, &["http", "dns", "web"]));
        }
        if kind != "ClusterIP" {
            port["nodePort"] = json!(*pick(rng, &[30001, 30002, 30003]));
        }
        ports.push(port);
    }
    let mut spec = json!({
        "type": kind,
        "clusterIP": format!("10.96.0.{}", rng.random_range(1..8)),
        "ports": ports,
    });
    if rng.random_bool(0.3) {
        spec["externalIPs"] = json!([format!("203.0.113.{}", rng.random_range(1..4))]);
    }
    if rng.random_bool(0.3) {
        spec["externalTrafficPolicy"] = json!("Local");
    }
    if rng.random_bool(0.2) {
        spec["internalTrafficPolicy"] = json!("Local");
    }
    if rng.random_bool(0.2) {
        spec["sessionAffinity"] = json!("ClientIP");
    }
    if kind == "LoadBalancer" && rng.random_bool(0.5) {
        spec["loadBalancerIP"] = json!(format!("198.51.100.{}", rng.random_range(1..3)));
    }
    let object = json!({"metadata": {"namespace": namespace, "name": name}, "spec": spec});
    serde_json::from_value(object).unwrap()
}

fn slice(rng: &mut StdRng, namespace: &str, name: &str, services: &[&str]) -> EndpointSlice {
    let endpoints: Vec<Value> = (0..rng.random_range(0..4))
        .map(|_| {
            json!({
                "addresses": [format!("10.244.{}.{}", rng.random_range(1..3), rng.random_range(1..6))],
                "nodeName": *pick(rng, &["node-a", "node-b"]),
                "conditions": {"ready": rng.random_bool(0.8), "serving": true, "terminating": rng.random_bool(0.1)},
            })
        })
        .collect();
    let port = pick(rng, &[json!([{"port": 8080}]), json!([{"name": "http", "port": 8080}]), json!([])]).clone();
    let object = json!({
        "metadata": {
            "namespace": namespace,
            "name": name,
            "labels": {"kubernetes.io/service-name": *pick(rng, services)},
        },
        "addressType": *pick(rng, &["IPv4", "IPv4", "IPv4", "IPv6"]),
        "ports": port,
        "endpoints": endpoints,
    });
    serde_json::from_value(object).unwrap()
}

fn node_object(rng: &mut StdRng) -> Node {
    let object = json!({
        "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": *pick(rng, &["z1", "z2"])}},
        "status": {"addresses": [{"type": "InternalIP", "address": format!("192.168.1.{}", rng.random_range(10..12))}]},
    });
    serde_json::from_value(object).unwrap()
}

/// Replaces, adds or removes the object `name` of `objects` (sorted),
/// leaving the other objects' allocations as they are.
fn put<K: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>>(
    objects: &mut Objects<K>,
    (namespace, name): (&str, &str),
    object: Option<K>,
) {
    match object {
        Some(object) => {
            assert_eq!(object_key(object.metadata()), (namespace, name));
            objects.insert(Arc::new(object));
        }
        None => {
            objects.remove(namespace, name);
        }
    }
}

/// One random change (or a few at once, as a debounced burst).
fn change(rng: &mut StdRng, snapshot: &mut Snapshot) {
    const NAMESPACES: [&str; 2] = ["default", "team"];
    const SERVICES: [&str; 5] = ["web", "dns", "api", "db", "cache"];
    for _ in 0..rng.random_range(1..4) {
        let namespace = *pick(rng, &NAMESPACES);
        match rng.random_range(0..10) {
            0..4 => {
                let name = *pick(rng, &SERVICES);
                let object = rng.random_bool(0.85).then(|| service(rng, namespace, name));
                put(&mut snapshot.services, (namespace, name), object);
            }
            4..9 => {
                let name = format!("{}-{}", pick(rng, &SERVICES), rng.random_range(1..3));
                let object = rng.random_bool(0.85).then(|| slice(rng, namespace, &name, &SERVICES));
                put(&mut snapshot.endpoint_slices, (namespace, &name), object);
            }
            _ => {
                let object = rng.random_bool(0.9).then(|| node_object(rng));
                put(&mut snapshot.nodes, ("", "node-a"), object);
            }
        }
    }
}

/// What the maps serve, independent of ids: each frontend's flags, its
/// service's value and the backend in every slot of its row.
type Served = BTreeMap<FrontendKey, (u32, ServiceValue, Vec<Option<Backend>>)>;

fn served(maps: &FakeMaps) -> Served {
    maps.frontends
        .iter()
        .map(|(key, frontend)| {
            let value = maps.services.get(&frontend.service_id).copied().unwrap_or_default();
            let base = (frontend.service_id * maps.maglev_size) as usize;
            let row = if value.backend_count == 0 {
                Vec::new()
            } else {
                maps.maglev[base..base + maps.maglev_size as usize]
                    .iter()
                    .map(|id| maps.backends.get(id).copied())
                    .collect()
            };
            (*key, (frontend.flags, value, row))
        })
        .collect()
}

#[test]
fn incremental_compiles_and_delta_applies_equal_full_ones_on_random_changes() {
    for seed in [1, 2, 3] {
        let mut rng = StdRng::seed_from_u64(seed);
        let options = CompileOptions { maglev_table_size: MAGLEV };
        let mut compiler = L4Compiler::new(node(), options.clone());
        let mut applier = Applier::new(FakeMaps::new(MAGLEV, MAX_SERVICES), MAGLEV, MAX_SERVICES);
        let mut snapshot = Snapshot::default();
        let mut deltas = 0;
        for step in 0..STEPS {
            change(&mut rng, &mut snapshot);
            let shared = Arc::new(snapshot.clone());
            let (delta, diagnostics) = compiler.compile(&shared);
            deltas += usize::from(delta.is_some());
            let (full, full_diagnostics) = compile_l4(&snapshot, &node(), &options);
            let context = format!("seed {seed}, step {step}");
            assert_eq!(compiler.tables(), &full, "{context}: tables");
            assert_eq!(diagnostics, full_diagnostics, "{context}: diagnostics");

            applier.apply_changes(compiler.tables(), delta.as_ref()).unwrap_or_else(|e| panic!("{context}: {e:#}"));
            let mut fresh = Applier::new(FakeMaps::new(MAGLEV, MAX_SERVICES), MAGLEV, MAX_SERVICES);
            fresh.apply(&full).unwrap();
            assert_eq!(served(applier.maps()), served(fresh.maps()), "{context}: what the maps serve");
            let in_use = |maps: &FakeMaps| {
                let services = maps.services.values().filter(|s| **s != ServiceValue::default()).count();
                (services, maps.backends.len())
            };
            assert_eq!(in_use(applier.maps()), in_use(fresh.maps()), "{context}: services and backends in the maps");
        }
        assert!(deltas > STEPS / 2, "seed {seed}: only {deltas} of {STEPS} compiles were deltas");
    }
}
