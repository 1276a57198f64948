//! `canary: "true"` and its companions `canary-weight`,
//! `canary-weight-total`, `canary-by-header` (+ `-value`, `-pattern`) and
//! `canary-by-cookie`. On an Ingress that is not a canary they mean
//! nothing (as in ingress-nginx) but must still be well-formed.

use lb_routes::canary::DEFAULT_WEIGHT_TOTAL;
use lb_routes::{CanaryHeader, CanaryRule, HeaderMatch, HeaderPattern};

use super::{Rejection, Values, is_cookie_token, shorten};

/// The annotations parsed here (names without the prefix).
pub(super) const NAMES: &[&str] = &[
    "canary",
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
];

/// The largest `canary-weight-total`.
const MAX_WEIGHT_TOTAL: u32 = 1_000_000;

/// The canary rule of a canary Ingress; `None` for the others.
pub(super) fn parse(values: &Values<'_>) -> Result<Option<CanaryRule>, Rejection> {
    let enabled = values.boolean("canary")?.unwrap_or(false);
    let weight_total = values
        .parsed("canary-weight-total", |v| match v.trim().parse::<u32>() {
            Ok(total) if (1..=MAX_WEIGHT_TOTAL).contains(&total) => Ok(total),
            _ => Err(format!("{:?} is not a whole number from 1 to {MAX_WEIGHT_TOTAL}", shorten(v))),
        })?
        .unwrap_or(DEFAULT_WEIGHT_TOTAL);
    let weight = values
        .parsed("canary-weight", |v| match v.trim().parse::<u32>() {
            Ok(weight) if weight <= weight_total => Ok(weight),
            _ => Err(format!("{:?} is not a whole number from 0 to {weight_total} (canary-weight-total)", shorten(v))),
        })?
        .unwrap_or(0);
    let name = values.parsed("canary-by-header", |v| {
        if is_header_name(v) {
            Ok(v.to_ascii_lowercase())
        } else {
            Err(format!("{:?} is not a header name", shorten(v)))
        }
    })?;
    // ingress-nginx's own check for this value ("basic characters").
    let value = values.parsed("canary-by-header-value", |v| {
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:/".contains(&b)) {
            Ok(v.to_string())
        } else {
            Err(format!("{:?}: only letters, digits and - . _ ~ : / are allowed", shorten(v)))
        }
    })?;
    let pattern = values.parsed("canary-by-header-pattern", HeaderPattern::new)?;
    let by_cookie = values.parsed("canary-by-cookie", |v| {
        if is_cookie_token(v) { Ok(v.to_string()) } else { Err(format!("{:?} is not a cookie name", shorten(v))) }
    })?;
    if !enabled {
        return Ok(None);
    }
    // `-value` and `-pattern` without `canary-by-header` mean nothing (as
    // in ingress-nginx).
    let by_header = match name {
        None => None,
        Some(name) => {
            // ingress-nginx: the value wins over the pattern.
            let matcher = match (value, pattern) {
                (Some(value), _) => HeaderMatch::Value(value),
                (None, Some(pattern)) => HeaderMatch::Pattern(pattern),
                (None, None) => HeaderMatch::AlwaysNever,
            };
            Some(CanaryHeader { name, matcher })
        }
    };
    Ok(Some(CanaryRule { by_header, by_cookie, weight, weight_total }))
}

/// An HTTP field name (an RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
