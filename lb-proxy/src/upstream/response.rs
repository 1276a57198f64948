//! The body of an upstream's response, which also drives the HTTP/1.1
//! connection it comes on (see [`h1`](super::h1)) and gives that connection
//! back to the pool once the body is done.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::h1::Lease;

pub(crate) struct UpstreamBody {
    inner: Incoming,
    /// The HTTP/1.1 connection still to drive; `None` for HTTP/2 (whose
    /// connections run as tasks), and once the connection is done.
    connection: Option<Lease>,
    /// The body's end was seen.
    ended: bool,
    /// An error held back for one poll (see [`Body::poll_frame`]).
    error: Option<hyper::Error>,
}

impl UpstreamBody {
    pub(super) fn new(inner: Incoming, connection: Option<Lease>) -> Self {
        Self { inner, connection, ended: false, error: None }
    }

    /// A body whose connection runs on its own (HTTP/2, an upgrade).
    pub(super) fn without_connection(inner: Incoming) -> Self {
        Self::new(inner, None)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    /// An error (the upstream closed mid-body) is held back for one poll:
    /// the connection runs in this task, so the data before the error can
    /// arrive in the same poll as the error, and hyper drops what it has not
    /// written yet when a body fails. Yielding once lets it write the head
    /// and that data to the client first, as when the error came later.
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        // The connection first: it reads what the body hands on.
        if let Some(connection) = &mut this.connection
            && !connection.drive(cx)
        {
            this.connection = None;
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(error))) => {
                this.connection = None;
                this.error = Some(error);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            frame => {
                this.ended |= matches!(frame, Poll::Ready(None));
                frame
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Read to its end (hyper drops a body without polling it further
        // once it says it has ended): the connection may take the next
        // request. Dropped before: the connection closes with it.
        if let Some(connection) = self.connection.take()
            && (self.ended || self.inner.is_end_stream())
        {
            connection.release();
        }
    }
}
