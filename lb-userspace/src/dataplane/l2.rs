//! The ARP responder's maps: the addresses it answers for (`L2_VIPS`) and
//! the agent's heartbeat it checks (`AGENT_STATE`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use lb_common::{AgentState, L2Vip, L2VipKey};
use nix::time::{ClockId, clock_gettime};

use super::DataplaneMaps;

/// What one write of `L2_VIPS` changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Write {
    pub written: usize,
    pub deleted: usize,
}

impl DataplaneMaps {
    /// Makes `L2_VIPS` hold exactly `wanted`: entries found in the map
    /// (also those a previous agent left) that are not wanted go, changed
    /// ones are rewritten.
    pub fn set_l2_vips(&mut self, wanted: &BTreeMap<L2VipKey, L2Vip>) -> Result<L2Write> {
        let present: BTreeMap<L2VipKey, L2Vip> =
            self.l2_vips.iter().collect::<Result<_, _>>().context("reading L2_VIPS")?;
        let mut report = L2Write::default();
        for key in present.keys().filter(|key| !wanted.contains_key(key)) {
            self.l2_vips.remove(key).context("deleting from L2_VIPS")?;
            report.deleted += 1;
        }
        for (key, vip) in wanted.iter().filter(|(key, vip)| present.get(key) != Some(vip)) {
            self.l2_vips.insert(key, vip, 0).context("writing L2_VIPS")?;
            report.written += 1;
        }
        Ok(report)
    }

    /// Records that the agent is alive now; the ARP responder answers
    /// until the heartbeat is older than `lease`.
    pub fn heartbeat(&mut self, lease: Duration) -> Result<()> {
        // bpf_ktime_get_ns()'s clock.
        let now = clock_gettime(ClockId::CLOCK_MONOTONIC).context("reading CLOCK_MONOTONIC")?;
        let now = Duration::from(now).as_nanos() as u64;
        let lease = lease.as_nanos() as u64;
        self.agent_state.set(AgentState::HeartbeatLeaseNs as u32, lease, 0).context("writing AGENT_STATE")?;
        self.agent_state.set(AgentState::HeartbeatNs as u32, now, 0).context("writing AGENT_STATE")
    }
}
