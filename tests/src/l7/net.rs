//! Loopback addresses that no other test (in this or a concurrent test
//! process) uses, and bounded waiting.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Addresses one process can hand out before they wrap.
const PER_PROCESS: u32 = 4 * 250;

/// A fresh address in 127.0.0.0/8 (all local on Linux): `127.X.Y.Z` with
/// X.Y derived from the process id and a counter, Z the counter. Never
/// 127.0.0.x. Concurrent test processes get disjoint blocks unless their
/// PIDs differ by a multiple of 16256.
pub fn unique_loopback_ip() -> Ipv4Addr {
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % PER_PROCESS;
    let slot = (std::process::id() * (PER_PROCESS / 250) + n / 250) % (254 * 256);
    let x = (slot / 256 + 1) as u8;
    let y = (slot % 256) as u8;
    let z = (n % 250 + 2) as u8;
    Ipv4Addr::new(127, x, y, z)
}

/// Polls `f` (every 50 ms) until it returns `Some`, for at most `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(v)) = tokio::time::timeout(left.max(Duration::from_millis(200)), f()).await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Blocking: waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration, alive: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !alive() {
            bail!("the process meant to listen on {addr} exited");
        }
        if Instant::now() >= deadline {
            bail!("nothing listens on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ips_are_distinct_and_not_127_0_0_x() {
        let ips: std::collections::HashSet<_> = (0..600).map(|_| unique_loopback_ip()).collect();
        assert_eq!(ips.len(), 600);
        assert!(ips.iter().all(|ip| ip.octets()[0] == 127 && ip.octets()[1] != 0 && ip.octets()[3] >= 2));
    }
}
