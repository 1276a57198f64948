use std::time::Instant;

use serde_json::{Value, json};

use super::*;

/// A Service of type LoadBalancer in `default`, built field by field.
#[derive(Clone)]
struct Svc(Value);

impl Svc {
    fn new(name: &str) -> Self {
        Self(json!({"metadata": {"namespace": "default", "name": name}, "spec": {"type": "LoadBalancer"}}))
    }

    /// Created `second` seconds into 2024.
    fn created(mut self, second: u32) -> Self {
        self.0["metadata"]["creationTimestamp"] =
            json!(format!("2024-01-01T00:{:02}:{:02}Z", second / 60, second % 60));
        self
    }

    fn pool(mut self, pool: &str) -> Self {
        self.0["metadata"]["annotations"][POOL_ANNOTATION] = json!(pool);
        self
    }

    fn request(mut self, ip: &str) -> Self {
        self.0["spec"]["loadBalancerIP"] = json!(ip);
        self
    }

    fn holding(mut self, ip: &str) -> Self {
        self.0["status"] = json!({"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": ip}]}});
        self
    }

    fn class(mut self, class: &str) -> Self {
        self.0["spec"]["loadBalancerClass"] = json!(class);
        self
    }

    fn spec(mut self, field: &str, value: Value) -> Self {
        self.0["spec"][field] = value;
        self
    }

    fn build(&self) -> Service {
        serde_json::from_value(self.0.clone()).unwrap()
    }
}

fn pool(name: &str, ranges: &[&str]) -> AddressPool {
    let ranges = ranges.iter().map(|range| range.parse().unwrap()).collect();
    AddressPool { name: name.into(), ranges, auto_assign: true, avoid_buggy_ips: false, allocation: None }
}

fn manual(pool: AddressPool) -> AddressPool {
    AddressPool { auto_assign: false, ..pool }
}

fn run(pools: &[AddressPool], services: &[Svc]) -> Allocation {
    let services: Vec<Service> = services.iter().map(Svc::build).collect();
    allocate(pools, &services, &Default::default(), &IpamOptions::default())
}

/// The assignments as `name → address`.
fn assigned(allocation: &Allocation) -> Vec<(String, String)> {
    allocation.assignments.iter().map(|((_, name), ip)| (name.clone(), ip.to_string())).collect()
}

fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(name, ip)| (name.to_string(), ip.to_string())).collect()
}

/// The problems as `(name, reason, message)`.
fn problems(allocation: &Allocation) -> Vec<(&str, ProblemReason, &str)> {
    allocation.problems.iter().map(|p| (p.name.as_str(), p.reason, p.message.as_str())).collect()
}

fn lan() -> AddressPool {
    pool("lan", &["192.168.1.240/28"])
}

#[test]
fn without_pools_nothing_is_managed() {
    let allocation = run(&[], &[Svc::new("web"), Svc::new("bad").request("nonsense")]);
    assert_eq!(allocation, Allocation::default());
    assert!(!allocation.is_managed("default", "web"));
}

#[test]
fn hands_out_the_lowest_free_addresses_oldest_first() {
    let allocation = run(&[lan()], &[Svc::new("b").created(1), Svc::new("a").created(2), Svc::new("c")]);
    assert_eq!(
        assigned(&allocation),
        expect(&[("a", "192.168.1.242"), ("b", "192.168.1.241"), ("c", "192.168.1.240")])
    );
    assert_eq!(allocation.problems, []);
    assert!(allocation.is_managed("default", "a"));
}

#[test]
fn only_load_balancers_are_managed() {
    let services = [
        Svc::new("cluster-ip").spec("type", json!("ClusterIP")),
        Svc::new("node-port").spec("type", json!("NodePort")).holding("192.168.1.240"),
        Svc::new("lb"),
    ];
    let allocation = run(&[lan()], &services);
    assert_eq!(assigned(&allocation), expect(&[("lb", "192.168.1.240")]));
    assert!(!allocation.is_managed("default", "node-port"));
}

