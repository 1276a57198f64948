//! Paths: normalising the request path before matching, and Ingress path
//! types.

use std::borrow::Cow;

/// An Ingress path's `pathType`. `ImplementationSpecific` is matched as
/// `Prefix` (regex paths arrive with the annotations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path holds an invalid percent-encoding")]
    BadEncoding,
    #[error("the path holds an encoded NUL, CR, LF or backslash")]
    Forbidden,
}

/// The request path as routes see it and as it is sent upstream (without
/// the query):
/// - percent-encoded unreserved characters (`%41`, `%2E`, `%7E`...) are
///   decoded; other encodings (`%2F` among them) stay encoded, uppercased,
///   so an encoded slash never separates path elements;
/// - `.` and `..` segments are removed (RFC 3986 5.2.4; `..` never climbs
///   above `/`);
/// - repeated slashes are kept (they are significant to some backends).
///
/// Errors are answered with 400 by the proxy.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    todo!("{path}")
}
