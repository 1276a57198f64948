use serde_json::json;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The seed `metallb-pool.yaml`'s two objects, as YAML documents.
const SEED: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.1.150-192.168.1.200
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: first-pool-advertisement
  namespace: metallb-system
spec:
  ipAddressPools:
  - first-pool
";

fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_norway::Deserializer::from_str(yaml).map(|d| serde_json::Value::deserialize(d).unwrap()).collect()
}

#[test]
fn the_seed_pool_and_advertisement() {
    let docs = documents(SEED);
    let (pool, skipped) = parse_pool(&docs[0]).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(pool.namespace, "metallb-system");
    assert_eq!(pool.pool.name, "first-pool");
    assert_eq!(pool.pool.ranges, vec!["192.168.1.150-192.168.1.200".parse::<AddressRange>().unwrap()]);
    assert!(pool.pool.auto_assign && !pool.pool.avoid_buggy_ips);
    assert_eq!(pool.pool.allocation, None);
    let ad = parse_advertisement(&docs[1]).unwrap();
    assert_eq!((ad.namespace.as_str(), ad.name.as_str()), ("metallb-system", "first-pool-advertisement"));
    assert_eq!(ad.pools, ["first-pool"]);
    assert!(ad.covers(&pool));
}

#[test]
fn every_pool_field() {
    let object = json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "lan", "namespace": "metallb-system", "labels": {"tier": "public"}},
        "spec": {
            "addresses": ["192.168.10.0/24", "192.168.11.5-192.168.11.9", "fc00::/120"],
            "autoAssign": false,
            "avoidBuggyIPs": true,
            "serviceAllocation": {
                "priority": 50,
                "namespaces": ["shop", "blog"],
                "namespaceSelectors": [{"matchLabels": {"team": "web"}}],
                "serviceSelectors": [{"matchExpressions": [{"key": "expose", "operator": "Exists"}]}],
            },
        },
    });
    let (pool, skipped) = parse_pool(&object).unwrap();
    assert_eq!(pool.pool.ranges.len(), 2);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].field, "spec.addresses[2]");
    assert!(skipped[0].message.contains("IPv6"), "{}", skipped[0].message);
    assert!(!pool.pool.auto_assign && pool.pool.avoid_buggy_ips);
    assert_eq!(pool.labels, labels(&[("tier", "public")]));
    let a = pool.pool.allocation.as_ref().unwrap();
    assert_eq!(a.priority, Some(50));
    assert_eq!(a.namespaces, ["blog".to_string(), "shop".to_string()].into());
    assert!(a.namespace_selectors[0].matches(&labels(&[("team", "web")])));
    assert!(!a.namespace_selectors[0].matches(&labels(&[("team", "db")])));
    assert!(a.service_selectors[0].matches(&labels(&[("expose", "")])));
    // Priority 0 is MetalLB's "none".
    let none =
        json!({"metadata": {"name": "p"}, "spec": {"addresses": ["10.0.0.1"], "serviceAllocation": {"priority": 0}}});
    assert_eq!(parse_pool(&none).unwrap().0.pool.allocation.unwrap().priority, None);
}

#[test]
fn every_advertisement_field() {
    let object = json!({
        "metadata": {"name": "l2", "namespace": "metallb-system"},
        "spec": {
            "ipAddressPools": ["a"],
            "ipAddressPoolSelectors": [{"matchLabels": {"tier": "public"}}],
            "nodeSelectors": [{"matchLabels": {"kubernetes.io/hostname": "node1"}}],
            "interfaces": ["eth0"],
        },
    });
    let ad = parse_advertisement(&object).unwrap();
    assert_eq!(ad.interfaces, ["eth0"]);
    assert!(ad.node_selectors[0].matches(&labels(&[("kubernetes.io/hostname", "node1")])));
    let pool = |name: &str, tier: &str| {
        let object = json!({"metadata": {"name": name, "labels": {"tier": tier}}, "spec": {"addresses": ["10.0.0.1"]}});
        parse_pool(&object).unwrap().0
    };
    assert!(ad.covers(&pool("a", "private")), "by name");
    assert!(ad.covers(&pool("b", "public")), "by selector");
    assert!(!ad.covers(&pool("c", "private")));
    // No spec at all: every pool, every node, every interface.
    let bare = parse_advertisement(&json!({"metadata": {"name": "all", "namespace": "m"}})).unwrap();
    assert!(bare.covers(&pool("c", "private")) && bare.node_selectors.is_empty() && bare.interfaces.is_empty());
}

#[test]
fn problems_name_the_object_and_the_field() {
    let pool = |spec: serde_json::Value| {
        parse_pool(&json!({"metadata": {"name": "p", "namespace": "m"}, "spec": spec})).unwrap_err()
    };
    let d = pool(json!({"addresses": ["10.0.0.0/33"]}));
    assert_eq!((d.object.as_str(), d.field.as_str()), ("IPAddressPool m/p", "spec.addresses[0]"));
    let d = pool(json!({"addresses": ["10.0.0.0/24", "10.0.0.7"]}));
    assert_eq!(d.field, "spec.addresses[1]");
    assert!(d.message.contains("overlaps spec.addresses[0]"), "{}", d.message);
    let d = pool(json!({"addresses": ["fc00::1"]}));
    assert_eq!(d.field, "spec.addresses");
    let d = pool(json!({"addresses": ["10.0.0.1"], "autoAssign": "yes"}));
    assert_eq!(d.field, "spec.autoAssign");
    let d = pool(json!({"addresses": ["10.0.0.1"], "serviceAllocation": {"serviceSelectors": [
        {"matchExpressions": [{"key": "a", "operator": "In"}]}]}}));
    assert_eq!(d.field, "spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].values");
    let d = parse_pool(&json!({"metadata": {"name": "p", "namespace": "m"}})).unwrap_err();
    assert_eq!(d.field, "spec");
    // A field lb does not implement: the advertisement is not used.
    let d = parse_advertisement(&json!({"metadata": {"name": "l2", "namespace": "m"},
        "spec": {"serviceSelectors": [{"matchLabels": {"a": "b"}}]}}))
    .unwrap_err();
    assert_eq!((d.object.as_str(), d.field.as_str()), ("L2Advertisement m/l2", "spec.serviceSelectors"));
    assert!(d.message.contains("does not implement"), "{}", d.message);
}
