//! A streaming HTTP response (SSE or multipart) as a body that owns its operations.
//!
//! hyper drops a response body when its connection ends, however it ends, so a body that
//! owns its operations gives HTTP the WebSocket guarantee: the operations are dropped, and
//! `on_complete` has run, before the body's `drop` returns. The body also reads the
//! connection's verdict ([`ConnectionEnd`]) to report why.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use subscope_protocol::http_frame::{self as frame, Format};
use subscope_protocol::policy::{self, OperationEvent, OperationState, Verdict};

use super::io::ConnectionEnd;
use crate::bounds::{WRITE_BATCH, WRITE_BATCH_BYTES};
use crate::operation::Operation;
use crate::reservations::{Phase, Reservation};
use crate::rt::{BoxSleep, Timer};
use crate::scope::ScopeEvent;
use crate::sessions::Registered;
use crate::{CloseReason, EndReason, Gauges, Hooks};

use crate::state::StopFuture;

/// What ends a stream's authorization: its expiry and a revocation.
pub(crate) struct StreamAuth {
    /// Its place in the server's registry of sessions: held to leave it on drop.
    #[allow(dead_code, reason = "held for its Drop")]
    pub(crate) registered: Registered,
    pub(crate) revoked: StopFuture,
    pub(crate) expiry: Option<BoxSleep>,
    pub(crate) gauges: Arc<Gauges>,
}

/// The response body of an event stream.
pub(crate) struct EventStream<H: Hooks, R> {
    ops: Arc<Reservation<H>>,
    format: Format,
    /// What the operation policy remembers of each live operation that has delivered a
    /// result (absent: a fresh one).
    states: HashMap<String, OperationState>,
    started: bool,
    finished: bool,
    timer: R,
    heartbeat: Option<Duration>,
    sleep: Option<BoxSleep>,
    stop: StopFuture,
    ending: Option<Arc<ConnectionEnd>>,
    max_response: usize,
    /// `retry:` for SSE, in milliseconds.
    retry: Option<u64>,
    auth: StreamAuth,
    /// Why it ended, when the body itself decided.
    reason: Option<CloseReason>,
}

/// What the body learned from its operations in one poll.
enum Step {
    Frame(String),
    Last(String),
    Pending,
}

impl<H: Hooks, R: Timer> EventStream<H, R> {
    #[allow(clippy::too_many_arguments)] // one private constructor, two call sites
    pub(crate) fn new(
        ops: Arc<Reservation<H>>,
        format: Format,
        timer: R,
        heartbeat: Option<Duration>,
        stop: StopFuture,
        ending: Option<Arc<ConnectionEnd>>,
        max_response: usize,
        retry: Option<Duration>,
        auth: StreamAuth,
    ) -> Self {
        Self {
            ops,
            format,
            states: HashMap::new(),
            started: false,
            finished: false,
            timer,
            heartbeat,
            sleep: None,
            stop,
            ending,
            max_response,
            retry: retry.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            auth,
            reason: None,
        }
    }

    fn rearm(&mut self) {
        let Some(every) = self.heartbeat else {
            return;
        };
        let deadline = self.timer.now() + every;
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(self.timer.sleep_until(deadline)),
        }
    }

    fn poll_ops(&mut self, cx: &mut Context<'_>) -> Poll<ScopeEvent<Operation<H>>> {
        self.ops.poll_ops(cx)
    }

    /// A distinct stream ends with its one operation; a single-connection stream goes on.
    fn after_op(&self, frame: String) -> Step {
        match self.format {
            Format::SseSingle => Step::Frame(frame),
            Format::Sse | Format::Multipart | Format::Mixed => Step::Last(frame),
        }
    }

    /// Frames what the operation policy decided for `event` of operation `id`. `op` is
    /// the operation when its stream already ended by itself (finished or panicked).
    fn step(
        &mut self,
        id: &str,
        event: OperationEvent<'_>,
        event_id: Option<&str>,
        op: Option<Operation<H>>,
    ) -> Step {
        // The state is `Copy`: read by `&str`, stored (the id copied) only when it changes,
        // i.e. once per operation at its first result, not once per event.
        let before = self.states.get(id).copied().unwrap_or_default();
        let mut state = before;
        let verdict = policy::decide(&mut state, event, self.max_response);
        match verdict {
            Verdict::Next(json) => {
                if state != before {
                    self.states.insert(id.to_owned(), state);
                }
                Step::Frame(frame::next_event(self.format, id, &json, event_id))
            }
            Verdict::Fail { reason, errors } => {
                self.states.remove(id);
                match op {
                    Some(op) => op.finish(reason.clone()),
                    None => self.ops.remove(id, reason.clone()),
                }
                self.after_op(frame::failed(self.format, id, &reason, &errors))
            }
            Verdict::Complete => {
                self.states.remove(id);
                if let Some(op) = op {
                    op.finish(EndReason::Completed);
                }
                self.after_op(frame::complete(self.format, id))
            }
        }
    }

    /// An expired or revoked authorization: every live operation's final error item, then
    /// the end of the stream (PROTOCOL.md 4.11). `None` while it holds.
    fn poll_auth(&mut self, cx: &mut Context<'_>) -> Option<String> {
        let expired = self
            .auth
            .expiry
            .as_mut()
            .is_some_and(|s| s.as_mut().poll(cx).is_ready());
        let reason = if expired {
            self.auth.gauges.count_http_expired();
            CloseReason::TokenExpired
        } else if self.auth.revoked.as_mut().poll(cx).is_ready() {
            CloseReason::Revoked
        } else {
            return None;
        };
        let (code, message) = match reason {
            CloseReason::TokenExpired => ("TOKEN_EXPIRED", "Token expired"),
            _ => ("TOKEN_REVOKED", "Token revoked"),
        };
        let mut error = async_graphql::ServerError::new(message, None);
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        extensions.set("code", code);
        error.extensions = Some(extensions);
        let errors = [error];
        tracing::info!(conn = self.ops.conn.id, %reason, "http stream's authorization ended");
        let mut out = String::new();
        match self.format {
            Format::Multipart | Format::Mixed => {
                out.push_str(&frame::fatal(self.format, "", &errors));
            }
            Format::Sse | Format::SseSingle => {
                for id in self.ops.live_ids() {
                    out.push_str(&frame::next(self.format, &id, &frame::errors_json(&errors)));
                    out.push_str(&frame::complete(self.format, &id));
                }
            }
        }
        self.finished = true;
        self.reason = Some(reason.clone());
        self.ops.close(reason);
        Some(out)
    }

    fn on_event(&mut self, event: ScopeEvent<Operation<H>>) -> Step {
        match event {
            ScopeEvent::Item(id, item) => self.step(&id, item.event(), item.event_id(), None),
            ScopeEvent::Ended(id, op) => self.step(&id, OperationEvent::Finished, None, Some(op)),
            ScopeEvent::Panicked(id, op) => {
                tracing::warn!(id = %id, "operation panicked");
                self.step(&id, OperationEvent::Panicked, None, Some(op))
            }
        }
    }
}

