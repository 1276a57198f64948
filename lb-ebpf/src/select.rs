//! Choosing a backend for a new flow, shared by the XDP program and the
//! socket programs: session affinity first, then the service's Maglev row.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{Affinity, AffinityKey, BACKEND_DRAINING, Backend, Config, Service};

use crate::maps::{AFFINITY, BACKENDS, MAGLEV};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Who asks: the key of its session affinity (an IPv4 address for traffic
/// from outside, a network namespace cookie for sockets) and the hook's
/// scope (`SCOPE_*`), so the two kinds of client never collide.
#[derive(Clone, Copy)]
pub struct Client {
    pub key: u64,
    pub scope: u32,
}

/// The backend for a new flow of `service_id`: the one the client had
/// within the service's affinity timeout if it still exists and is not
/// draining, else the
/// Maglev slot of `hash`. With affinity, the choice is remembered (and the
/// timeout restarts, as kube-proxy's `recent` match does).
#[inline(always)]
pub fn pick(service_id: u32, service: &Service, hash: u32, client: Client, cfg: &Config) -> Option<(u32, Backend)> {
    if service.affinity_timeout_s == 0 {
        return maglev(service_id, hash, cfg);
    }
    let key = AffinityKey { client: client.key, service_id, scope: client.scope };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: copied out at once.
    if let Some(held) = unsafe { AFFINITY.get(&key) }.copied() {
        let timeout = service.affinity_timeout_s as u64 * NANOS_PER_SECOND;
        if now.saturating_sub(held.last_ns) <= timeout {
            // SAFETY: copied out at once. Backend ids are never reused, so
            // an id still present is still this service's backend.
            // A draining backend (terminating endpoint) keeps its open
            // flows but gets no new one, also not through affinity.
            if let Some(backend) = unsafe { BACKENDS.get(&held.backend_id) }.copied()
                && backend.flags & BACKEND_DRAINING == 0
            {
                let _ = AFFINITY.insert(&key, &Affinity { last_ns: now, ..held }, 0);
                return Some((held.backend_id, backend));
            }
        }
    }
    let (backend_id, backend) = maglev(service_id, hash, cfg)?;
    let _ = AFFINITY.insert(&key, &Affinity { backend_id, _pad: 0, last_ns: now }, 0);
    Some((backend_id, backend))
}

/// Maglev: the hash picks a slot of the service's row.
#[inline(always)]
fn maglev(service_id: u32, hash: u32, cfg: &Config) -> Option<(u32, Backend)> {
    if cfg.maglev_size == 0 {
        return None;
    }
    let slot = service_id.wrapping_mul(cfg.maglev_size) + hash % cfg.maglev_size;
    let backend_id = *MAGLEV.get(slot)?;
    // SAFETY: copied out at once.
    let backend = unsafe { *BACKENDS.get(&backend_id)? };
    Some((backend_id, backend))
}
