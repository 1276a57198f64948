//! A response body that holds a guard until it is sent or dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{BoxError, ProxyBody};

/// A response body that keeps `guard` until it is sent or dropped: its
/// request in flight (`conn::ActiveRequest`), a `limit-connections` slot.
pub(crate) struct TrackedBody<G> {
    inner: ProxyBody,
    _guard: G,
}

impl<G> TrackedBody<G> {
    pub(crate) fn new(inner: ProxyBody, guard: G) -> Self {
        Self { inner, _guard: guard }
    }
}

impl<G: Unpin> Body for TrackedBody<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
