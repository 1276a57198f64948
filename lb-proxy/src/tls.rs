//! TLS termination: certificates chosen by SNI from the current route
//! table, a self-signed default certificate, ALPN `h2` / `http/1.1`.
//!
//! The crypto provider is always rustls' `ring` provider, passed
//! explicitly: the process installs no default provider.

use std::sync::Arc;

use arc_swap::ArcSwap;
use lb_routes::RouteTable;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The common name of the default certificate (what clients see for
/// unknown or missing SNI names, like ingress-nginx's "Kubernetes Ingress
/// Controller Fake Certificate").
pub(crate) const DEFAULT_CERT_CN: &str = "lb default certificate";

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A new self-signed certificate (ECDSA P-256) with common name
/// [`DEFAULT_CERT_CN`] and no subject alternative names.
pub(crate) fn default_certificate() -> anyhow::Result<Arc<CertifiedKey>> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, DEFAULT_CERT_CN);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    Ok(Arc::new(CertifiedKey::from_der(chain, key_der, &provider())?))
}

/// Picks the certificate for each handshake from the route table current
/// at that moment (one `ArcSwap` load), so a swapped table serves new
/// certificates to the next handshake without touching open connections.
#[derive(Debug)]
pub(crate) struct SniResolver {
    routes: Arc<ArcSwap<RouteTable>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub(crate) fn new(routes: Arc<ArcSwap<RouteTable>>, default: Arc<CertifiedKey>) -> Self {
        Self { routes, default }
    }

    fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        server_name
            .and_then(lb_routes::host::normalize_host)
            .and_then(|name| self.routes.load().certificates().resolve(&name))
            .unwrap_or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()))
    }
}

/// The server configuration: TLS 1.2 and 1.3 (rustls' safe defaults), no
/// client authentication, ALPN `h2` then `http/1.1`.
pub(crate) fn server_config(resolver: SniResolver) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_certificate_is_usable() {
        let cert = default_certificate().unwrap();
        assert_eq!(cert.cert.len(), 1);
        assert!(cert.keys_match().is_ok());
    }

    #[test]
    fn no_sni_gets_default() {
        let default = default_certificate().unwrap();
        let routes = Arc::new(ArcSwap::from_pointee(RouteTable::empty()));
        let resolver = SniResolver::new(routes, default.clone());
        assert!(Arc::ptr_eq(&resolver.pick(None), &default));
        server_config(resolver).unwrap();
    }
}
