//! The read timeout between two frames of a response body
//! (`proxy-read-timeout`, nginx's `proxy_read_timeout`): the upstream may
//! be silent for that long while the proxy waits for its next frame; a
//! slow client is not counted.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::BoxError;

/// The read timeout between two frames of a response body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?} (read timeout)")]
pub(crate) struct ReadTimedOut(Duration);

/// A response body that fails when the upstream is silent for `gap` while
/// a frame is awaited. The timer is made only when a frame is not there at
/// once (most small bodies are in by the time they are polled).
pub(crate) struct ReadGapBody<B> {
    inner: B,
    gap: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Since when a frame is awaited (the clock runs), if one is.
    waiting_since: Option<Instant>,
}

impl<B> ReadGapBody<B> {
    pub(crate) fn new(inner: B, gap: Duration) -> Self {
        Self { inner, gap, sleep: None, waiting_since: None }
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
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting_since = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = since + this.gap;
                let sleep = match &mut this.sleep {
                    Some(sleep) => {
                        if sleep.deadline() != deadline {
                            sleep.as_mut().reset(deadline);
                        }
                        sleep
                    }
                    None => this.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ReadTimedOut(this.gap))))),
                    Poll::Pending => Poll::Pending,
                }
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

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
