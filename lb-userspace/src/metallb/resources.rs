//! MetalLB's `metallb.io/v1beta1` `IPAddressPool` and `L2Advertisement`,
//! parsed into typed values. Every problem is a [`Diagnostic`] naming the
//! object and the field; a resource with one is not used (its others keep
//! theirs). Fields lb does not implement are rejected rather than ignored,
//! so nothing is announced that the user's YAML did not mean.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::diagnostics::Diagnostic;
use crate::selector::Selector;
use crate::status::ipam::{AddressPool, AddressRange, RangeError, ServiceAllocation};

pub const GROUP_VERSION: &str = "metallb.io/v1beta1";
pub const POOL_KIND: &str = "IPAddressPool";
pub const ADVERTISEMENT_KIND: &str = "L2Advertisement";

/// An `IPAddressPool`.
#[derive(Clone, Debug, PartialEq)]
pub struct MetalLbPool {
    pub namespace: String,
    /// The pool's labels, for `ipAddressPoolSelectors`.
    pub labels: BTreeMap<String, String>,
    /// Named as the object; IPv4 ranges only (IPv6 ones are diagnosed and
    /// left out).
    /// Its `serviceAllocation` included.
    pub pool: AddressPool,
}

/// An `L2Advertisement`.
#[derive(Clone, Debug, PartialEq)]
pub struct L2Advertisement {
    pub namespace: String,
    pub name: String,
    /// `ipAddressPools` and `ipAddressPoolSelectors`; both empty: every
    /// pool.
    pub pools: Vec<String>,
    pub pool_selectors: Vec<Selector>,
    /// Empty: every node.
    pub node_selectors: Vec<Selector>,
    /// Empty: every uplink.
    pub interfaces: Vec<String>,
}

