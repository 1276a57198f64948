//! `lb-bench l7`: one Ingress set served by lb (`lb run --no-xdp`), by
//! nginx configured as ingress-nginx would configure it and by HAProxy
//! configured as the HAProxy ingress controllers would, with the same
//! backends, all on loopback addresses: a static nginx backend for the
//! throughput and latency runs, echo pods (`lb-echo`) for the others. Each
//! proxy gets one CPU (`taskset`), the load generator and the backends the
//! other.
//!
//! - `max_rps`: h2load at fixed concurrency, HTTP/1.1 and h2, plaintext
//!   and TLS, on the `few` set and on 1,000 hosts;
//! - `rps_per_cpu_s`: the same runs' req/s per CPU-second of the proxy
//!   (all its processes), the CPU of the proxy, the backend and h2load
//!   recorded beside it, and h2load's rate without a proxy;
//! - `latency_p50_ms` / `latency_p99_ms`: h2load at a fixed offered rate;
//! - `reload_failed_requests` / `reload_closed_websockets`: N changes under
//!   load (`nginx -s reload`, HAProxy's master-worker reload, lb's swap);
//! - `upgrade_failed_requests`: N upgrades under load (a new lb beside
//!   the old one then SIGTERM to the old, nginx's binary upgrade, `haproxy
//!   -sf`), with `net.ipv4.tcp_migrate_req` at 0 and 1;
//! - `memory_mib`: RSS of all the proxy's processes with 1,000 and 10,000
//!   Ingresses.

mod backend;
pub(crate) mod cpu;
mod haproxy;
mod lbagent;
mod load;
mod model;
mod nginx;
mod percore;
mod plan;
mod proxy;
mod reload;
mod rows;
mod run;
mod upgrade;

pub use run::run;
