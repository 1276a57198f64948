//! A client connection's HTTP/2 streams, run inside the connection's task.
//!
//! hyper's HTTP/2 server hands each stream (a request and its response) to
//! an executor. With tokio's, every stream is a task of its own: each
//! request costs a spawn, and every frame between a stream and its
//! connection crosses tasks (the connection's task is woken to write what
//! the stream's task produced, and the other way round). [`StreamSet`] is
//! the executor instead: it queues the stream, and [`WithStreams`] polls the
//! connection and its streams together, in the connection's task, as nginx
//! and HAProxy run all of a connection's streams in one worker. A stream
//! never waits for another: each is its own future, polled when woken.
//!
//! An HTTP/1.1 connection never queues anything: for it, [`WithStreams`]
//! is the connection alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor of one connection's streams (see the module).
#[derive(Clone, Default)]
pub(crate) struct StreamSet {
    queued: Arc<Mutex<Vec<Stream>>>,
}

impl<F: Future<Output = ()> + Send + 'static> hyper::rt::Executor<F> for StreamSet {
    fn execute(&self, stream: F) {
        self.queued.lock().expect("not poisoned").push(Box::pin(stream));
    }
}

/// A connection and the streams its [`StreamSet`] was given: done when the
/// connection is and every stream has ended.
pub(crate) struct WithStreams<C: Future> {
    connection: Pin<Box<C>>,
    ended: Option<C::Output>,
    queued: Arc<Mutex<Vec<Stream>>>,
    running: FuturesUnordered<Stream>,
}

impl<C: Future> WithStreams<C> {
    pub fn new(connection: C, streams: &StreamSet) -> Self {
        let queued = streams.queued.clone();
        Self { connection: Box::pin(connection), ended: None, queued, running: FuturesUnordered::new() }
    }

    /// The connection (to shut it down gracefully).
    pub fn connection(&mut self) -> Pin<&mut C> {
        self.connection.as_mut()
    }

    /// Moves the streams queued since the last poll into the running set.
    fn take_queued(&mut self) {
        for stream in self.queued.lock().expect("not poisoned").drain(..) {
            self.running.push(stream);
        }
    }
}

impl<C: Future> Future for WithStreams<C>
where
    C::Output: Unpin,
{
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        if this.ended.is_none()
            && let Poll::Ready(ended) = this.connection.as_mut().poll(cx)
        {
            this.ended = Some(ended);
        }
        this.take_queued();
        // Until every stream is waiting (each registered its wake-up).
        while let Poll::Ready(Some(())) = this.running.poll_next_unpin(cx) {
            this.take_queued();
        }
        if this.running.is_empty()
            && let Some(ended) = this.ended.take()
        {
            return Poll::Ready(ended);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn streams_run_in_the_connection_task_and_outlive_the_connection() {
        let streams = StreamSet::default();
        let (release, released) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel::<&str>();
        let executor = streams.clone();
        // The connection queues a stream, then ends at once.
        let connection = async move {
            executor.execute(async move {
                released.await.unwrap();
                done_tx.send("stream ended").unwrap();
            });
            "connection ended"
        };
        let both = tokio::spawn(WithStreams::new(connection, &streams));
        tokio::task::yield_now().await;
        assert!(!both.is_finished(), "a stream is still running");
        release.send(()).unwrap();
        assert_eq!(both.await.unwrap(), "connection ended");
        assert_eq!(done.await.unwrap(), "stream ended");
    }
}
