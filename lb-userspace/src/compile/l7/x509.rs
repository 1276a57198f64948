//! A certificate's validity period, read with `x509-parser`, to warn about
//! expired certificates (rustls checks the key, not the dates).

use k8s_openapi::jiff::Timestamp;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate's `notBefore` and `notAfter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Validity {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// The validity of a DER certificate; `None` when it cannot be read.
pub(super) fn validity(certificate: &[u8]) -> Option<Validity> {
    let (_, parsed) = X509Certificate::from_der(certificate).ok()?;
    let validity = parsed.validity();
    Some(Validity {
        not_before: Timestamp::from_second(validity.not_before.timestamp()).ok()?,
        not_after: Timestamp::from_second(validity.not_after.timestamp()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_validity_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["a.com".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let validity = validity(certificate.der()).unwrap();
        assert_eq!(validity.not_before, "2020-01-02T00:00:00Z".parse().unwrap());
        assert_eq!(validity.not_after, "2051-03-04T00:00:00Z".parse().unwrap());
    }

    #[test]
    fn garbage_has_no_validity() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x05, 0x30]), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(b"not a certificate"), None);
    }
}
