//! Test certificates: a CA that signs leaf certificates for given names
//! (wildcards included), self-signed pairs, and reading the names of a
//! certificate a server presented.

use anyhow::{Context, Result, anyhow};
use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    /// The names it was issued for.
    pub names: Vec<String>,
}

impl CertPair {
    /// `base64(tls.crt)`, as in a Secret's `data`.
    pub fn cert_b64(&self) -> String {
        b64(self.cert_pem.as_bytes())
    }

    /// `base64(tls.key)`, as in a Secret's `data`.
    pub fn key_b64(&self) -> String {
        b64(self.key_pem.as_bytes())
    }
}

/// Standard base64, no newlines.
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "lb test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self { issuer: Issuer::new(params, key), cert_pem: cert.pem(), cert_der: cert.der().to_vec() })
    }

    /// A leaf certificate for `names` (DNS names, e.g. `a.com`, `*.foo.com`)
    /// signed by this CA; the first name is also the subject CN.
    pub fn issue(&self, names: &[&str]) -> Result<CertPair> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first.as_str());
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem(), cert_der: cert.der().to_vec(), names })
    }

    /// A root store trusting only this CA.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(self.cert_der.clone())).expect("the test CA is a valid certificate");
        roots
    }
}

/// A self-signed certificate for `names`.
pub fn self_signed(names: &[&str]) -> Result<CertPair> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(names.clone())?.self_signed(&key)?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem(), cert_der: cert.der().to_vec(), names })
}

/// What a presented certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// subjectAltName dNSName entries.
    pub dns_names: Vec<String>,
    /// Subject common name(s).
    pub subject_cn: Vec<String>,
    /// Issuer common name(s).
    pub issuer_cn: Vec<String>,
    /// Subject == issuer.
    pub self_issued: bool,
}

/// Parses a DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| anyhow!("parsing certificate: {e}"))?;
    let dns_names = cert
        .subject_alternative_name()
        .context("reading subjectAltName")?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let cns = |name: &x509_parser::x509::X509Name<'_>| -> Vec<String> {
        name.iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_string)).collect()
    };
    Ok(CertInfo {
        dns_names,
        subject_cn: cns(cert.subject()),
        issuer_cn: cns(cert.issuer()),
        self_issued: cert.subject() == cert.issuer(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_issues_wildcard_leaf_and_names_parse_back() {
        let ca = TestCa::new().unwrap();
        let leaf = ca.issue(&["*.foo.com", "foo.com"]).unwrap();
        let info = cert_info(&leaf.cert_der).unwrap();
        assert_eq!(info.dns_names, vec!["*.foo.com", "foo.com"]);
        assert_eq!(info.issuer_cn, vec!["lb test CA"]);
        assert!(!info.self_issued);
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
        let ss = self_signed(&["x.test"]).unwrap();
        assert_eq!(cert_info(&ss.cert_der).unwrap().dns_names, vec!["x.test"]);
    }
}
