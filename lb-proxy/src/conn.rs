//! Per-connection bookkeeping for the client side: requests in flight, the
//! idle keep-alive timeout, and the HTTP/1.1 request-head timeout.
//!
//! hyper's `header_read_timeout` starts as soon as an HTTP/1.1 connection
//! waits for a request head, including while a keep-alive connection sits
//! idle between requests, so on its own it would close every idle
//! connection after `client_header_timeout` (10 s) instead of
//! `client_idle_timeout` (75 s). [`HeadTimer`] is the timer given to hyper's
//! HTTP/1.1 side: on a connection that already served a request it counts
//! the head timeout from the first byte of the next request, and leaves an
//! idle connection to the idle timeout (enforced by the connection task with
//! a graceful shutdown, for HTTP/1.1 and HTTP/2 alike). The first request's
//! head is timed from the connection's start, as nginx's
//! `client_header_timeout` is.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

const NONE: u64 = u64::MAX;

/// The state one client connection shares between its task, its requests
/// and its timer.
#[derive(Debug)]
pub(crate) struct ConnState {
    start: Instant,
    in_flight: AtomicUsize,
    served: AtomicU64,
    /// Milliseconds from `start` to the last request start or response end.
    last_active: AtomicU64,
    /// Milliseconds from `start` to the first byte read since the head
    /// timer was last armed ([`NONE`]: none yet).
    head_first_byte: AtomicU64,
    /// Woken when a request begins (a draining connection waits for it).
    begun: tokio::sync::Notify,
}

impl ConnState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            last_active: AtomicU64::new(0),
            head_first_byte: AtomicU64::new(NONE),
            begun: tokio::sync::Notify::new(),
        })
    }

    /// Whether a request is in flight (its response not yet sent).
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Completes when a request begins; possibly at once for one that
    /// began earlier, so check [`busy`](Self::busy) after it.
    pub(crate) async fn request_begun(&self) {
        self.begun.notified().await;
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn touch(&self) {
        self.last_active.store(self.now_ms(), Ordering::Relaxed);
    }

    /// When the connection should be closed for idleness: `idle_timeout`
    /// after its last request, or `first_request_timeout` after its start
    /// when no request came yet (a client that connects and sends nothing,
    /// or stops within the first bytes, which hyper's head timer does not
    /// see while the protocol is still being detected). `None` while a
    /// request is in flight.
    pub(crate) fn idle_deadline(&self, idle_timeout: Duration, first_request_timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.served.load(Ordering::Relaxed) == 0 {
            return Some(self.start + first_request_timeout);
        }
        Some(self.at(self.last_active.load(Ordering::Relaxed)) + idle_timeout)
    }

    fn saw_bytes(&self) {
        if self.head_first_byte.load(Ordering::Relaxed) == NONE {
            let _ = self.head_first_byte.compare_exchange(NONE, self.now_ms(), Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// Counts a request as in flight from its start until its response body
/// is done or dropped (also when the request is cancelled).
#[derive(Debug)]
pub(crate) struct ActiveRequest {
    state: Arc<ConnState>,
}

impl ActiveRequest {
    pub(crate) fn begin(state: &Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.served.fetch_add(1, Ordering::Relaxed);
        state.touch();
        state.begun.notify_one();
        Self { state: state.clone() }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.state.touch();
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client's transport, noting when bytes arrive (for [`HeadTimer`]).
#[derive(Debug)]
pub(crate) struct ObservedIo<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T> ObservedIo<T> {
    pub(crate) fn new(inner: T, state: Arc<ConnState>) -> Self {
        Self { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ObservedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        if buf.filled().len() > before {
            self.state.saw_bytes();
        }
        Poll::Ready(result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ObservedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The timer of hyper's HTTP/1.1 server side (which uses it only for the
/// request-head timeout); see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct HeadTimer {
    state: Arc<ConnState>,
    header_timeout: Duration,
}

impl HeadTimer {
    pub(crate) fn new(state: Arc<ConnState>, header_timeout: Duration) -> Self {
        Self { state, header_timeout }
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(PlainSleep(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.state.head_first_byte.store(NONE, Ordering::Relaxed);
        Box::pin(HeadSleep {
            state: self.state.clone(),
            header_timeout: self.header_timeout,
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
        })
    }

    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}

struct PlainSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for PlainSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for PlainSleep {}

struct HeadSleep {
    state: Arc<ConnState>,
    header_timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            if self.state.served.load(Ordering::Relaxed) == 0 {
                return Poll::Ready(());
            }
            let now = Instant::now();
            let next = match self.state.head_first_byte.load(Ordering::Relaxed) {
                // Idle keep-alive: nothing of a next request yet; look again later.
                NONE => now + self.header_timeout,
                first => self.state.at(first) + self.header_timeout,
            };
            if next <= now {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(next);
        }
    }
}

impl hyper::rt::Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    #[test]
    fn in_flight_requests_are_never_idle() {
        let state = ConnState::new();
        let (idle, first) = (Duration::from_secs(75), Duration::from_secs(10));
        let deadline = state.idle_deadline(idle, first).unwrap();
        assert!(deadline <= Instant::now() + first);
        let active = ActiveRequest::begin(&state);
        assert!(state.idle_deadline(idle, first).is_none());
        drop(active);
        let deadline = state.idle_deadline(idle, first).unwrap();
        assert!(deadline > Instant::now() + Duration::from_secs(70));
    }

    #[tokio::test(start_paused = true)]
    async fn first_head_is_timed_from_the_start() {
        let state = ConnState::new();
        let timer = HeadTimer::new(state, Duration::from_secs(10));
        let start = Instant::now();
        timer.sleep_until((start + Duration::from_secs(10)).into_std()).await;
        assert!(start.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keep_alive_does_not_fire_the_head_timeout() {
        let state = ConnState::new();
        drop(ActiveRequest::begin(&state));
        let timer = HeadTimer::new(state.clone(), Duration::from_secs(10));
        let sleep = timer.sleep_until((Instant::now() + Duration::from_secs(10)).into_std());
        // Idle for a minute: still pending.
        let result = tokio::time::timeout(Duration::from_secs(60), sleep).await;
        assert!(result.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn head_timeout_counts_from_the_first_byte() {
        let state = ConnState::new();
        drop(ActiveRequest::begin(&state));
        let timer = HeadTimer::new(state.clone(), Duration::from_secs(10));
        let mut sleep = timer.sleep_until((Instant::now() + Duration::from_secs(10)).into_std());
        tokio::time::sleep(Duration::from_secs(30)).await;
        let first_byte = Instant::now();
        state.saw_bytes();
        (&mut sleep).await;
        let waited = first_byte.elapsed();
        assert!(waited >= Duration::from_secs(9) && waited <= Duration::from_secs(11), "{waited:?}");
    }
}
