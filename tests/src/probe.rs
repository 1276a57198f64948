//! What `lb-probe` (a client run inside a pod or on a node, in that node's
//! cgroup) reports: one JSON line per exchange, parsed back by the tests.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One exchange with a Service, as the application saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The answering pod (`x-pod-name`, or the UDP echo's prefix).
    pub pod: Option<String>,
    /// `getpeername()` of the socket (TCP and connected UDP).
    pub peer: Option<SocketAddr>,
    /// The source address `recvfrom()` gave the answer (UDP).
    pub from: Option<SocketAddr>,
    /// The address the pod saw the connection come from (`x-remote-addr`, TCP).
    #[serde(default)]
    pub seen_from: Option<SocketAddr>,
    /// The failure, if any: `ECONNREFUSED`, `ETIMEDOUT`, `ECONNABORTED`,
    /// `timeout` (no answer in time), or an I/O error's text.
    pub error: Option<String>,
    /// Milliseconds since the probe started.
    pub at_ms: u64,
}

impl Exchange {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.pod.is_some()
    }
}

/// The lines of a probe's stdout that are exchanges.
pub fn parse_exchanges(stdout: &str) -> Vec<Exchange> {
    stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// The symbolic name of an errno the tests check for, else the error text.
pub fn error_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(nix::libc::ECONNREFUSED) => "ECONNREFUSED".into(),
        Some(nix::libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Some(nix::libc::ECONNABORTED) => "ECONNABORTED".into(),
        Some(nix::libc::EDESTADDRREQ) => "EDESTADDRREQ".into(),
        Some(nix::libc::EPERM) => "EPERM".into(),
        _ if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => "timeout".into(),
        _ => e.to_string(),
    }
}
