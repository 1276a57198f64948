use std::net::Ipv4Addr;

use super::*;

fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::parse(text, "config.yaml")
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

fn range(first: [u8; 4], last: [u8; 4]) -> AddressRange {
    AddressRange { first: Ipv4Addr::from(first), last: Ipv4Addr::from(last) }
}

/// A configuration with these pools, given as `(name, [addresses])`.
fn pools(pools: &[(&str, &[&str])]) -> String {
    let mut text = "addressPools:\n".to_string();
    for (name, addresses) in pools {
        text.push_str(&format!("- name: {name}\n  addresses:\n"));
        for address in *addresses {
            text.push_str(&format!("  - {address}\n"));
        }
    }
    text
}

#[test]
fn empty_files_are_the_defaults() {
    for text in ["", "\n# nothing yet\n", "{}", "---\n", "~", "addressPools:\n", "addressPools: []\n---\n"] {
        assert_eq!(parse(text).unwrap(), AgentConfig::default(), "{text:?}");
    }
    assert_eq!(AgentConfig::default().ingress_status, IngressStatusSource::Service);
}

#[test]
fn parses_a_full_configuration() {
    let text = "
addressPools:
- name: lan
  addresses:
  - 192.168.1.240/28
  - 192.168.2.250-192.168.2.254
  - 192.168.1.9
- name: dmz
  addresses: [10.0.0.0/24]
  autoAssign: false
  avoidBuggyIPs: true
ingressStatus: nodes
";
    let config = parse(text).unwrap();
    assert_eq!(config.ingress_status, IngressStatusSource::Nodes);
    assert_eq!(
        config.address_pools,
        [
            AddressPool {
                name: "lan".into(),
                ranges: vec![
                    range([192, 168, 1, 240], [192, 168, 1, 255]),
                    range([192, 168, 2, 250], [192, 168, 2, 254]),
                    range([192, 168, 1, 9], [192, 168, 1, 9]),
                ],
                auto_assign: true,
                avoid_buggy_ips: false,
                allocation: None,
            },
            AddressPool {
                name: "dmz".into(),
                ranges: vec![range([10, 0, 0, 0], [10, 0, 0, 255])],
                auto_assign: false,
                avoid_buggy_ips: true,
                allocation: None,
            },
        ]
    );
}

#[test]
fn unknown_keys_are_named() {
    assert_eq!(
        error("addressPool: []"),
        "config.yaml: addressPool: unknown field `addressPool`, expected `addressPools` or `ingressStatus`"
    );
    assert_eq!(
        error("addressPools:\n- name: lan\n  addresses: [10.0.0.0/8]\n  autoassign: false\n"),
        "config.yaml: addressPools[0].autoassign: unknown field `autoassign`, expected one of `name`, `addresses`, \
         `autoAssign`, `avoidBuggyIPs` at line 4 column 3"
    );
}

#[test]
fn type_and_syntax_errors_name_the_field_or_line() {
    assert_eq!(
        error("addressPools:\n- name: lan\n"),
        "config.yaml: addressPools[0]: missing field `addresses` at line 2 column 3"
    );
    assert_eq!(
        error("ingressStatus: pods"),
        "config.yaml: ingressStatus: unknown variant `pods`, expected `service` or `nodes` at line 1 column 16"
    );
    assert_eq!(
        error("addressPools: [{name: a, addresses: [10.0.0.1], autoAssign: 3}]"),
        "config.yaml: addressPools[0].autoAssign: invalid type: integer `3`, expected a boolean at line 1 column 61"
    );
    assert_eq!(
        error("[1]"),
        "config.yaml: invalid type: sequence, expected a mapping of addressPools and ingressStatus"
    );
    assert!(error("addressPools: [\n").starts_with("config.yaml: invalid YAML: "), "{}", error("addressPools: [\n"));
    assert_eq!(
        error("ingressStatus: nodes\n---\ningressStatus: service\n"),
        "config.yaml: holds more than one YAML document; the configuration is one mapping"
    );
}