#[test]
fn avoids_buggy_addresses() {
    let pools = [AddressPool { avoid_buggy_ips: true, ..pool("lan", &["10.0.0.254-10.0.1.1"]) }];
    let services = [Svc::new("a").created(1), Svc::new("b").created(2), Svc::new("c").created(3)];
    let allocation = run(&pools, &services);
    assert_eq!(assigned(&allocation), expect(&[("a", "10.0.0.254"), ("b", "10.0.1.1")]));
    assert_eq!(problems(&allocation), [("c", ProblemReason::PoolExhausted, "no free address in pool \"lan\"")]);

    let allocation = run(&pools, &[Svc::new("a").request("10.0.1.0"), Svc::new("b").holding("10.0.0.255")]);
    assert_eq!(assigned(&allocation), expect(&[("b", "10.0.0.254")]));
    let message = "spec.loadBalancerIP 10.0.1.0 is not in any address pool \
                   (the pool avoids addresses ending in .0 and .255)";
    assert_eq!(problems(&allocation), [("a", ProblemReason::AddressNotInPool, message)]);
}

#[test]
fn held_addresses_survive_a_new_older_service() {
    let services = [Svc::new("old").created(5).holding("192.168.1.240"), Svc::new("new").created(1)];
    let allocation = run(&[lan()], &services);
    assert_eq!(assigned(&allocation), expect(&[("new", "192.168.1.241"), ("old", "192.168.1.240")]));
}

#[test]
fn a_held_address_outside_the_pools_is_replaced() {
    let allocation = run(&[lan()], &[Svc::new("web").holding("10.1.2.3")]);
    assert_eq!(assigned(&allocation), expect(&[("web", "192.168.1.240")]));
}

#[test]
fn a_held_address_goes_to_the_oldest_holder() {
    let services =
        [Svc::new("copy").created(2).holding("192.168.1.245"), Svc::new("first").created(1).holding("192.168.1.245")];
    let allocation = run(&[lan()], &services);
    assert_eq!(assigned(&allocation), expect(&[("copy", "192.168.1.240"), ("first", "192.168.1.245")]));
}

#[test]
fn a_held_address_outside_the_annotated_pool_or_the_request_is_replaced() {
    let pools = [lan(), pool("dmz", &["10.0.0.0/24"])];
    let services = [
        Svc::new("moved").pool("dmz").holding("192.168.1.241"),
        Svc::new("asks").request("192.168.1.250").holding("192.168.1.242"),
        Svc::new("kept").pool("lan").holding("192.168.1.243"),
    ];
    let allocation = run(&pools, &services);
    assert_eq!(
        assigned(&allocation),
        expect(&[("asks", "192.168.1.250"), ("kept", "192.168.1.243"), ("moved", "10.0.0.0")])
    );
}

#[test]
fn keeps_a_held_address_of_a_pool_without_auto_assign() {
    let allocation = run(&[lan(), manual(pool("vip", &["10.9.0.1"]))], &[Svc::new("web").holding("10.9.0.1")]);
    assert_eq!(assigned(&allocation), expect(&[("web", "10.9.0.1")]));
}

#[test]
fn gives_requested_addresses_even_from_pools_without_auto_assign() {
    let pools = [lan(), manual(pool("vip", &["10.9.0.0/24"]))];
    let services =
        [Svc::new("web").request("192.168.1.250"), Svc::new("vip").request("10.9.0.7"), Svc::new("auto").created(0)];
    let allocation = run(&pools, &services);
    assert_eq!(
        assigned(&allocation),
        expect(&[("auto", "192.168.1.240"), ("vip", "10.9.0.7"), ("web", "192.168.1.250")])
    );
}

#[test]
fn requests_beat_auto_assignment_even_of_older_services() {
    let pools = [pool("tiny", &["10.0.0.1"])];
    let allocation = run(&pools, &[Svc::new("auto").created(1), Svc::new("asks").created(2).request("10.0.0.1")]);
    assert_eq!(assigned(&allocation), expect(&[("asks", "10.0.0.1")]));
    assert_eq!(problems(&allocation), [("auto", ProblemReason::PoolExhausted, "no free address in pool \"tiny\"")]);
}

