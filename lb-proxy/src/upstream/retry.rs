//! Retries (`proxy-next-upstream`, by default `error timeout`, at most
//! `proxy-next-upstream-tries` attempts, one per endpoint): a failed
//! connection (refused, unreachable, connect timeout) is retried for any
//! request, because the request body is only handed to hyper through a
//! [`ReclaimableBody`] that gives it back when nothing was sent. Once the
//! request went out (an error or timeout before the response head, or a
//! listed status), it is retried only when its body can be sent again
//! (there is none, or no attempt took it) and its method is idempotent (or
//! `non_idempotent` is listed); the discarded response of a listed status
//! is not passed on.
//!
//! [`ReclaimableBody`]: crate::body::ReclaimableBody

use std::net::SocketAddr;

use lb_routes::policy::NextUpstream;

use super::timeouts::Expired;
use crate::errors::ProxyError;

/// Why one attempt did not give the response.
pub(super) enum Failure {
    /// No connection: nothing was sent.
    Connect {
        message: String,
        timed_out: bool,
    },
    /// Failed after the request (maybe) went out, before the response
    /// head; `invalid_header`: the head was not valid HTTP.
    Request {
        message: String,
        invalid_header: bool,
    },
    Expired(Expired),
    /// A response with a status `proxy-next-upstream` lists.
    Status(u16),
}

impl Failure {
    pub(super) fn into_error(self, peer: SocketAddr) -> ProxyError {
        match self {
            Failure::Connect { timed_out: true, .. } => ProxyError::ConnectTimeout(peer.to_string()),
            Failure::Connect { .. } => ProxyError::Connect(peer.to_string()),
            Failure::Request { message, .. } => ProxyError::Upstream(message),
            Failure::Expired(Expired::Read) => ProxyError::Timeout,
            Failure::Expired(Expired::Send) => ProxyError::SendTimeout,
            Failure::Expired(Expired::ClientBody) => ProxyError::ClientBodyTimeout,
            Failure::Status(status) => ProxyError::Upstream(format!("status {status}")),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect { message, .. } | Failure::Request { message, .. } => f.write_str(message),
            Failure::Expired(expired) => write!(f, "{expired:?} timeout"),
            Failure::Status(status) => write!(f, "status {status}"),
        }
    }
}

/// Whether `failure` is tried again on the next endpoint. `replayable`:
/// the method may be sent twice; `reclaimable`: the body can be.
pub(super) fn retryable(next: &NextUpstream, failure: &Failure, replayable: bool, reclaimable: bool) -> bool {
    if !reclaimable {
        return false;
    }
    match failure {
        Failure::Connect { timed_out: false, .. } => next.error,
        Failure::Connect { timed_out: true, .. } => next.timeout,
        Failure::Request { invalid_header: true, .. } => replayable && next.invalid_header,
        Failure::Request { invalid_header: false, .. } => replayable && next.error,
        Failure::Expired(Expired::Read | Expired::Send) => replayable && next.timeout,
        Failure::Expired(Expired::ClientBody) => false,
        Failure::Status(status) => replayable && next.retries_status(*status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Failure {
        Failure::Status(code)
    }

    #[test]
    fn retry_rules() {
        let default = NextUpstream::default();
        let refused = || Failure::Connect { message: String::new(), timed_out: false };
        let connect_timeout = || Failure::Connect { message: String::new(), timed_out: true };
        let reset = || Failure::Request { message: String::new(), invalid_header: false };
        let garbage = || Failure::Request { message: String::new(), invalid_header: true };
        // Nothing was sent: any method, as long as the body is still there.
        assert!(retryable(&default, &refused(), false, true));
        assert!(retryable(&default, &connect_timeout(), false, true));
        assert!(!retryable(&default, &refused(), true, false));
        // Sent: idempotent methods only (or non_idempotent listed).
        assert!(retryable(&default, &reset(), true, true));
        assert!(!retryable(&default, &reset(), false, true));
        assert!(retryable(&default, &Failure::Expired(Expired::Read), true, true));
        assert!(!retryable(&default, &Failure::Expired(Expired::ClientBody), true, true));
        assert!(!retryable(&default, &garbage(), true, true));
        assert!(!retryable(&default, &status(503), true, true));
        let statuses = NextUpstream { statuses: vec![503], invalid_header: true, ..NextUpstream::off() };
        assert!(retryable(&statuses, &status(503), true, true));
        assert!(!retryable(&statuses, &status(503), false, true));
        assert!(!retryable(&statuses, &status(503), true, false));
        assert!(!retryable(&statuses, &status(502), true, true));
        assert!(retryable(&statuses, &garbage(), true, true));
        assert!(!retryable(&statuses, &refused(), true, true), "error not listed");
        let off = NextUpstream::off();
        for failure in [refused(), connect_timeout(), reset(), Failure::Expired(Expired::Read), status(503)] {
            assert!(!retryable(&off, &failure, true, true), "{failure}");
        }
    }
}
