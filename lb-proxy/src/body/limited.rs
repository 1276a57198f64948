//! `proxy-body-size` (nginx's `client_max_body_size`): a request that
//! declares a longer body (`Content-Length`) is answered 413 before
//! anything goes upstream; a body without a declared length (chunked,
//! HTTP/2) is counted as it is forwarded, and the frame that crosses the
//! limit ends it with an error instead: the upstream request is aborted
//! and the client gets 413 if no response started.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::BoxError;

/// Whether a body with this size hint declares more than `limit` bytes.
pub(crate) fn declared_over(hint: &SizeHint, limit: Option<u64>) -> bool {
    limit.is_some_and(|limit| hint.lower() > limit)
}

/// The error a body over its limit ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than {0} bytes")]
pub(crate) struct TooLarge(pub u64);

/// The client's request body, counted against a limit.
pub(crate) struct LimitedBody<B = Incoming> {
    inner: B,
    limit: Option<u64>,
    seen: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B> LimitedBody<B> {
    pub(crate) fn new(inner: B, limit: Option<u64>) -> Self {
        Self { inner, limit, seen: 0, exceeded: Arc::new(AtomicBool::new(false)) }
    }

    /// Set once the body went over its limit.
    pub(crate) fn exceeded_flag(&self) -> Arc<AtomicBool> {
        self.exceeded.clone()
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
            None => return Poll::Ready(None),
        };
        if let (Some(limit), Some(data)) = (self.limit, frame.data_ref()) {
            self.seen = self.seen.saturating_add(data.len() as u64);
            if self.seen > limit {
                self.exceeded.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(Box::new(TooLarge(limit)))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    #[tokio::test]
    async fn bodies_over_the_limit_end_with_an_error() {
        let body = || Full::new(Bytes::from_static(b"0123456789"));
        let within = LimitedBody::new(body(), Some(10));
        let flag = within.exceeded_flag();
        assert_eq!(within.collect().await.unwrap().to_bytes().len(), 10);
        assert!(!flag.load(Ordering::Acquire));
        let over = LimitedBody::new(body(), Some(9));
        let flag = over.exceeded_flag();
        assert!(over.collect().await.unwrap_err().is::<TooLarge>());
        assert!(flag.load(Ordering::Acquire));
        assert!(LimitedBody::new(body(), None).collect().await.is_ok());
    }

    #[test]
    fn declared_lengths() {
        assert!(declared_over(&SizeHint::with_exact(11), Some(10)));
        assert!(!declared_over(&SizeHint::with_exact(10), Some(10)));
        assert!(!declared_over(&SizeHint::with_exact(1 << 40), None));
        // Unknown length (chunked): counted while forwarded instead.
        assert!(!declared_over(&SizeHint::new(), Some(0)));
    }
}
