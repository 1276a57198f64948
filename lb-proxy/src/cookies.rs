//! Reading request cookies (every `Cookie` header, RFC 6265 syntax).

use cookie::Cookie;
use http::header::{COOKIE, HeaderMap};

/// The value of the first cookie named `name`.
pub(crate) fn value(headers: &HeaderMap, name: &str) -> Option<String> {
    let cookie = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)?;
    Some(cookie.value().to_string())
}