#[test]
fn a_requested_address_in_use_is_a_problem() {
    let services = [
        Svc::new("holder").created(9).holding("192.168.1.244"),
        Svc::new("late").created(1).request("192.168.1.244"),
        Svc::new("first").created(1).request("192.168.1.250"),
        Svc::new("second").created(2).request("192.168.1.250"),
    ];
    let allocation = run(&[lan()], &services);
    assert_eq!(assigned(&allocation), expect(&[("first", "192.168.1.250"), ("holder", "192.168.1.244")]));
    assert_eq!(
        problems(&allocation),
        [
            (
                "late",
                ProblemReason::AddressInUse,
                "spec.loadBalancerIP 192.168.1.244 is already assigned to Service default/holder"
            ),
            (
                "second",
                ProblemReason::AddressInUse,
                "spec.loadBalancerIP 192.168.1.250 is already assigned to Service default/first"
            ),
        ]
    );
}

#[test]
fn requested_addresses_must_be_in_the_pools() {
    let pools = [lan(), pool("dmz", &["10.0.0.0/24"])];
    let services = [
        Svc::new("nowhere").request("172.16.0.1"),
        Svc::new("other-pool").pool("dmz").request("192.168.1.241"),
        Svc::new("garbage").request("192.168.1.300"),
        Svc::new("six").request("fd00::1"),
    ];
    let allocation = run(&pools, &services);
    assert_eq!(assigned(&allocation), []);
    assert_eq!(
        problems(&allocation),
        [
            ("garbage", ProblemReason::InvalidAddress, "spec.loadBalancerIP \"192.168.1.300\" is not an IPv4 address"),
            ("nowhere", ProblemReason::AddressNotInPool, "spec.loadBalancerIP 172.16.0.1 is not in any address pool"),
            (
                "other-pool",
                ProblemReason::AddressNotInPool,
                "spec.loadBalancerIP 192.168.1.241 is not in pool \"dmz\" (named by the Service's annotation)"
            ),
            (
                "six",
                ProblemReason::InvalidAddress,
                "spec.loadBalancerIP \"fd00::1\" is IPv6; only IPv4 addresses are allocated"
            ),
        ]
    );
}

#[test]
fn an_unknown_pool_is_a_problem() {
    let allocation = run(&[lan()], &[Svc::new("web").pool("wan").holding("192.168.1.240")]);
    assert_eq!(assigned(&allocation), []);
    let message = "annotation lb.dev/address-pool names pool \"wan\", which is not configured";
    assert_eq!(problems(&allocation), [("web", ProblemReason::UnknownPool, message)]);
    assert!(allocation.is_managed("default", "web"));
}

#[test]
fn an_annotated_pool_is_used_even_without_auto_assign() {
    let pools = [manual(pool("vip", &["10.9.0.0/30"])), lan()];
    let allocation = run(&pools, &[Svc::new("vip").pool("vip"), Svc::new("plain")]);
    assert_eq!(assigned(&allocation), expect(&[("plain", "192.168.1.240"), ("vip", "10.9.0.0")]));

    let allocation = run(&pools[..1], &[Svc::new("plain")]);
    assert_eq!(problems(&allocation).len(), 1);
    assert_eq!(allocation.problems[0].reason, ProblemReason::NoPool);
    assert_eq!(
        allocation.problems[0].to_string(),
        "Service default/plain: no address pool has autoAssign enabled; name one with the lb.dev/address-pool \
         annotation or request an address with spec.loadBalancerIP"
    );
}

#[test]
fn an_exhausted_pool_leaves_the_newest_without_an_address() {
    let services: Vec<Svc> = (1..=5).map(|i| Svc::new(&format!("s{i}")).created(i)).collect();
    let allocation = run(&[pool("lan", &["10.0.0.0/30"])], &services);
    assert_eq!(
        assigned(&allocation),
        expect(&[("s1", "10.0.0.0"), ("s2", "10.0.0.1"), ("s3", "10.0.0.2"), ("s4", "10.0.0.3")])
    );
    assert_eq!(problems(&allocation), [("s5", ProblemReason::PoolExhausted, "no free address in pool \"lan\"")]);
}

