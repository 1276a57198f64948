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
//!
//! [`ReadGapBody`]: crate::body::ReadGapBody

use std::time::Duration;

use tokio::time::Instant;

use crate::body::{Progress, Step};

/// How often the watchdog looks at an attempt that waits for the client.
const TICK: Duration = Duration::from_millis(250);

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

/// When an attempt whose request body made its last `step` expires, and
/// why.
fn deadline(step: Step, read: Duration, send: Duration) -> (Instant, Expired) {
    match (step.done, step.handed) {
        (true, _) => (step.since + read, Expired::Read),
        (false, true) => (step.since + send, Expired::Send),
        (false, false) => (step.since + read, Expired::ClientBody),
    }
}

/// Resolves when the attempt whose body reports to `progress` runs out of
/// time.
pub(crate) async fn expired(progress: &Progress, read: Duration, send: Duration) -> Expired {
    loop {
        let (deadline, why) = deadline(progress.step(), read, send);
        let now = Instant::now();
        if deadline <= now {
            return why;
        }
        tokio::time::sleep_until(deadline.min(now + TICK)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: Duration = Duration::from_secs(10);
    const SEND: Duration = Duration::from_secs(3);

    #[tokio::test(start_paused = true)]
    async fn bodiless_attempts_wait_the_read_timeout() {
        let start = Instant::now();
        let progress = Progress::new(true);
        assert_eq!(expired(&progress, READ, SEND).await, Expired::Read);
        assert_eq!(start.elapsed(), READ);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_the_upstream_does_not_take_is_a_send_timeout() {
        let start = Instant::now();
        let progress = Progress::new(false);
        progress.polling();
        tokio::time::advance(Duration::from_secs(2)).await;
        progress.handed(false);
        assert_eq!(expired(&progress, READ, SEND).await, Expired::Send);
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
        assert_eq!(expired(&progress, READ, SEND).await, Expired::Read);
        assert_eq!(start.elapsed(), Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_not_the_upstreams_fault() {
        let progress = Progress::new(false);
        progress.polling();
        assert_eq!(expired(&progress, READ, SEND).await, Expired::ClientBody);
    }
}
