//! The pools IPAM draws from: those of `--config`, then MetalLB's
//! `IPAddressPool`s (by namespace and name). A MetalLB pool that does not
//! parse, shares a name with an earlier pool or overlaps one is left out
//! with a diagnostic naming both; the earlier one keeps serving, so a
//! cluster adding MetalLB's YAML beside an existing `--config` loses
//! nothing.

use super::objects::IpAddressPoolObject;
use super::resources::{MetalLbPool, parse_pool};
use crate::diagnostics::Diagnostic;
use crate::snapshot::Objects;
use crate::status::ipam::AddressPool;

/// The MetalLB pools that may be used beside `configured`, and the
/// problems of the others.
pub fn metallb_pools(
    configured: &[AddressPool],
    objects: &Objects<IpAddressPoolObject>,
) -> (Vec<MetalLbPool>, Vec<Diagnostic>) {
    let mut pools: Vec<MetalLbPool> = Vec::new();
    let mut diagnostics = Vec::new();
    for object in objects.iter() {
        let (pool, skipped) = match parse_pool(&object.to_value()) {
            Ok(parsed) => parsed,
            Err(problem) => {
                diagnostics.push(*problem);
                continue;
            }
        };
        diagnostics.extend(skipped);
        let refuse = |field: &str, message: String| {
            Diagnostic::for_object("IPAddressPool", &pool.namespace, &pool.pool.name, field, message)
        };
        if let Some(i) = configured.iter().position(|c| c.name == pool.pool.name) {
            let message = format!(
                "pool {:?} is also defined in the --config file (addressPools[{i}]), which is used; rename one",
                pool.pool.name
            );
            diagnostics.push(refuse("metadata.name", message));
            continue;
        }
        if let Some(other) = pools.iter().find(|p| p.pool.name == pool.pool.name) {
            let message = format!(
                "pool {:?} is also defined by IPAddressPool {}/{}, which is used; rename one",
                pool.pool.name, other.namespace, other.pool.name
            );
            diagnostics.push(refuse("metadata.name", message));
            continue;
        }
        let earlier = configured
            .iter()
            .map(|c| (c, "the --config file".to_string()))
            .chain(pools.iter().map(|p| (&p.pool, format!("IPAddressPool {}/{}", p.namespace, p.pool.name))));
        let overlap = earlier.into_iter().find_map(|(other, origin)| {
            let range = pool.pool.ranges.iter().find(|r| other.ranges.iter().any(|o| o.overlaps(r)))?;
            Some((*range, other.name.clone(), origin))
        });
        if let Some((range, name, origin)) = overlap {
            let message = format!("{range} overlaps pool {name:?} of {origin}, which is used");
            diagnostics.push(refuse("spec.addresses", message));
            continue;
        }
        pools.push(pool);
    }
    (pools, diagnostics)
}

/// `configured` followed by the usable MetalLB pools: what IPAM draws
/// from.
pub fn all_pools(configured: &[AddressPool], metallb: &[MetalLbPool]) -> Vec<AddressPool> {
    configured.iter().cloned().chain(metallb.iter().map(|p| p.pool.clone())).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(namespace: &str, name: &str, addresses: &[&str]) -> IpAddressPoolObject {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"addresses": addresses},
        }))
        .unwrap()
    }

    fn configured(name: &str, range: &str) -> AddressPool {
        AddressPool {
            name: name.into(),
            ranges: vec![range.parse().unwrap()],
            auto_assign: true,
            avoid_buggy_ips: false,
            allocation: None,
        }
    }

    #[test]
    fn conflicts_are_named_on_both_and_the_earlier_pool_serves() {
        let config = [configured("lan", "192.168.1.240/29")];
        let objects: Objects<IpAddressPoolObject> = [
            object("metallb-system", "lan", &["10.0.0.0/24"]),
            object("metallb-system", "first-pool", &["192.168.1.150-192.168.1.200"]),
            object("metallb-system", "overlapping", &["192.168.1.244"]),
            object("other", "first-pool", &["10.9.0.0/24"]),
            object("metallb-system", "broken", &["not-an-address"]),
        ]
        .into_iter()
        .collect();
        let (pools, diagnostics) = metallb_pools(&config, &objects);
        let names: Vec<&str> = pools.iter().map(|p| p.pool.name.as_str()).collect();
        assert_eq!(names, ["first-pool"]);
        let described: Vec<(String, String)> =
            diagnostics.iter().map(|d| (d.object.clone(), d.field.clone())).collect();
        assert_eq!(
            described,
            [
                ("IPAddressPool metallb-system/broken".to_string(), "spec.addresses[0]".to_string()),
                ("IPAddressPool metallb-system/lan".to_string(), "metadata.name".to_string()),
                ("IPAddressPool metallb-system/overlapping".to_string(), "spec.addresses".to_string()),
                ("IPAddressPool other/first-pool".to_string(), "metadata.name".to_string()),
            ]
        );
        assert!(diagnostics[1].message.contains("--config file (addressPools[0])"), "{}", diagnostics[1]);
        assert!(diagnostics[2].message.contains("\"lan\" of the --config file"), "{}", diagnostics[2]);
        assert!(diagnostics[3].message.contains("IPAddressPool metallb-system/first-pool"), "{}", diagnostics[3]);
        let all = all_pools(&config, &pools);
        assert_eq!(all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["lan", "first-pool"]);
    }
}
