//! The bodies the proxy streams, and the wrappers that watch them on the
//! way through.
//!
//! - [`ProxyBody`]: what every response carries, an upstream's streamed
//!   body or a short body of our own ([`full`]).
//! - [`LimitedBody`]: the client's request body counted against
//!   `proxy-body-size`; it records why that body failed (`ClientFault`).
//! - [`ReclaimableBody`]: the request body shared by the attempts of one
//!   request, given back when an attempt sent nothing; it reports its
//!   [`Progress`] for the upstream's send and read timeouts.
//! - [`ReadGapBody`]: a response body that fails when the upstream is
//!   silent for the read timeout.
//! - [`TrackedBody`]: a response body that holds a guard until it is sent
//!   (a `limit-connections` slot).
//! - [`MeteredBody`]: the response body as it leaves for the client: holds
//!   its request in flight and counts it in the metrics when done.

mod limited;
mod metered;
mod progress;
mod read_gap;
mod reclaimable;
mod tracked;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

pub(crate) use limited::{LimitedBody, declared_over};
pub(crate) use metered::MeteredBody;
pub(crate) use progress::{Progress, Step};
pub(crate) use read_gap::ReadGapBody;
pub(crate) use reclaimable::ReclaimableBody;
pub(crate) use tracked::TrackedBody;

/// The error type of streamed bodies (either side's `hyper::Error`).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy writes: an upstream's streamed body
/// or a short body of our own.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}
