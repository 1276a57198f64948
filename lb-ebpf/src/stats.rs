//! Per-CPU counters: global reasons and per-service traffic.

use lb_common::Counter;

use crate::maps::{COUNTERS, SERVICE_STATS};

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(value) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *value += 1 };
    }
}

#[inline(always)]
pub fn service_rx(service_id: u32, bytes: u64) {
    if let Some(stats) = SERVICE_STATS.get_ptr_mut(service_id) {
        // SAFETY: per-CPU slot.
        unsafe {
            (*stats).rx_packets += 1;
            (*stats).rx_bytes += bytes;
        }
    }
}

#[inline(always)]
pub fn service_tx(service_id: u32, bytes: u64) {
    if let Some(stats) = SERVICE_STATS.get_ptr_mut(service_id) {
        // SAFETY: per-CPU slot.
        unsafe {
            (*stats).tx_packets += 1;
            (*stats).tx_bytes += bytes;
        }
    }
}