#[test]
fn spills_over_to_the_next_auto_assign_pool_and_names_them_all_when_full() {
    let pools = [pool("a", &["10.0.0.1"]), manual(pool("m", &["10.0.1.1"])), pool("b", &["10.0.2.1"])];
    let services: Vec<Svc> = (1..=3).map(|i| Svc::new(&format!("s{i}")).created(i)).collect();
    let allocation = run(&pools, &services);
    assert_eq!(assigned(&allocation), expect(&[("s1", "10.0.0.1"), ("s2", "10.0.2.1")]));
    assert_eq!(problems(&allocation), [("s3", ProblemReason::PoolExhausted, "no free address in pools \"a\", \"b\"")]);
}

#[test]
fn manages_only_its_load_balancer_class() {
    let services = [Svc::new("plain"), Svc::new("ours").class("lb.dev/lb"), Svc::new("theirs").class("other")];
    let built: Vec<Service> = services.iter().map(Svc::build).collect();
    let allocation = allocate(&[lan()], &built, &Default::default(), &IpamOptions::default());
    assert_eq!(assigned(&allocation), expect(&[("plain", "192.168.1.240")]));
    let options = IpamOptions { load_balancer_class: Some("lb.dev/lb".into()) };
    let allocation = allocate(&[lan()], &built, &Default::default(), &options);
    assert_eq!(assigned(&allocation), expect(&[("ours", "192.168.1.240")]));
}

#[test]
fn ipv6_only_services_are_a_problem() {
    let services = [
        Svc::new("six").spec("ipFamilies", json!(["IPv6"])),
        Svc::new("dual").spec("ipFamilies", json!(["IPv6", "IPv4"])),
    ];
    let allocation = run(&[lan()], &services);
    assert_eq!(assigned(&allocation), expect(&[("dual", "192.168.1.240")]));
    let message = "spec.ipFamilies is [\"IPv6\"]; only IPv4 addresses are allocated";
    assert_eq!(problems(&allocation), [("six", ProblemReason::Ipv6Only, message)]);
}

#[test]
fn the_result_does_not_depend_on_the_order_of_the_services() {
    let pools = [pool("lan", &["10.0.0.0/29"]), manual(pool("vip", &["10.9.0.0/30"]))];
    let mut services = vec![
        Svc::new("a").created(3),
        Svc::new("b").created(3),
        Svc::new("c"),
        Svc::new("d").created(1).holding("10.0.0.5"),
        Svc::new("e").created(2).holding("10.0.0.5"),
        Svc::new("f").request("10.9.0.2"),
        Svc::new("g").created(4).request("10.9.0.2"),
        Svc::new("h").pool("vip"),
        Svc::new("i").pool("vip").created(1),
        Svc::new("j").holding("10.9.0.3"),
        Svc::new("k").created(5),
        Svc::new("l").created(6),
        Svc::new("m").created(7),
        Svc::new("n").created(8),
    ];
    let expected = run(&pools, &services);
    assert_eq!(expected.assignments.len() + expected.problems.len(), services.len());
    let mut seed = 7u64;
    for _ in 0..20 {
        for i in (1..services.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            services.swap(i, (seed >> 33) as usize % (i + 1));
        }
        assert_eq!(run(&pools, &services), expected);
    }
}

#[test]
fn a_slash_8_pool_is_fast() {
    let services: Vec<Svc> = (0..2000).map(|i| Svc::new(&format!("s{i:04}"))).collect();
    let pools = [pool("big", &["10.0.0.0/8"])];
    let start = Instant::now();
    let allocation = run(&pools, &services);
    assert!(start.elapsed().as_secs() < 2, "took {:?}", start.elapsed());
    assert_eq!(allocation.assignments[&("default".to_string(), "s1999".to_string())], Ipv4Addr::new(10, 0, 7, 207));
    assert_eq!(allocation.problems, []);
}

