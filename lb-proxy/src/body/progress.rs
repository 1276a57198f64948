//! Where one attempt's request body is, as its [`ReclaimableBody`] reports
//! it: the upstream's send and read timeouts are counted from the last
//! change (see `upstream::timeouts`).
//!
//! [`ReclaimableBody`]: super::ReclaimableBody

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// Where one attempt's request body is.
#[derive(Debug)]
pub(crate) struct Progress {
    step: Mutex<Step>,
}

/// The last change of an attempt's request body.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Step {
    /// When: a poll started or a frame was handed over.
    pub since: Instant,
    /// A frame was handed to hyper and it did not ask for the next yet.
    pub handed: bool,
    /// The whole body was handed over (or there is none).
    pub done: bool,
}

impl Progress {
    /// An attempt starting now; `done` when there is no body to send.
    pub(crate) fn new(done: bool) -> Arc<Self> {
        Arc::new(Self { step: Mutex::new(Step { since: Instant::now(), handed: false, done }) })
    }

    fn set(&self, handed: bool, done: bool) {
        let mut step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        if !step.done {
            *step = Step { since: Instant::now(), handed, done };
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

    /// The last change.
    pub(crate) fn step(&self) -> Step {
        *self.step.lock().unwrap_or_else(|e| e.into_inner())
    }
}
