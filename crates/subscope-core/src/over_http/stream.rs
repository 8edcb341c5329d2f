//! A streaming HTTP response (SSE or multipart) as a body that owns its operations.
//!
//! hyper drops a response body when its connection ends, however it ends, so a body that
//! owns its operations gives HTTP the WebSocket guarantee: the operations are dropped, and
//! `on_complete` has run, before the body's `drop` returns. The body also reads the
//! connection's verdict ([`Ending`]) to report why.

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_graphql::ServerError;
use bytes::Bytes;
use http_body::Frame;

use super::frame::{self, Format};
use super::io::Ending;
use super::single::{Phase, Reservation};
use crate::children::ChildEvent;
use crate::driver::{WRITE_BATCH, WRITE_BATCH_BYTES};
use crate::hooks::run_guarded;
use crate::operation::{OpItem, Operation};
use crate::protocol::{internal_error, is_request_error, too_large_error};
use crate::rt::{BoxSleep, Timer};
use crate::{CloseReason, ConnectionInfo, EndReason, Gauges, Hooks};

type StopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs the end hooks of one HTTP "connection" (a request, or a single-connection
/// reservation) when it is dropped, and releases its stream slot.
pub(crate) struct StreamEnd<H: Hooks> {
    pub(crate) conn: Arc<ConnectionInfo>,
    pub(crate) hooks: Arc<H>,
    pub(crate) gauges: Arc<Gauges>,
    /// Whether it holds a slot of `max_http_streams`.
    pub(crate) stream: bool,
    /// Whether `on_connect` accepted it (then `on_disconnect` runs too).
    pub(crate) accepted: bool,
    pub(crate) reason: Option<CloseReason>,
}

impl<H: Hooks> Drop for StreamEnd<H> {
    fn drop(&mut self) {
        if self.stream {
            self.gauges.close_http_stream();
        }
        let reason = self.reason.take().unwrap_or(CloseReason::Dropped);
        tracing::debug!(conn = self.conn.id, protocol = %self.conn.subprotocol, reason = %reason, "http stream ended");
        let (hooks, conn, reason) = (&self.hooks, &self.conn, &reason);
        if self.accepted {
            run_guarded(&self.gauges, "on_disconnect", conn.id, || {
                hooks.on_disconnect(conn, reason);
            });
        }
        run_guarded(&self.gauges, "on_close", conn.id, || {
            hooks.on_close(conn, reason);
        });
    }
}

/// The response body of an event stream.
pub(crate) struct EventStream<H: Hooks, R> {
    ops: Arc<Reservation<H>>,
    format: Format,
    /// Operations that yielded a result (a later error-only result is an event, not a
    /// request error).
    streaming: HashSet<String>,
    started: bool,
    finished: bool,
    timer: R,
    heartbeat: Option<Duration>,
    sleep: Option<BoxSleep>,
    stop: StopFuture,
    ending: Option<Arc<Ending>>,
    max_response: usize,
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
        ending: Option<Arc<Ending>>,
        max_response: usize,
    ) -> Self {
        Self {
            ops,
            format,
            streaming: HashSet::new(),
            started: false,
            finished: false,
            timer,
            heartbeat,
            sleep: None,
            stop,
            ending,
            max_response,
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

    fn poll_ops(&mut self, cx: &mut Context<'_>) -> Poll<ChildEvent<Operation<H>>> {
        self.ops.poll_ops(cx)
    }

    fn remove(&mut self, id: &str) -> Option<Operation<H>> {
        self.streaming.remove(id);
        self.ops.remove(id)
    }

    /// A distinct stream ends with its one operation; a single-connection stream goes on.
    fn after_op(&self, frame: String) -> Step {
        match self.format {
            Format::SseSingle => Step::Frame(frame),
            Format::Sse | Format::Multipart => Step::Last(frame),
        }
    }

    /// Ends operation `id` early with `reason` and tells the client: `errors` as a
    /// transport error (`fatal`: multipart's `{"payload": null, ...}`, the end of the
    /// response), or as the operation's last result, then its end.
    fn end_op(&mut self, id: &str, reason: EndReason, errors: &[ServerError], fatal: bool) -> Step {
        if let Some(op) = self.remove(id) {
            op.finish(reason);
        }
        let text = if fatal {
            frame::fatal(self.format, id, errors)
        } else {
            frame::next(self.format, id, &frame::errors_json(errors))
                + &frame::complete(self.format, id)
        };
        self.after_op(text)
    }

    fn payload(&mut self, id: String, json: &str) -> Step {
        if json.len() > self.max_response {
            return self.end_op(&id, EndReason::ResponseTooLarge, &too_large_error(), true);
        }
        let text = frame::next(self.format, &id, json);
        self.streaming.insert(id);
        Step::Frame(text)
    }

    fn step(&mut self, event: ChildEvent<Operation<H>>) -> Step {
        match event {
            ChildEvent::Item(id, OpItem::Response(response)) => {
                if !self.streaming.contains(&id) && is_request_error(&response) {
                    // Failed before execution: only `errors` (a request error has no
                    // `data` entry), then the end.
                    return self.end_op(&id, EndReason::RequestError, &response.errors, false);
                }
                let json = frame::result_json(&response);
                self.payload(id, &json)
            }
            ChildEvent::Item(id, OpItem::Shared(payload)) => self.payload(id, &payload),
            ChildEvent::Item(id, OpItem::Refused(errors)) => {
                let errors = if errors.is_empty() {
                    internal_error()
                } else {
                    errors
                };
                self.end_op(&id, EndReason::Refused, &errors, false)
            }
            ChildEvent::Item(id, OpItem::RequestError(errors)) => {
                self.end_op(&id, EndReason::RequestError, &errors, false)
            }
            ChildEvent::Ended(id, op) => {
                self.streaming.remove(&id);
                op.finish(EndReason::Completed);
                let text = frame::complete(self.format, &id);
                self.after_op(text)
            }
            ChildEvent::Panicked(id, op) => {
                tracing::warn!(id = %id, "operation panicked");
                op.finish(EndReason::Panicked);
                // Already out of the set, so `end_op` finds nothing to finish: it only
                // tells the client.
                self.end_op(&id, EndReason::Panicked, &internal_error(), true)
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
            return Poll::Ready(frame::shutdown(this.format).map(|b| Ok(Frame::data(b))));
        }
        if !this.started {
            this.started = true;
            this.rearm();
            return Poll::Ready(Some(Ok(Frame::data(frame::preamble(this.format)))));
        }
        if this.stop.as_mut().poll(cx).is_ready() {
            this.finished = true;
            this.reason = Some(CloseReason::ServerShutdown);
            this.ops.close(CloseReason::ServerShutdown);
            return Poll::Ready(frame::shutdown(this.format).map(|b| Ok(Frame::data(b))));
        }
        // Every event that is ready goes into one frame, up to the driver's write batch:
        // one chunk and one write for many events, as on WebSocket.
        let mut batch = String::new();
        let mut events = 0;
        while events < WRITE_BATCH && batch.len() < WRITE_BATCH_BYTES {
            let step = match this.poll_ops(cx) {
                Poll::Ready(event) => this.step(event),
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
            return Poll::Ready(Some(Ok(Frame::data(frame::heartbeat(this.format)))));
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
        let reason = self
            .reason
            .take()
            .or_else(|| self.ending.as_ref().and_then(|e| e.get()))
            .unwrap_or(CloseReason::Dropped);
        self.ops.close(reason);
    }
}