#[derive(Deserialize)]
struct Object<S> {
    #[serde(default)]
    metadata: ObjectMeta,
    spec: Option<S>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PoolSpec {
    addresses: Vec<String>,
    auto_assign: Option<bool>,
    #[serde(default, rename = "avoidBuggyIPs")]
    avoid_buggy_ips: bool,
    service_allocation: Option<AllocationSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AllocationSpec {
    #[serde(default)]
    priority: u32,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    namespace_selectors: Vec<LabelSelector>,
    #[serde(default)]
    service_selectors: Vec<LabelSelector>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AdvertisementSpec {
    #[serde(default, rename = "ipAddressPools")]
    pools: Vec<String>,
    #[serde(default, rename = "ipAddressPoolSelectors")]
    pool_selectors: Vec<LabelSelector>,
    #[serde(default)]
    node_selectors: Vec<LabelSelector>,
    #[serde(default)]
    interfaces: Vec<String>,
}

/// Parses an `IPAddressPool` (a whole object, as the API or a manifests
/// file has it). Besides the pool: the diagnostics of IPv6 entries left
/// out.
pub fn parse_pool(object: &serde_json::Value) -> Result<(MetalLbPool, Vec<Diagnostic>), Box<Diagnostic>> {
    let (metadata, spec): (ObjectMeta, Option<PoolSpec>) = parse(POOL_KIND, object)?;
    let (namespace, name) = names(&metadata);
    let diagnostic =
        |field: String, message: String| Diagnostic::for_object(POOL_KIND, &namespace, &name, field, message);
    let problem = |field: String, message: String| Box::new(diagnostic(field, message));
    let Some(spec) = spec else { return Err(problem("spec".into(), "is missing: a pool needs spec.addresses".into())) };
    let mut ranges = Vec::new();
    let mut skipped = Vec::new();
    for (i, text) in spec.addresses.iter().enumerate() {
        let field = format!("spec.addresses[{i}]");
        match text.parse::<AddressRange>() {
            Ok(range) => {
                if let Some(other) = ranges.iter().position(|r: &AddressRange| r.overlaps(&range)) {
                    return Err(problem(field, format!("{text:?} overlaps spec.addresses[{other}]")));
                }
                ranges.push(range);
            }
            Err(RangeError::Ipv6) => {
                skipped.push(diagnostic(field, format!("{text:?} is IPv6: lb hands out IPv4 only; left out")))
            }
            Err(e) => return Err(problem(field, format!("{text:?} {e}"))),
        }
    }
    if ranges.is_empty() {
        return Err(problem("spec.addresses".into(), "holds no IPv4 CIDR, range or address".into()));
    }
    let allocation = match spec.service_allocation {
        None => None,
        Some(a) => Some(ServiceAllocation {
            priority: (a.priority > 0).then_some(a.priority),
            namespaces: a.namespaces.into_iter().collect(),
            namespace_selectors: selectors(&a.namespace_selectors, "spec.serviceAllocation.namespaceSelectors")
                .map_err(|(f, m)| problem(f, m))?,
            service_selectors: selectors(&a.service_selectors, "spec.serviceAllocation.serviceSelectors")
                .map_err(|(f, m)| problem(f, m))?,
        }),
    };
    let pool = AddressPool {
        name: name.clone(),
        ranges,
        auto_assign: spec.auto_assign.unwrap_or(true),
        avoid_buggy_ips: spec.avoid_buggy_ips,
        allocation,
    };
    let labels = metadata.labels.unwrap_or_default();
    Ok((MetalLbPool { namespace, labels, pool }, skipped))
}

/// Parses an `L2Advertisement`.
pub fn parse_advertisement(object: &serde_json::Value) -> Result<L2Advertisement, Box<Diagnostic>> {
    let (metadata, spec): (ObjectMeta, Option<AdvertisementSpec>) = parse(ADVERTISEMENT_KIND, object)?;
    let spec = spec.unwrap_or_default();
    let (namespace, name) = names(&metadata);
    let problem = |(field, message): (String, String)| {
        Box::new(Diagnostic::for_object(ADVERTISEMENT_KIND, &namespace, &name, field, message))
    };
    Ok(L2Advertisement {
        pools: spec.pools,
        pool_selectors: selectors(&spec.pool_selectors, "spec.ipAddressPoolSelectors").map_err(problem)?,
        node_selectors: selectors(&spec.node_selectors, "spec.nodeSelectors").map_err(problem)?,
        interfaces: spec.interfaces,
        namespace: namespace.clone(),
        name: name.clone(),
    })
}

impl L2Advertisement {
    /// Whether the advertisement covers `pool`.
    pub fn covers(&self, pool: &MetalLbPool) -> bool {
        (self.pools.is_empty() && self.pool_selectors.is_empty())
            || self.pools.contains(&pool.pool.name)
            || self.pool_selectors.iter().any(|s| s.matches(&pool.labels))
    }
}

fn names(metadata: &ObjectMeta) -> (String, String) {
    (metadata.namespace.clone().unwrap_or_default(), metadata.name.clone().unwrap_or_default())
}

/// The object's metadata and spec; a spec that does not parse is a
/// diagnostic naming the field (an unknown field included).
fn parse<S: DeserializeOwned>(
    kind: &str,
    object: &serde_json::Value,
) -> Result<(ObjectMeta, Option<S>), Box<Diagnostic>> {
    // For the diagnostic's name, even when the rest does not parse.
    let metadata = object.get("metadata").and_then(|m| ObjectMeta::deserialize(m).ok()).unwrap_or_default();
    let (namespace, name) = names(&metadata);
    let parsed: Result<Object<S>, _> = serde_path_to_error::deserialize(object);
    match parsed {
        Ok(o) => Ok((o.metadata, o.spec)),
        Err(e) => {
            let field = e.path().to_string();
            let message = match e.inner().to_string() {
                m if m.starts_with("unknown field") => {
                    format!("{m}: lb does not implement it; this {kind} is not used")
                }
                m => m,
            };
            let field = if field == "." { String::new() } else { field };
            Err(Box::new(Diagnostic::for_object(kind, &namespace, &name, field, message)))
        }
    }
}

fn selectors(raw: &[LabelSelector], field: &str) -> Result<Vec<Selector>, (String, String)> {
    raw.iter().enumerate().map(|(i, s)| Selector::parse(s).map_err(|(f, m)| (format!("{field}[{i}].{f}"), m))).collect()
}

#[cfg(test)]
mod tests;
