//! Watches: registration, history replay, per-watch selection, the streamed
//! body, and the test-side disruptions (expire, bookmarks, dropped connections).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Sleep;

use super::resources::{RESOURCES, ResourceType, index_of};
use super::selectors::Selector;
use super::status::ApiError;
use super::store::{EventType, HistEvent, Store, meta_str};

/// What a watch body is told to do next.
#[derive(Debug)]
pub(crate) enum WatchMsg {
    /// One JSON line to send.
    Line(Bytes),
    /// End the body cleanly.
    End,
    /// Fail the body: the connection is closed without a terminating chunk.
    Abort,
}

/// An open watch.
pub(crate) struct Watcher {
    res: usize,
    ns: Option<String>,
    sel: Selector,
    bookmarks: bool,
    tx: UnboundedSender<WatchMsg>,
}

/// What a watch request asked for.
pub(crate) struct WatchRequest<'a> {
    pub res: &'static ResourceType,
    pub ns: Option<&'a str>,
    pub sel: Selector,
    pub resource_version: Option<&'a str>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
}

fn line(ty: &str, object: &Value) -> WatchMsg {
    let mut bytes = serde_json::to_vec(&json!({"type": ty, "object": object})).expect("serializable");
    bytes.push(b'\n');
    WatchMsg::Line(Bytes::from(bytes))
}

fn expired_line(rv: &str, compacted: u64) -> WatchMsg {
    let err = ApiError::expired(format!("too old resource version: {rv} ({compacted})"));
    line("ERROR", &err.to_status())
}

fn bookmark(res: &ResourceType, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta})
}

impl Watcher {
    /// What this watch sees of a write: selection transitions turn a MODIFIED
    /// into ADDED (starts matching) or DELETED (stops matching).
    fn select<'a>(&self, ev: &'a HistEvent) -> Option<(&'static str, &'a Value)> {
        if ev.res != self.res {
            return None;
        }
        let in_scope =
            |o: &Value| (self.ns.is_none() || meta_str(o, "namespace") == self.ns.as_deref()) && self.sel.matches(o);
        match ev.ty {
            EventType::Added => in_scope(&ev.object).then_some(("ADDED", &ev.object)),
            EventType::Deleted => in_scope(&ev.object).then_some(("DELETED", &ev.object)),
            EventType::Modified => {
                let was = ev.old.as_ref().is_some_and(in_scope);
                match (was, in_scope(&ev.object)) {
                    (true, true) => Some(("MODIFIED", &ev.object)),
                    (false, true) => Some(("ADDED", &ev.object)),
                    (true, false) => Some(("DELETED", &ev.object)),
                    (false, false) => None,
                }
            }
        }
    }
}

impl Store {
    /// Sends a write to every watch it concerns; forgets closed watches.
    pub(crate) fn dispatch(&mut self, ev: &HistEvent) {
        self.watchers.retain(|w| match w.select(ev) {
            Some((ty, obj)) => w.tx.send(line(ty, obj)).is_ok(),
            None => !w.tx.is_closed(),
        });
    }

    /// Opens a watch: queues the events it must start with (the current
    /// objects as ADDED for resourceVersion unset or `0`, else the history
    /// after it, or a 410 ERROR when that is older than the compaction point)
    /// and registers it for live events.
    pub(crate) fn start_watch(&mut self, req: WatchRequest<'_>) -> Result<UnboundedReceiver<WatchMsg>, ApiError> {
        let (tx, rx) = unbounded_channel();
        let rv = req.resource_version.filter(|v| !v.is_empty() && *v != "0");
        let watcher = Watcher {
            res: index_of(req.res),
            ns: req.ns.map(str::to_string),
            sel: req.sel,
            bookmarks: req.bookmarks,
            tx,
        };
        if req.send_initial_events || rv.is_none() {
            for obj in self.matching(req.res, req.ns, &watcher.sel) {
                let _ = watcher.tx.send(line("ADDED", &obj));
            }
            if req.send_initial_events && req.bookmarks {
                let _ = watcher.tx.send(line("BOOKMARK", &bookmark(req.res, self.rv, true)));
            }
        } else if let Some(rv) = rv {
            let from: u64 =
                rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?;
            if from < self.compacted {
                let _ = watcher.tx.send(expired_line(rv, self.compacted));
                let _ = watcher.tx.send(WatchMsg::End);
                return Ok(rx);
            }
            for ev in self.history.iter().filter(|ev| ev.rv > from) {
                if let Some((ty, obj)) = watcher.select(ev) {
                    let _ = watcher.tx.send(line(ty, obj));
                }
            }
        }
        self.watchers.push(watcher);
        self.notify();
        Ok(rx)
    }

    /// Number of watches whose client is still connected.
    pub(crate) fn open_watches(&mut self) -> usize {
        self.watchers.retain(|w| !w.tx.is_closed());
        self.watchers.len()
    }

    /// Forgets the history up to now: later watches from an older
    /// resourceVersion get 410 Expired.
    pub(crate) fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
        self.continuations.clear();
    }

    /// Ends every watch: with a 410 ERROR event first when `expire`, else
    /// cleanly.
    pub(crate) fn end_watches(&mut self, expire: bool) {
        for w in self.watchers.drain(..) {
            if expire {
                let _ = w.tx.send(expired_line("watch", self.rv));
            }
            let _ = w.tx.send(WatchMsg::End);
        }
        self.notify();
    }

    /// Ends the watches on objects of `res` (their type goes away).
    pub(crate) fn end_watches_of(&mut self, res: &'static ResourceType) {
        let index = index_of(res);
        let (ended, kept): (Vec<Watcher>, Vec<Watcher>) =
            std::mem::take(&mut self.watchers).into_iter().partition(|w| w.res == index);
        for w in ended {
            let _ = w.tx.send(WatchMsg::End);
        }
        self.watchers = kept;
        self.notify();
    }

    /// Closes every watch's connection abruptly.
    pub(crate) fn abort_watches(&mut self) {
        for w in self.watchers.drain(..) {
            let _ = w.tx.send(WatchMsg::Abort);
        }
        self.notify();
    }

    /// A BOOKMARK at the current resourceVersion on every watch that allows them.
    pub(crate) fn send_bookmarks(&mut self) {
        let rv = self.rv;
        self.watchers
            .retain(|w| !w.bookmarks || w.tx.send(line("BOOKMARK", &bookmark(&RESOURCES[w.res], rv, false))).is_ok());
    }
}

/// The streamed body of a watch response: newline-delimited JSON events,
/// ending at `timeoutSeconds`, on [`WatchMsg::End`] or when the store drops
/// the watch, and failing (connection reset) on [`WatchMsg::Abort`].
pub(crate) struct WatchBody {
    rx: UnboundedReceiver<WatchMsg>,
    deadline: Option<Pin<Box<Sleep>>>,
    done: bool,
}

impl WatchBody {
    pub(crate) fn new(rx: UnboundedReceiver<WatchMsg>, timeout: Option<Duration>) -> Self {
        WatchBody { rx, deadline: timeout.map(|t| Box::pin(tokio::time::sleep(t))), done: false }
    }
}

impl Body for WatchBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.done = true;
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(WatchMsg::Line(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(Some(WatchMsg::End) | None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(WatchMsg::Abort)) => {
                self.done = true;
                Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::ConnectionReset, "fake API: connection dropped"))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
