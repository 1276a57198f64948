//! kube-proxy's data-path configuration for a [`Cluster`](crate::cluster::Cluster),
//! in the layouts kube-proxy itself writes: [`iptables`] (`iptables-restore`
//! input) and [`nftables`] (`nft -f` input). Applied only inside the
//! benches' own network namespaces.

pub mod iptables;
pub mod nftables;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lb_testbed::netns;

/// Prefix of every namespace [`Namespace`] creates: `lbbench-kp-{pid}-{tag}`.
const NAMESPACE_PREFIX: &str = "lbbench-kp-";

/// A network namespace of the bench's own for kube-proxy's rule sets,
/// deleted on drop (also when a measurement fails).
pub struct Namespace {
    name: String,
}

impl Namespace {
    pub fn create(tag: &str) -> Result<Self> {
        let name = format!("{NAMESPACE_PREFIX}{}-{tag}", std::process::id());
        netns::ip(&["netns", "add", &name])?;
        Ok(Self { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(e) = netns::ip(&["netns", "del", &self.name]) {
            eprintln!("[lb-bench] could not delete network namespace {}: {e:#}", self.name);
        }
    }
}

/// Deletes namespaces left by runs that died before their cleanup (their
/// process is gone).
pub fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix(NAMESPACE_PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        let alive = std::path::Path::new("/proc").join(pid).exists();
        if !alive && pid.parse::<u32>().is_ok() {
            let _ = netns::ip(&["netns", "del", &name]);
        }
    }
}

/// 16 base32 characters of a hash of `parts`: the shape of kube-proxy's
/// chain-name suffixes (it takes them from SHA-256; any stable hash gives
/// the same rule set shape).
pub fn chain_hash(parts: &[&str]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let joined = parts.join("\u{0}");
    let mut h = xxhash_rust::xxh3::xxh3_128(joined.as_bytes());
    (0..16)
        .map(|_| {
            let c = ALPHABET[(h & 31) as usize] as char;
            h >>= 5;
            c
        })
        .collect()
}

/// Runs `program args` inside network namespace `ns` (the child inherits
/// the namespace of the thread that starts it) with `input` on stdin;
/// returns the wall time from start to exit. Fails with the program's
/// stderr (first lines) if it exits non-zero.
pub fn run_with_stdin(ns: &str, program: &str, args: &[&str], input: &str) -> Result<Duration> {
    let label = format!("{program} {}", args.join(" "));
    let result = lb_testbed::in_netns(ns, || -> Result<(Duration, std::process::Output)> {
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting `{label}` (is it installed? `cargo xtask setup`)"))?;
        let mut stdin = child.stdin.take().context("child stdin")?;
        let write = stdin.write_all(input.as_bytes());
        drop(stdin);
        let output = child.wait_with_output().with_context(|| format!("waiting for `{label}`"))?;
        write.with_context(|| format!("writing {} bytes to `{label}`", input.len()))?;
        Ok((started.elapsed(), output))
    })??;
    let (took, output) = result;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let head: Vec<&str> = stderr.lines().take(8).collect();
        bail!("`{label}` in {ns} failed ({}): {}", output.status, head.join("\n"));
    }
    Ok(took)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use crate::cluster::{Cluster, Endpoint, Node, Protocol, Service};

    pub fn node() -> Node {
        Node { name: "node1".into(), ips: vec![Ipv4Addr::new(192, 168, 1, 11)], cluster_cidr: "10.244.0.0/16".into() }
    }

    /// One background service and the users' NodePort service with three pods.
    pub fn three_pod_cluster() -> Cluster {
        let ep = |ip: [u8; 4], node: &str| Endpoint { ip: Ipv4Addr::from(ip), node: node.into() };
        Cluster::background(1).with(Service {
            namespace: "default".into(),
            name: "my-service-nodeport".into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Ipv4Addr::new(10, 96, 100, 7),
            port: 80,
            target_port: 80,
            node_port: Some(30007),
            external_ips: vec![],
            endpoints: vec![
                ep([10, 244, 1, 10], "node1"),
                ep([10, 244, 1, 11], "node1"),
                ep([10, 244, 2, 10], "node2"),
            ],
        })
    }

    #[test]
    fn chain_hashes_are_stable_and_distinct() {
        let a = super::chain_hash(&["default/a:http", "tcp"]);
        assert_eq!(a.len(), 16);
        assert_eq!(a, super::chain_hash(&["default/a:http", "tcp"]));
        assert_ne!(a, super::chain_hash(&["default/a:http", "udp"]));
        assert!(a.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
    }
}
