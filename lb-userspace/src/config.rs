//! The agent configuration file: `lb run --config FILE`, mounted from the
//! ConfigMap `lb-system/lb-config` (key `config.yaml`).
//!
//! ```yaml
//! addressPools:                 # default []: no IPAM
//!   - name: lan                 # required, unique, a DNS-1123 label
//!     addresses:                # required: CIDRs, ranges and single addresses
//!       - 192.168.1.240/28
//!       - 192.168.2.250-192.168.2.254
//!       - 192.168.1.9
//!     autoAssign: true          # default true
//!     avoidBuggyIPs: false      # default false: skip addresses ending in .0 and .255
//! ingressStatus: service        # service (default) | nodes
//! ```
//!
//! An empty file (or `{}`) is the defaults. Unknown keys are errors, and
//! every error names the file and the field (`config.yaml:
//! addressPools[1].addresses[0]: ...`). Pools are IPv4 only and may not
//! overlap; a CIDR is its whole block, network and broadcast addresses
//! included (as in MetalLB). See [`crate::status::ipam`] for how the pools
//! are used.

#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::Path;

use serde::Deserialize;

pub use crate::status::ipam::{AddressPool, AddressRange};

/// The validated configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentConfig {
    /// The pools of addresses for Services of type LoadBalancer, in
    /// configuration order; empty turns IPAM off.
    pub address_pools: Vec<AddressPool>,
    pub ingress_status: IngressStatusSource,
}

/// Which addresses the agent writes into the status of the Ingresses it
/// serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IngressStatusSource {
    /// The load-balancer addresses of the ingress controller's Service;
    /// while it has none, as with `Nodes`.
    #[default]
    Service,
    /// The addresses of the nodes the agents run on (their node Lease is
    /// alive; see `status::ingress`).
    Nodes,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: String,
        #[source]
        source: io::Error,
    },
    /// `field` is a path such as `addressPools[1].addresses[0]`, or empty
    /// when the whole file is concerned.
    #[error("{origin}: {}{message}", field_prefix(.field))]
    Invalid { origin: String, field: String, message: String },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() { String::new() } else { format!("{field}: ") }
}

impl AgentConfig {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let origin = path.display().to_string();
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &origin),
            Err(source) => Err(ConfigError::Read { origin, source }),
        }
    }

    /// Parses and validates a configuration; `origin` (the file) starts
    /// every error message.
    pub fn parse(text: &str, origin: &str) -> Result<AgentConfig, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            field: field.to_string(),
            message,
        };
        // A first pass for the syntax, and to find the document with
        // content (empty ones, as after a trailing `---`, do not count).
        let mut content = None;
        for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
            let value =
                serde_norway::Value::deserialize(document).map_err(|e| invalid("", format!("invalid YAML: {e}")))?;
            if !value.is_null() && content.replace(index).is_some() {
                return Err(invalid("", "holds more than one YAML document; the configuration is one mapping".into()));
            }
        }
        let Some(index) = content else { return Ok(AgentConfig::default()) };
        let document = serde_norway::Deserializer::from_str(text).nth(index).expect("the document was read above");
        let raw: RawConfig = serde_path_to_error::deserialize(document).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            let message = without_path(&field, e.into_inner().to_string());
            invalid(&field, message)
        })?;
        let address_pools = validate_pools(&raw.address_pools).map_err(|(field, message)| invalid(&field, message))?;
        Ok(AgentConfig { address_pools, ingress_status: raw.ingress_status })
    }
}

/// `message` without the path serde_norway starts it with (that of the
/// mapping or sequence holding `field`), since the error names the field.
fn without_path(field: &str, message: String) -> String {
    match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && field.starts_with(path) => rest.to_string(),
        _ => message,
    }
}

/// The file as written.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a mapping of addressPools and ingressStatus")]
struct RawConfig {
    #[serde(default)]
    address_pools: Vec<RawPool>,
    #[serde(default)]
    ingress_status: IngressStatusSource,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    expecting = "an address pool (a mapping with name and addresses)"
)]
struct RawPool {
    name: String,
    addresses: Vec<String>,
    #[serde(default = "default_auto_assign")]
    auto_assign: bool,
    #[serde(default, rename = "avoidBuggyIPs")]
    avoid_buggy_ips: bool,
}

fn default_auto_assign() -> bool {
    true
}

/// A configuration problem: the field and the message.
type Invalid = (String, String);

/// Checks the pools in configuration order and types them; the first
/// problem is returned.
fn validate_pools(raw: &[RawPool]) -> Result<Vec<AddressPool>, Invalid> {
    let mut pools: Vec<AddressPool> = Vec::new();
    // Every range so far, with its pool's and entry's indices.
    let mut seen: Vec<(usize, usize, AddressRange)> = Vec::new();
    for (index, pool) in raw.iter().enumerate() {
        let field = format!("addressPools[{index}]");
        if !is_dns_label(&pool.name) {
            let message = format!(
                "{:?} is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a \
                 letter or digit, at most 63 characters)",
                pool.name
            );
            return Err((format!("{field}.name"), message));
        }
        if let Some(first) = pools.iter().position(|other| other.name == pool.name) {
            return Err((format!("{field}.name"), format!("{:?} is used by addressPools[{first}] too", pool.name)));
        }
        if pool.addresses.is_empty() {
            let message = "is empty; a pool needs at least one CIDR, range or address".to_string();
            return Err((format!("{field}.addresses"), message));
        }
        let mut ranges = Vec::new();
        for (entry, text) in pool.addresses.iter().enumerate() {
            let field = format!("{field}.addresses[{entry}]");
            let range: AddressRange = text.parse().map_err(|e| (field.clone(), format!("{text:?} {e}")))?;
            if let Some(&(other_pool, other_entry, _)) = seen.iter().find(|(_, _, other)| other.overlaps(&range)) {
                let other = &raw[other_pool];
                let message = format!(
                    "{text:?} overlaps addressPools[{other_pool}].addresses[{other_entry}] ({:?} of pool {:?})",
                    other.addresses[other_entry], other.name
                );
                return Err((field, message));
            }
            seen.push((index, entry, range));
            ranges.push(range);
        }
        pools.push(AddressPool {
            name: pool.name.clone(),
            ranges,
            auto_assign: pool.auto_assign,
            avoid_buggy_ips: pool.avoid_buggy_ips,
            allocation: None,
        });
    }
    Ok(pools)
}

/// Whether `name` is a DNS-1123 label: 1 to 63 lower-case letters, digits
/// and '-', starting and ending with a letter or digit.
fn is_dns_label(name: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&name.len())
        && name.chars().all(|c| alphanumeric(c) || c == '-')
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric)
}