#[test]
fn reasons_are_event_reasons() {
    assert_eq!(ProblemReason::PoolExhausted.reason(), "PoolExhausted");
    assert_eq!(ProblemReason::NoPool.reason(), "NoAutoAssignPool");
    assert_eq!(ProblemReason::Ipv6Only.reason(), "IPv6NotSupported");
}

#[test]
fn metallbs_annotations_name_the_pool_and_request_the_address() {
    let dmz = manual(pool("dmz", &["192.168.2.0/29"]));
    let pools = [lan(), dmz];
    let metallb = |svc: Svc, key: &str, value: &str| {
        let mut svc = svc;
        svc.0["metadata"]["annotations"][key] = json!(value);
        svc
    };
    let a = run(
        &pools,
        &[
            metallb(Svc::new("by-pool").created(1), METALLB_POOL_ANNOTATION, "dmz"),
            metallb(Svc::new("by-ip").created(2), METALLB_IPS_ANNOTATION, "192.168.2.5"),
            metallb(Svc::new("dual").created(3), METALLB_IPS_ANNOTATION, "fc00::5, 192.168.2.6"),
            // lb's own annotation wins over MetalLB's.
            metallb(Svc::new("both-pools").created(4).pool("lan"), METALLB_POOL_ANNOTATION, "dmz"),
        ],
    );
    let lan_first = lan().addresses().next().unwrap().to_string();
    assert_eq!(
        assigned(&a),
        expect(&[
            ("both-pools", &lan_first),
            ("by-ip", "192.168.2.5"),
            ("by-pool", "192.168.2.0"),
            ("dual", "192.168.2.6")
        ])
    );
    assert!(a.problems.is_empty(), "{:?}", a.problems);

    let a = run(
        &pools,
        &[
            metallb(Svc::new("twice").request("192.168.2.1"), METALLB_IPS_ANNOTATION, "192.168.2.2"),
            metallb(Svc::new("two-v4"), METALLB_IPS_ANNOTATION, "192.168.2.1,192.168.2.2"),
            metallb(Svc::new("v6-only"), METALLB_IPS_ANNOTATION, "fc00::1"),
            metallb(Svc::new("outside"), METALLB_IPS_ANNOTATION, "10.9.9.9"),
            metallb(Svc::new("no-pool"), METALLB_POOL_ANNOTATION, "nope"),
        ],
    );
    let reasons: Vec<(&str, ProblemReason)> = problems(&a).iter().map(|(n, r, _)| (*n, *r)).collect();
    assert_eq!(
        reasons,
        [
            ("no-pool", ProblemReason::UnknownPool),
            ("outside", ProblemReason::AddressNotInPool),
            ("twice", ProblemReason::InvalidAddress),
            ("two-v4", ProblemReason::InvalidAddress),
            ("v6-only", ProblemReason::InvalidAddress),
        ]
    );
    let message = |name: &str| problems(&a).into_iter().find(|(n, _, _)| *n == name).unwrap().2.to_string();
    assert!(message("no-pool").contains(METALLB_POOL_ANNOTATION), "{}", message("no-pool"));
    assert!(message("outside").starts_with(METALLB_IPS_ANNOTATION), "{}", message("outside"));
    assert!(message("twice").contains("use one"), "{}", message("twice"));
}

/// A pool whose `serviceAllocation` admits `namespaces`, with `priority`.
fn pinned(pool: AddressPool, priority: Option<u32>, namespaces: &[&str]) -> AddressPool {
    let namespaces = namespaces.iter().map(|n| n.to_string()).collect();
    AddressPool { allocation: Some(ServiceAllocation { priority, namespaces, ..Default::default() }), ..pool }
}

