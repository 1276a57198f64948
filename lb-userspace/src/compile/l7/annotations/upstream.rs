//! `backend-protocol`, `upstream-vhost`, `proxy-body-size`, the
//! `proxy-*-timeout`s, `proxy-next-upstream` (+ `-tries`).

use lb_routes::UpstreamPolicy;

use super::{Rejection, Values};

/// The annotations parsed here (names without the prefix).
pub(super) const NAMES: &[&str] = &[];

pub(super) fn parse(_values: &Values<'_>) -> Result<UpstreamPolicy, Rejection> {
    Ok(UpstreamPolicy::default())
}
