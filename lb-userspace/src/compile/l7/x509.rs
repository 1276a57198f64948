//! A certificate's validity period, read with `x509-parser`, to warn about
//! expired certificates (rustls checks the key, not the dates), and what
//! the metrics say of it.

use k8s_openapi::jiff::Timestamp;
use x509_parser::oid_registry::OID_X509_SERIALNUMBER;
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

/// A certificate's `notAfter` (seconds since 1970) and its identifier as
/// ingress-nginx's metrics give it: the issuer's `serialNumber` attribute
/// (usually empty), `-`, the certificate's serial number in decimal.
pub(super) fn expiry_and_identifier(certificate: &[u8]) -> Option<(i64, String)> {
    let (_, parsed) = X509Certificate::from_der(certificate).ok()?;
    let issuer_serial = parsed.issuer().iter_by_oid(&OID_X509_SERIALNUMBER).next().and_then(|a| a.as_str().ok());
    let identifier = format!("{}-{}", issuer_serial.unwrap_or_default(), parsed.serial);
    Some((parsed.validity().not_after.timestamp(), identifier))
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
    fn reads_the_expiry_and_identifier_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["a.com".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0x00]));
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let expiry = "2051-03-04T00:00:00Z".parse::<Timestamp>().unwrap().as_second();
        assert_eq!(expiry_and_identifier(certificate.der()), Some((expiry, "-256".to_string())));
        assert_eq!(expiry_and_identifier(b"not a certificate"), None);
    }

    #[test]
    fn garbage_has_no_validity() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x05, 0x30]), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(b"not a certificate"), None);
    }
}
