//! Certificates by TLS server name.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

/// The certificates of the `spec.tls` sections, by host: exact names and
/// `*.suffix` wildcards (one label).
#[derive(Clone, Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertStore {
    /// The certificate for an SNI name (already [normalised](crate::host::normalize_host)):
    /// an exact entry, else the wildcard entry for its parent domain. `None`
    /// when there is none (the proxy then presents its default certificate).
    pub fn resolve(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        todo!("{server_name} {:?} {:?}", self.exact.len(), self.wildcard.len())
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}