#[test]
fn bad_addresses_are_named() {
    assert_eq!(
        error(&pools(&[("lan", &["10.0.0.0/24"]), ("wan", &["192.168.1.300/24"])])),
        "config.yaml: addressPools[1].addresses[0]: \"192.168.1.300/24\" is not an IPv4 address, CIDR or range"
    );
    assert_eq!(
        error(&pools(&[("lan", &["10.0.0.0/33"])])),
        "config.yaml: addressPools[0].addresses[0]: \"10.0.0.0/33\" has a prefix length of 33, more than 32"
    );
    assert_eq!(
        error(&pools(&[("lan", &["10.0.0.9-10.0.0.1"])])),
        "config.yaml: addressPools[0].addresses[0]: \"10.0.0.9-10.0.0.1\" starts after it ends"
    );
    assert_eq!(
        error(&pools(&[("lan", &["10.0.0.7/24"])])),
        "config.yaml: addressPools[0].addresses[0]: \"10.0.0.7/24\" has bits set after the prefix length \
         (the block is 10.0.0.0/24)"
    );
    assert_eq!(
        error(&pools(&[("lan", &["10.0.0.0/24", "\"fd00::/64\""])])),
        "config.yaml: addressPools[0].addresses[1]: \"fd00::/64\" is IPv6: IPv6 is not supported yet"
    );
    assert_eq!(
        error("addressPools: [{name: lan, addresses: []}]"),
        "config.yaml: addressPools[0].addresses: is empty; a pool needs at least one CIDR, range or address"
    );
}

#[test]
fn pools_may_not_overlap() {
    assert_eq!(
        error(&pools(&[("lan", &["192.168.1.240/28"]), ("wan", &["10.0.0.1", "192.168.1.250-192.168.1.251"])])),
        "config.yaml: addressPools[1].addresses[1]: \"192.168.1.250-192.168.1.251\" overlaps \
         addressPools[0].addresses[0] (\"192.168.1.240/28\" of pool \"lan\")"
    );
    assert_eq!(
        error(&pools(&[("lan", &["10.0.0.0/24", "10.0.0.255"])])),
        "config.yaml: addressPools[0].addresses[1]: \"10.0.0.255\" overlaps addressPools[0].addresses[0] \
         (\"10.0.0.0/24\" of pool \"lan\")"
    );
    assert!(parse(&pools(&[("lan", &["10.0.0.0/24"]), ("wan", &["10.0.1.0/24"])])).is_ok());
}

#[test]
fn pool_names_are_unique_dns_labels() {
    assert_eq!(
        error(&pools(&[("lan", &["10.0.0.1"]), ("wan", &["10.0.0.2"]), ("lan", &["10.0.0.3"])])),
        "config.yaml: addressPools[2].name: \"lan\" is used by addressPools[0] too"
    );
    for name in ["Lan", "-lan", "lan-", "l_an", "\"\"", &"a".repeat(64)] {
        let message = error(&pools(&[(name, &["10.0.0.1"])]));
        assert!(
            message.starts_with("config.yaml: addressPools[0].name: ") && message.contains("DNS-1123"),
            "{message}"
        );
    }
    assert!(parse(&pools(&[("0-lan-2", &["10.0.0.1"]), (&"a".repeat(63), &["10.0.0.2"])])).is_ok());
}

#[test]
fn load_reads_the_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "ingressStatus: nodes\n").unwrap();
    assert_eq!(AgentConfig::load(&path).unwrap().ingress_status, IngressStatusSource::Nodes);
    std::fs::write(&path, "ingressStatus: pods\n").unwrap();
    let message = AgentConfig::load(&path).unwrap_err().to_string();
    assert!(message.starts_with(&format!("{}: ingressStatus: unknown variant", path.display())), "{message}");
    let missing = dir.path().join("missing.yaml");
    let message = AgentConfig::load(&missing).unwrap_err().to_string();
    assert!(message.starts_with(&format!("{}: cannot read: ", missing.display())), "{message}");
}
