//! The client's request body shared by the attempts of one request, so a
//! retry can send it again when no attempt took it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{BoxError, LimitedBody, Progress};

/// The client's request body, shared by the attempts of one request: the
/// first attempt that polls it takes it; an attempt that failed before
/// polling (a connect failure) leaves it in place for the next one. Size
/// hint and end-of-stream are answered from a snapshot until it is taken,
/// so hyper frames every attempt the same way. Each attempt's handle
/// reports its [`Progress`] (for the send and read timeouts).
pub(crate) struct ReclaimableBody {
    slot: Arc<Mutex<Option<LimitedBody>>>,
    taken: Option<LimitedBody>,
    end_stream: bool,
    hint: SizeHint,
    progress: Option<Arc<Progress>>,
}

impl ReclaimableBody {
    pub(crate) fn new(body: LimitedBody) -> Self {
        let end_stream = body.is_end_stream();
        let hint = body.size_hint();
        Self { slot: Arc::new(Mutex::new(Some(body))), taken: None, end_stream, hint, progress: None }
    }

    /// A handle on the same body for one attempt.
    pub(crate) fn for_attempt(&self, progress: Arc<Progress>) -> Self {
        Self {
            slot: self.slot.clone(),
            taken: None,
            end_stream: self.end_stream,
            hint: self.hint,
            progress: Some(progress),
        }
    }

    /// No attempt took the body yet (or there is none to send).
    pub(crate) fn reclaimable(&self) -> bool {
        self.end_stream || self.slot.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

impl Body for ReclaimableBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.taken.is_none() {
            this.taken = this.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        let progress = this.progress.as_deref();
        let Some(body) = this.taken.as_mut() else {
            progress.inspect(|p| p.finished());
            return Poll::Ready(None);
        };
        progress.inspect(|p| p.polling());
        let frame = Pin::new(&mut *body).poll_frame(cx);
        if let Some(progress) = progress {
            match &frame {
                Poll::Ready(Some(Ok(_))) => progress.handed(body.is_end_stream()),
                Poll::Ready(_) => progress.finished(),
                Poll::Pending => {}
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => self.end_stream,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => self.hint,
        }
    }
}
