//! `proxy-body-size` (nginx's `client_max_body_size`): a request that
//! declares a longer body (`Content-Length`) is answered 413 before
//! anything goes upstream; a body without a declared length (chunked,
//! HTTP/2) is counted as it is forwarded, and the frame that crosses the
//! limit ends it with an error instead: the upstream request is aborted
//! and the client gets 413 if no response started.
//!
//! The same wrapper, being the one next to the client's body, records why
//! that body failed ([`ClientFault`]): a body over the limit, or one the
//! client broke (a malformed chunked encoding, an oversized chunk
//! extension, a connection closed mid-body). The upstream request fails
//! with it, and the fault, not the upstream, decides the answer: 413 or
//! 400, never 502.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::BoxError;
use crate::errors::{ProxyError, error_chain};

/// Whether a body with this size hint declares more than `limit` bytes.
pub(crate) fn declared_over(hint: &SizeHint, limit: Option<u64>) -> bool {
    limit.is_some_and(|limit| hint.lower() > limit)
}

/// The error a body over its limit ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than {0} bytes")]
pub(crate) struct TooLarge(pub u64);

/// Why the client's request body ended in an error (the first reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClientFault {
    /// Over `proxy-body-size`.
    TooLarge,
    /// The client's body stream failed, with this error chain.
    Broken(String),
}

impl ClientFault {
    /// What the client is answered when no response started.
    pub(crate) fn to_error(&self) -> ProxyError {
        match self {
            ClientFault::TooLarge => ProxyError::BodyTooLarge,
            ClientFault::Broken(message) => ProxyError::BadRequestBody(message.clone()),
        }
    }
}

/// The client's request body, counted against a limit; its failure is
/// recorded as the client's.
pub(crate) struct LimitedBody<B = Incoming> {
    inner: B,
    limit: Option<u64>,
    seen: u64,
    fault: Arc<OnceLock<ClientFault>>,
}

impl<B> LimitedBody<B> {
    pub(crate) fn new(inner: B, limit: Option<u64>) -> Self {
        Self { inner, limit, seen: 0, fault: Arc::new(OnceLock::new()) }
    }

    /// Set once the body failed (see [`ClientFault`]).
    pub(crate) fn fault(&self) -> Arc<OnceLock<ClientFault>> {
        self.fault.clone()
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
            Some(Err(error)) => {
                let error: BoxError = error.into();
                let _ = self.fault.set(ClientFault::Broken(error_chain(&*error)));
                return Poll::Ready(Some(Err(error)));
            }
            None => return Poll::Ready(None),
        };
        if let (Some(limit), Some(data)) = (self.limit, frame.data_ref()) {
            self.seen = self.seen.saturating_add(data.len() as u64);
            if self.seen > limit {
                let _ = self.fault.set(ClientFault::TooLarge);
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
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    #[tokio::test]
    async fn bodies_over_the_limit_end_with_an_error() {
        let body = || Full::new(Bytes::from_static(b"0123456789"));
        let within = LimitedBody::new(body(), Some(10));
        let fault = within.fault();
        assert_eq!(within.collect().await.unwrap().to_bytes().len(), 10);
        assert_eq!(fault.get(), None);
        let over = LimitedBody::new(body(), Some(9));
        let fault = over.fault();
        assert!(over.collect().await.unwrap_err().is::<TooLarge>());
        assert_eq!(fault.get(), Some(&ClientFault::TooLarge));
        assert!(matches!(fault.get().unwrap().to_error(), ProxyError::BodyTooLarge));
        assert!(LimitedBody::new(body(), None).collect().await.is_ok());
    }

    #[tokio::test]
    async fn a_broken_client_body_is_the_clients_fault() {
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "Invalid chunk size line")),
        ];
        let body = LimitedBody::new(StreamBody::new(futures_util::stream::iter(frames)), Some(100));
        let fault = body.fault();
        let error = body.collect().await.unwrap_err();
        assert_eq!(error.to_string(), "Invalid chunk size line");
        let Some(ClientFault::Broken(message)) = fault.get() else { panic!("{:?}", fault.get()) };
        assert_eq!(message, "Invalid chunk size line");
        let error = fault.get().unwrap().to_error();
        assert!(matches!(error, ProxyError::BadRequestBody(_)), "{error}");
        assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
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
