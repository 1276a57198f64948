//! Certificates from TLS Secrets (`spec.tls[].secretName`).
//!
//! A Secret is usable when `tls.crt` holds a PEM certificate chain (leaf
//! first) and `tls.key` a PEM private key (PKCS#8, PKCS#1 or SEC1) that
//! belongs to the leaf certificate. Both are read from `data`, else from
//! `stringData` (written by hand in manifest files). The Secret's `type`
//! is not checked, as ingress-nginx does not check it.
//!
//! Problems are diagnosed on the Secret (its field) or, when it is
//! missing, on the Ingress's `spec.tls[i].secretName`; the hosts then get
//! no certificate (the proxy presents its default one). An expired or not
//! yet valid certificate is served, with a diagnostic.
//!
//! Each Secret is parsed once per compilation, however many Ingresses
//! name it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use rustls::crypto::ring;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};

use super::{IngressRef, x509};
use crate::diagnostics::Diagnostic;
use crate::snapshot::object_key;

const CERTIFICATE_KEY: &str = "tls.crt";
const PRIVATE_KEY_KEY: &str = "tls.key";

/// Loads certificates from the snapshot's Secrets, each Secret once.
pub(super) struct CertificateLoader<'a> {
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    /// Parsed Secrets by (namespace, name); `None`: unusable (diagnosed
    /// when parsed).
    parsed: HashMap<(&'a str, &'a str), Option<Arc<CertifiedKey>>>,
    now: Timestamp,
}

impl<'a> CertificateLoader<'a> {
    pub fn new(secrets: impl IntoIterator<Item = &'a Arc<Secret>>) -> Self {
        let secrets = secrets.into_iter().map(|s| (secret_key(s), &**s)).collect();
        // Only for the expiry warning: a clock before 1970 warns of nothing.
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let now = i64::try_from(since_epoch.as_secs()).ok().and_then(|s| Timestamp::from_second(s).ok());
        Self { secrets, parsed: HashMap::new(), now: now.unwrap_or(Timestamp::UNIX_EPOCH) }
    }

    /// The certificate of the Secret `name` in the Ingress's namespace,
    /// named at `field` of the Ingress `ing`. `None` (diagnosed) when the
    /// Secret is missing or unusable.
    pub fn load(
        &mut self,
        ing: &IngressRef<'_>,
        name: &str,
        field: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Arc<CertifiedKey>> {
        let Some(&secret) = self.secrets.get(&(ing.namespace, name)) else {
            let message = format!(
                "Secret {}/{name} not found; the hosts of this TLS section get the default certificate",
                ing.namespace
            );
            diagnostics.push(ing.diagnostic(field, message));
            return None;
        };
        let key = secret_key(secret);
        let now = self.now;
        let secret_ref = SecretRef { namespace: key.0, name: key.1 };
        self.parsed.entry(key).or_insert_with(|| parse(&secret_ref, secret, now, diagnostics)).clone()
    }
}

/// (namespace, name) of a Secret, a missing namespace meaning `default`.
fn secret_key(secret: &Secret) -> (&str, &str) {
    let (namespace, name) = object_key(&secret.metadata);
    (if namespace.is_empty() { "default" } else { namespace }, name)
}

/// A Secret, as diagnostics name it.
struct SecretRef<'a> {
    namespace: &'a str,
    name: &'a str,
}

impl SecretRef<'_> {
    fn diagnostic(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::for_object("Secret", self.namespace, self.name, format!("data.{key}"), message)
    }
}

/// The certified key of a TLS Secret; `None` when it is unusable.
fn parse(
    secret_ref: &SecretRef<'_>,
    secret: &Secret,
    now: Timestamp,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Arc<CertifiedKey>> {
    const UNUSED: &str = "the Secret is not used";
    let mut value = |key: &str| {
        let value = data(secret, key);
        if value.is_none() {
            diagnostics.push(secret_ref.diagnostic(key, format!("missing; {UNUSED}")));
        }
        value
    };
    let (chain, key) = (value(CERTIFICATE_KEY), value(PRIVATE_KEY_KEY));
    let (chain, key) = (chain?, key?);
    let chain = match certificate_chain(chain) {
        Ok(chain) => chain,
        Err(problem) => {
            diagnostics.push(secret_ref.diagnostic(CERTIFICATE_KEY, format!("{problem}; {UNUSED}")));
            return None;
        }
    };
    let key = match PrivateKeyDer::from_pem_slice(key) {
        Ok(key) => key,
        Err(e) => {
            let problem = pem_problem(&e, "PRIVATE KEY (PKCS#8, PKCS#1 or SEC1)");
            diagnostics.push(secret_ref.diagnostic(PRIVATE_KEY_KEY, format!("{problem}; {UNUSED}")));
            return None;
        }
    };
    let signing_key = match ring::default_provider().key_provider.load_private_key(key) {
        Ok(signing_key) => signing_key,
        Err(e) => {
            let message = format!("the private key is not usable ({e}); {UNUSED}");
            diagnostics.push(secret_ref.diagnostic(PRIVATE_KEY_KEY, message));
            return None;
        }
    };
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key cannot tell its public key; rustls accepts it too.
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            let message = format!("the private key does not belong to the first certificate of tls.crt; {UNUSED}");
            diagnostics.push(secret_ref.diagnostic(PRIVATE_KEY_KEY, message));
            return None;
        }
        Err(e) => {
            let message = format!("the first certificate is not valid X.509 ({e}); {UNUSED}");
            diagnostics.push(secret_ref.diagnostic(CERTIFICATE_KEY, message));
            return None;
        }
    }
    if let Some(validity) = certified.cert.first().and_then(|leaf| x509::validity(leaf)) {
        if now > validity.not_after {
            let message = format!("the certificate expired at {}; it is still served", validity.not_after);
            diagnostics.push(secret_ref.diagnostic(CERTIFICATE_KEY, message));
        } else if now < validity.not_before {
            let message = format!("the certificate is not valid before {}; it is still served", validity.not_before);
            diagnostics.push(secret_ref.diagnostic(CERTIFICATE_KEY, message));
        }
    }
    Some(Arc::new(certified))
}

/// `key` of the Secret's `data`, else of its `stringData`.
fn data<'s>(secret: &'s Secret, key: &str) -> Option<&'s [u8]> {
    let from_data = secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.as_slice());
    let from_string_data = || secret.string_data.as_ref().and_then(|d| d.get(key)).map(|v| v.as_bytes());
    from_data.or_else(from_string_data).filter(|v| !v.is_empty())
}

/// The certificates of a PEM chain (other PEM sections are skipped).
fn certificate_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<_> =
        CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| pem_problem(&e, "CERTIFICATE"))?;
    if chain.is_empty() {
        return Err(pem_problem(&pem::Error::NoItemsFound, "CERTIFICATE"));
    }
    Ok(chain)
}

/// A PEM error, in words (`what`: the section expected).
fn pem_problem(error: &pem::Error, what: &str) -> String {
    match error {
        pem::Error::NoItemsFound => format!("no {what} PEM section found"),
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64".into(),
        other => format!("not valid PEM ({other})"),
    }
}
