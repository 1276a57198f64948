//! Certificates by TLS server name.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::host::{HostPattern, wildcard_suffix};

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
        self.exact
            .get(server_name)
            .or_else(|| wildcard_suffix(server_name).and_then(|suffix| self.wildcard.get(suffix)))
            .cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The number of host patterns with a certificate.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether `host` has a certificate of its own (not through a wildcard).
    pub fn contains(&self, host: &HostPattern) -> bool {
        match host {
            HostPattern::Exact(name) => self.exact.contains_key(name),
            HostPattern::Wildcard(suffix) => self.wildcard.contains_key(suffix),
        }
    }

    /// Adds the certificate of `host` unless it has one already; returns
    /// whether it was added.
    pub(crate) fn insert(&mut self, host: &HostPattern, key: Arc<CertifiedKey>) -> bool {
        let map = match host {
            HostPattern::Exact(_) => &mut self.exact,
            HostPattern::Wildcard(_) => &mut self.wildcard,
        };
        match map.entry(host.name().to_string()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(entry) => {
                entry.insert(key);
                true
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustls::crypto::ring::default_provider;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A certified key whose certificate bytes say `label` (only the
    /// identity of the key matters to the store, not its validity).
    pub(crate) fn certified_key(label: &str) -> Arc<CertifiedKey> {
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let signing_key = default_provider().key_provider.load_private_key(key).unwrap();
        Arc::new(CertifiedKey::new(vec![CertificateDer::from(label.as_bytes().to_vec())], signing_key))
    }

    fn label(key: &CertifiedKey) -> &[u8] {
        key.cert[0].as_ref()
    }

    #[test]
    fn resolves_exact_then_wildcard_for_one_label() {
        let mut store = CertStore::default();
        assert!(store.is_empty());
        assert!(store.insert(&HostPattern::parse("a.foo.com").unwrap(), certified_key("exact")));
        assert!(store.insert(&HostPattern::parse("*.foo.com").unwrap(), certified_key("wildcard")));
        assert_eq!(store.len(), 2);
        assert_eq!(label(&store.resolve("a.foo.com").unwrap()), b"exact");
        assert_eq!(label(&store.resolve("b.foo.com").unwrap()), b"wildcard");
        assert!(store.resolve("foo.com").is_none());
        assert!(store.resolve("x.b.foo.com").is_none());
        assert!(store.resolve("other.com").is_none());
        assert!(store.contains(&HostPattern::parse("*.foo.com").unwrap()));
        assert!(!store.contains(&HostPattern::parse("b.foo.com").unwrap()));
    }

    #[test]
    fn first_certificate_for_a_host_wins() {
        let mut store = CertStore::default();
        let host = HostPattern::parse("a.com").unwrap();
        assert!(store.insert(&host, certified_key("first")));
        assert!(!store.insert(&host, certified_key("second")));
        assert_eq!(label(&store.resolve("a.com").unwrap()), b"first");
    }
}