#[test]
fn service_allocation_pins_pools_to_services_by_priority_then_falls_back() {
    let in_ns = |name: &str, ns: &str| {
        let mut svc = Svc::new(name);
        svc.0["metadata"]["namespace"] = json!(ns);
        svc
    };
    let pools = [
        pool("open", &["10.0.0.0/30"]),
        pinned(pool("shop-low", &["10.0.1.0/30"]), None, &["shop"]),
        pinned(pool("shop-high", &["10.0.2.0/31"]), Some(1), &["shop"]),
        pinned(pool("blog", &["10.0.3.0/30"]), Some(5), &["blog"]),
    ];
    let a = run(
        &pools,
        &[
            in_ns("s1", "shop").created(1),
            in_ns("s2", "shop").created(2),
            in_ns("s3", "shop").created(3),
            in_ns("b1", "blog").created(4),
            in_ns("other", "default").created(5),
        ],
    );
    // shop: its priority-1 pool, then its unprioritised one; blog its
    // own; the rest only the pool without serviceAllocation.
    assert_eq!(
        assigned(&a),
        expect(&[
            ("b1", "10.0.3.0"),
            ("other", "10.0.0.0"),
            ("s1", "10.0.2.0"),
            ("s2", "10.0.2.1"),
            ("s3", "10.0.1.0")
        ])
    );
    // A pool that does not admit the Service: neither by request, nor by
    // annotation, nor as an address it holds.
    let a = run(
        &pools,
        &[
            in_ns("asks", "default").request("10.0.3.1"),
            in_ns("names", "default").pool("blog"),
            in_ns("holds", "default").created(1).holding("10.0.3.2"),
        ],
    );
    let reasons: Vec<(&str, ProblemReason)> = problems(&a).iter().map(|(n, r, _)| (*n, *r)).collect();
    assert_eq!(reasons, [("asks", ProblemReason::PoolNotAdmitted), ("names", ProblemReason::PoolNotAdmitted)]);
    assert_eq!(assigned(&a), expect(&[("holds", "10.0.0.0")]), "a held address of a pool not admitting it is replaced");
}

#[test]
fn service_allocation_selectors() {
    use crate::selector::Selector;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    let selector = |k: &str, v: &str| {
        Selector::parse(&LabelSelector {
            match_labels: Some([(k.to_string(), v.to_string())].into()),
            match_expressions: None,
        })
        .unwrap()
    };
    let allocation = ServiceAllocation {
        namespace_selectors: vec![selector("team", "web")],
        service_selectors: vec![selector("expose", "public")],
        ..Default::default()
    };
    let pools = [AddressPool { allocation: Some(allocation), ..pool("public", &["10.0.9.0/30"]) }];
    let labelled = |name: &str, ns: &str, expose: &str| {
        let mut svc = Svc::new(name);
        svc.0["metadata"]["namespace"] = json!(ns);
        svc.0["metadata"]["labels"] = json!({"expose": expose});
        svc.build()
    };
    let services = [
        labelled("yes", "shop", "public"),
        labelled("wrong-ns", "db", "public"),
        labelled("wrong-label", "shop", "internal"),
    ];
    let namespaces: NamespaceLabels = [
        ("shop".to_string(), [("team".to_string(), "web".to_string())].into()),
        ("db".to_string(), [("team".to_string(), "data".to_string())].into()),
    ]
    .into();
    let a = allocate(&pools, &services, &namespaces, &IpamOptions::default());
    assert_eq!(assigned(&a), expect(&[("yes", "10.0.9.0")]));
    let names: Vec<&str> = problems(&a)
        .iter()
        .map(|(n, r, _)| {
            assert_eq!(*r, ProblemReason::NoPool);
            *n
        })
        .collect();
    assert_eq!(names, ["wrong-ns", "wrong-label"], "by namespace, then name");
}

#[test]
fn namespace_labels_name_every_namespace_as_the_api_server_does() {
    use k8s_openapi::api::core::v1::Namespace;
    let namespace = |name: &str, labels: serde_json::Value| -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    };
    let objects: Objects<Namespace> =
        [namespace("shop", json!({"team": "web"})), namespace("db", json!(null))].into_iter().collect();
    let labels = namespace_labels(&objects);
    let pairs = |list: &[(&str, &str)]| -> BTreeMap<String, String> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    assert_eq!(labels["shop"], pairs(&[("kubernetes.io/metadata.name", "shop"), ("team", "web")]));
    assert_eq!(labels["db"], pairs(&[("kubernetes.io/metadata.name", "db")]));
    assert_eq!(labels.len(), 2);
}
