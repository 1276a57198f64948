//! Frontends wanted by more than one service port: the first claim, by
//! Service (namespace, name) and then in the Service's compile order, wins;
//! the others are diagnosed. Kept per frontend, so a change of one Service
//! decides again only the frontends it claims or claimed.

use std::collections::{BTreeSet, HashMap};

use super::service::{Claim, Hook, ServiceOutput};
use crate::compile::endpoints::ServiceRef;
use crate::compile::tables::FrontendAddr;
use crate::diagnostics::Diagnostic;
use crate::snapshot::ObjectKey;

/// A claim: its Service and its position in the Service's claims.
pub(super) type ClaimId = (ObjectKey, usize);

/// A frontend of one hook.
pub(super) type FrontendSlot = (Hook, FrontendAddr);

#[derive(Debug, Default)]
pub(super) struct Claims {
    by_frontend: HashMap<FrontendSlot, BTreeSet<ClaimId>>,
}

impl Claims {
    /// Records the claims of `service`; returns the frontends they concern.
    pub fn add(&mut self, service: &ObjectKey, claims: &[Claim], touched: &mut BTreeSet<FrontendSlot>) {
        for (index, claim) in claims.iter().enumerate() {
            let slot = (claim.hook, claim.addr);
            self.by_frontend.entry(slot).or_default().insert((service.clone(), index));
            touched.insert(slot);
        }
    }

    /// Forgets the claims of `service` (as [`Claims::add`] recorded them).
    pub fn remove(&mut self, service: &ObjectKey, claims: &[Claim], touched: &mut BTreeSet<FrontendSlot>) {
        for (index, claim) in claims.iter().enumerate() {
            let slot = (claim.hook, claim.addr);
            if let Some(ids) = self.by_frontend.get_mut(&slot) {
                ids.remove(&(service.clone(), index));
                if ids.is_empty() {
                    self.by_frontend.remove(&slot);
                }
            }
            touched.insert(slot);
        }
    }

    /// The claim that holds `slot`, if any.
    pub fn winner(&self, slot: &FrontendSlot) -> Option<&ClaimId> {
        self.by_frontend.get(slot).and_then(|ids| ids.first())
    }

    /// The diagnostics of the claims on `slot` that lost to another service
    /// port (a port naming one frontend twice loses nothing).
    pub fn conflicts(&self, slot: &FrontendSlot, outputs: &HashMap<ObjectKey, ServiceOutput>) -> Vec<Diagnostic> {
        let Some(ids) = self.by_frontend.get(slot) else { return Vec::new() };
        let claim = |(service, index): &ClaimId| &outputs[service].claims[*index];
        let mut ids = ids.iter();
        let Some(winner) = ids.next().map(claim) else { return Vec::new() };
        let owner = &winner.entry.service.port;
        ids.map(claim)
            .filter(|lost| lost.entry.service.port != *owner)
            .map(|lost| {
                let port = &lost.entry.service.port;
                let svc = ServiceRef { namespace: &port.namespace, name: &port.name };
                let message = format!("frontend {} is already used by {owner}; ignored here", lost.addr);
                svc.diagnostic(lost.field.clone(), message)
            })
            .collect()
    }
}
