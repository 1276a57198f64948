//! This node's layer-2 speaker: from each snapshot (and each change of
//! which agents are alive), the addresses it answers ARP for, as entries
//! of the responder's `L2_VIPS` map, and the ones it just took over, which
//! it announces with a gratuitous ARP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use lb_common::{L2Vip, L2VipKey, addr_to_map};

use super::announce::{Announcement, Uplink, announcements};
use super::pools::metallb_pools;
use super::resources::{L2Advertisement, parse_advertisement};
use crate::diagnostics::Diagnostic;
use crate::snapshot::Snapshot;
use crate::status::ipam::AddressPool;

/// An uplink as the responder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Uplink {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// Its IPv4 addresses with their prefix lengths: the LANs it is on.
    pub networks: Vec<(Ipv4Addr, u8)>,
}

/// An address taken over on an uplink: what a gratuitous ARP announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takeover {
    pub ifindex: u32,
    pub interface: String,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

/// What one [`Speaker::update`] decided.
#[derive(Debug, Default)]
pub struct SpeakerUpdate {
    /// `L2_VIPS` as it must be.
    pub entries: BTreeMap<L2VipKey, L2Vip>,
    /// Addresses announced now that were not before.
    pub gained: Vec<Takeover>,
    /// Addresses no longer announced.
    pub lost: Vec<Announcement>,
    /// L2Advertisements that could not be used.
    pub diagnostics: Vec<Diagnostic>,
}

pub struct Speaker {
    node: String,
    uplinks: Vec<L2Uplink>,
    /// The `--config` pools: MetalLB pools clashing with them are not used.
    configured: Vec<AddressPool>,
    announced: BTreeSet<Announcement>,
}

impl Speaker {
    pub fn new(node: String, uplinks: Vec<L2Uplink>, configured: Vec<AddressPool>) -> Self {
        Self { node, uplinks, configured, announced: BTreeSet::new() }
    }

    /// What this node announces now.
    pub fn announced(&self) -> &BTreeSet<Announcement> {
        &self.announced
    }

    /// Decides what to announce from `snapshot`, with `alive` telling
    /// whose agents are alive.
    pub fn update(&mut self, snapshot: &Snapshot, alive: impl Fn(&str) -> bool) -> SpeakerUpdate {
        let (pools, _) = metallb_pools(&self.configured, &snapshot.ip_address_pools);
        let mut diagnostics = Vec::new();
        let mut advertisements: Vec<L2Advertisement> = Vec::new();
        for object in snapshot.l2_advertisements.iter() {
            match parse_advertisement(&object.to_value()) {
                Ok(advertisement) => advertisements.push(advertisement),
                Err(problem) => diagnostics.push(*problem),
            }
        }
        let uplinks: Vec<Uplink> = self
            .uplinks
            .iter()
            .flat_map(|u| {
                u.networks.iter().map(|&(addr, prefix_len)| Uplink { name: u.name.clone(), addr, prefix_len })
            })
            .collect();
        let now: BTreeSet<Announcement> =
            announcements(snapshot, &pools, &advertisements, &self.node, &uplinks, alive).into_iter().collect();
        let mut update = SpeakerUpdate { diagnostics, ..SpeakerUpdate::default() };
        for announcement in &now {
            let Some(takeover) = self.takeover(announcement) else { continue };
            let key = L2VipKey { ifindex: takeover.ifindex, addr: addr_to_map(takeover.ip) };
            update.entries.insert(key, L2Vip { mac: takeover.mac, _pad: [0; 2] });
            if !self.announced.contains(announcement) {
                update.gained.push(takeover);
            }
        }
        update.lost = self.announced.difference(&now).cloned().collect();
        self.announced = now;
        update
    }

    /// The gratuitous ARPs of everything announced now.
    pub fn takeovers(&self) -> Vec<Takeover> {
        self.announced.iter().filter_map(|a| self.takeover(a)).collect()
    }

    fn takeover(&self, announcement: &Announcement) -> Option<Takeover> {
        let uplink = self.uplinks.iter().find(|u| u.name == announcement.interface)?;
        Some(Takeover { ifindex: uplink.ifindex, interface: uplink.name.clone(), mac: uplink.mac, ip: announcement.ip })
    }
}

#[cfg(test)]
mod tests;
