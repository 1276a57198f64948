//! How a route talks to its upstream: `backend-protocol`, `upstream-vhost`,
//! `proxy-body-size`, the `proxy-*-timeout`s, `proxy-next-upstream`.

/// The upstream side of a route's policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamPolicy {}
