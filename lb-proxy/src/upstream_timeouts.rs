//! `proxy-send-timeout` and `proxy-read-timeout` (nginx's
//! `proxy_send_timeout`, `proxy_read_timeout`): timeouts between two
//! operations, not on the whole transfer.
//!
//! - Sending: each attempt's request body reports its [`Progress`]; a
//!   frame handed to hyper that the upstream does not take (hyper does not
//!   ask for the next one) within the send timeout ends the attempt. The
//!   time spent waiting for the client's next frame is not counted
//!   against the upstream, but it is bounded by the read timeout too (the
//!   client gets 408).
//! - Reading: the response head must come within the read timeout of the
//!   end of the request body (of the attempt's start when there is none:
//!   connecting included); then [`ReadGapBody`] fails the response body
//!   when the upstream sends nothing for the read timeout while the proxy
//!   waits for it (a slow client is not counted).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::errors::BoxError;

/// How often the watchdog looks at an attempt that waits for the client.
const TICK: Duration = Duration::from_millis(250);

/// Where one attempt's request body is.
#[derive(Debug)]
pub(crate) struct Progress {
    state: Mutex<State>,
}

#[derive(Clone, Copy, Debug)]
struct State {
    /// The last change: a poll started or a frame was handed over.
    since: Instant,
    /// A frame was handed to hyper and it did not ask for the next yet.
    handed: bool,
    /// The whole body was handed over (or there is none).
    done: bool,
}

/// Which timeout ended an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// The upstream did not take the request body.
    Send,
    /// No response head.
    Read,
    /// The client did not send its body.
    ClientBody,
}

impl Progress {
    /// An attempt starting now; `done` when there is no body to send.
    pub(crate) fn new(done: bool) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { since: Instant::now(), handed: false, done }) })
    }

    fn set(&self, handed: bool, done: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.done {
            *state = State { since: Instant::now(), handed, done };
        }
    }

    /// hyper asks for the next frame.
    pub(crate) fn polling(&self) {
        self.set(false, false);
    }

    /// A frame was handed over; `last`: it was the end of the body.
    pub(crate) fn handed(&self, last: bool) {
        self.set(!last, last);
    }

    /// The body ended (or failed: nothing more to send either way).
    pub(crate) fn finished(&self) {
        self.set(false, true);
    }

    fn snapshot(&self) -> State {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the attempt expires given its state, and why.
    fn deadline(&self, read: Duration, send: Duration) -> (Instant, Expired) {
        let state = self.snapshot();
        match (state.done, state.handed) {
            (true, _) => (state.since + read, Expired::Read),
            (false, true) => (state.since + send, Expired::Send),
            (false, false) => (state.since + read, Expired::ClientBody),
        }
    }

    /// Resolves when the attempt runs out of time.
    pub(crate) async fn expired(&self, read: Duration, send: Duration) -> Expired {
        loop {
            let (deadline, why) = self.deadline(read, send);
            let now = Instant::now();
            if deadline <= now {
                return why;
            }
            tokio::time::sleep_until(deadline.min(now + TICK)).await;
        }
    }
}

/// The read timeout between two frames of a response body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?} (read timeout)")]
pub(crate) struct ReadTimedOut(Duration);

/// A response body that fails when the upstream is silent for `gap` while
/// a frame is awaited.
pub(crate) struct ReadGapBody<B> {
    inner: B,
    gap: Duration,
    sleep: Pin<Box<Sleep>>,
    /// A poll is pending (the clock runs).
    waiting: bool,
}

impl<B> ReadGapBody<B> {
    pub(crate) fn new(inner: B, gap: Duration) -> Self {
        Self { inner, gap, sleep: Box::pin(tokio::time::sleep(gap)), waiting: false }
    }
}

impl<B> Body for ReadGapBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.waiting {
            this.waiting = true;
            this.sleep.as_mut().reset(Instant::now() + this.gap);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ReadTimedOut(this.gap))))),
                Poll::Pending => Poll::Pending,
            },
        }
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
    use std::convert::Infallible;

    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

    const READ: Duration = Duration::from_secs(10);
    const SEND: Duration = Duration::from_secs(3);

    #[tokio::test(start_paused = true)]
    async fn bodiless_attempts_wait_the_read_timeout() {
        let start = Instant::now();
        let progress = Progress::new(true);
        assert_eq!(progress.expired(READ, SEND).await, Expired::Read);
        assert_eq!(start.elapsed(), READ);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_the_upstream_does_not_take_is_a_send_timeout() {
        let start = Instant::now();
        let progress = Progress::new(false);
        progress.polling();
        tokio::time::advance(Duration::from_secs(2)).await;
        progress.handed(false);
        assert_eq!(progress.expired(READ, SEND).await, Expired::Send);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_read_timeout_counts_from_the_end_of_the_body() {
        let start = Instant::now();
        let progress = Progress::new(false);
        tokio::time::advance(Duration::from_secs(4)).await;
        progress.handed(true);
        // Done is final: a later poll does not restart anything.
        progress.polling();
        assert_eq!(progress.expired(READ, SEND).await, Expired::Read);
        assert_eq!(start.elapsed(), Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_not_the_upstreams_fault() {
        let progress = Progress::new(false);
        progress.polling();
        assert_eq!(progress.expired(READ, SEND).await, Expired::ClientBody);
    }

    #[tokio::test(start_paused = true)]
    async fn response_bodies_fail_after_a_silent_gap_only_while_awaited() {
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let body = ChannelBody(rx);
        let mut body = ReadGapBody::new(body, Duration::from_secs(5));
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "a");
        // A slow client: nothing is awaited for a long time, no timeout.
        tokio::time::advance(Duration::from_secs(60)).await;
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            tx.send(Bytes::from_static(b"b")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(6)).await;
            drop(tx);
        });
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "b");
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.is::<ReadTimedOut>(), "{error}");
        sender.abort();
    }

    /// Data frames from a channel; the end when it closes.
    struct ChannelBody(mpsc::Receiver<Bytes>);

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }
}