// Nothing in it is pinned in place.
impl<H: Hooks, R> Unpin for EventStream<H, R> {}

impl<H: Hooks, R: Timer> http_body::Body for EventStream<H, R> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if this.ops.phase() == Phase::Closed {
            // Closed from outside (shutdown's forced phase): its operations are gone.
            this.finished = true;
            this.reason = Some(CloseReason::ServerShutdown);
            return Poll::Ready(
                frame::shutdown(this.format).map(|b| Ok(Frame::data(Bytes::from(b)))),
            );
        }
        if !this.started {
            this.started = true;
            this.rearm();
            let preamble = frame::preamble(this.format, this.retry);
            return Poll::Ready(Some(Ok(Frame::data(match preamble {
                std::borrow::Cow::Borrowed(s) => Bytes::from_static(s.as_bytes()),
                std::borrow::Cow::Owned(s) => Bytes::from(s),
            }))));
        }
        if let Some(last) = this.poll_auth(cx) {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(last)))));
        }
        if this.stop.as_mut().poll(cx).is_ready() {
            this.finished = true;
            this.reason = Some(CloseReason::ServerShutdown);
            this.ops.close(CloseReason::ServerShutdown);
            return Poll::Ready(
                frame::shutdown(this.format).map(|b| Ok(Frame::data(Bytes::from(b)))),
            );
        }
        // Every event that is ready goes into one frame, up to the driver's write batch:
        // one chunk and one write for many events, as on WebSocket.
        let mut batch = String::new();
        let mut events = 0;
        while events < WRITE_BATCH && batch.len() < WRITE_BATCH_BYTES {
            let step = match this.poll_ops(cx) {
                Poll::Ready(event) => this.on_event(event),
                Poll::Pending => Step::Pending,
            };
            match step {
                Step::Frame(text) => {
                    batch.push_str(&text);
                    events += 1;
                }
                Step::Last(text) => {
                    batch.push_str(&text);
                    this.finished = true;
                    this.reason = Some(CloseReason::Finished);
                    break;
                }
                Step::Pending => break,
            }
        }
        if !batch.is_empty() {
            if !this.finished {
                this.rearm();
            }
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(batch)))));
        }
        let beat = this
            .sleep
            .as_mut()
            .is_some_and(|s| s.as_mut().poll(cx).is_ready());
        if beat {
            this.rearm();
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                frame::heartbeat(this.format).as_bytes(),
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

impl<H: Hooks, R> Drop for EventStream<H, R> {
    fn drop(&mut self) {
        // Operations first, then the end hooks (PROTOCOL.md 4.4's order): `close` does both.
        let reason = self.reason.take().unwrap_or_else(|| match &self.ending {
            // Standalone: the socket adapter's verdict; none means the connection future
            // itself was dropped from outside.
            Some(ending) => ending.get().unwrap_or(CloseReason::Dropped),
            // Under another HTTP server (axum), which drops an unfinished body when its
            // connection is gone: the same verdict as standalone for the same event.
            None => CloseReason::PeerGone,
        });
        self.ops.close(reason);
    }
}
