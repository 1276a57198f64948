//! The response body as it leaves for the client: holds its request's
//! in-flight guard, and counts the request in the metrics once the body is
//! done (its last frame sent, or the body dropped: the client left).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{BoxError, ProxyBody};
use crate::metrics::Observation;

pub(crate) struct MeteredBody<G> {
    inner: ProxyBody,
    _guard: G,
    /// `None` with metrics off, or once counted.
    observation: Option<Observation>,
    sent: u64,
}

impl<G> MeteredBody<G> {
    pub(crate) fn new(inner: ProxyBody, guard: G, observation: Option<Observation>) -> Self {
        Self { inner, _guard: guard, observation, sent: 0 }
    }

    fn finish(&mut self) {
        if let Some(observation) = self.observation.take() {
            observation.finish(self.sent);
        }
    }
}

impl<G: Unpin> Body for MeteredBody<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Poll::Ready(None | Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<G> Drop for MeteredBody<G> {
    fn drop(&mut self) {
        self.finish();
    }
}
