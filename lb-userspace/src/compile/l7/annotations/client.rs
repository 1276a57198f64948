//! `whitelist-source-range`, `denylist-source-range`, `limit-rps`,
//! `limit-rpm`, `limit-connections`, `enable-cors` and `cors-*`.

use lb_routes::ClientPolicy;

use super::{Rejection, Values};

/// The annotations parsed here (names without the prefix).
pub(super) const NAMES: &[&str] = &[];

pub(super) fn parse(_values: &Values<'_>) -> Result<ClientPolicy, Rejection> {
    Ok(ClientPolicy::default())
}
