//! What an HTTP/2 connection needs beyond hyper: an executor that keeps every stream's
//! task inside the connection's own future, and a watchdog for streams the client never
//! lets us write to.
//!
//! hyper runs each HTTP/2 stream (its response body, an RFC 8441 WebSocket) as a task it
//! hands to an executor. Spawning them on the runtime would let them outlive the
//! connection future; [`StreamTasks`] instead collects them into a [`Scope`] that the
//! connection future polls beside hyper's connection, so dropping that future drops every
//! stream, and every operation, before `drop` returns: the same guarantee as HTTP/1.1.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use futures_lite::stream::{self, OnceFuture};
use http_body::Frame;
use slab::Slab;

use super::HttpBody;
use super::io::ConnectionEnd;
use crate::rt::{BoxTask, Timer};
use crate::scope::{Scope, ScopeEvent};

/// Streams one HTTP/2 connection runs at once (`SETTINGS_MAX_CONCURRENT_STREAMS`); a
/// client opening more gets `REFUSED_STREAM` for the excess.
pub(crate) const MAX_STREAMS: u32 = 128;

/// Each stream's and the connection's receive window: what a client may send us unread.
pub(crate) const RECV_WINDOW: u32 = 64 * 1024;

/// The largest header list a request may carry (HPACK-decoded).
pub(crate) const MAX_HEADER_LIST: u32 = 16 * 1024;

/// hyper's executor for one connection: tasks go into an inbox the connection future
/// drains into its scope.
#[derive(Clone, Default)]
pub(crate) struct StreamTasks(Arc<Inbox>);

#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Default)]
struct InboxState {
    tasks: Vec<BoxTask>,
    waker: Option<Waker>,
}

impl<F> hyper::rt::Executor<F> for StreamTasks
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        self.push(Box::pin(fut));
    }
}

impl StreamTasks {
    /// Adds a task of ours (an RFC 8441 WebSocket) to the connection's scope.
    pub(crate) fn push(&self, task: BoxTask) {
        let waker = {
            let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.tasks.push(task);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Runs the tasks; never completes. Dropping it drops every task still running.
    pub(crate) fn run(&self) -> impl Future<Output = ()> + Send + use<> {
        Runner {
            inbox: Arc::clone(&self.0),
            scope: Scope::new(),
            next: 0,
        }
    }
}

struct Runner {
    inbox: Arc<Inbox>,
    scope: Scope<OnceFuture<BoxTask>>,
    next: u64,
}

impl Future for Runner {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let tasks = {
            let mut state = this
                .inbox
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.waker = Some(cx.waker().clone());
            std::mem::take(&mut state.tasks)
        };
        for task in tasks {
            this.next += 1;
            // Keys are unique: a counter.
            let _ = this
                .scope
                .insert(this.next.to_string(), stream::once_future(task));
        }
        loop {
            match this.scope.poll_next(cx) {
                Poll::Ready(ScopeEvent::Item(..) | ScopeEvent::Ended(..)) => {}
                Poll::Ready(ScopeEvent::Panicked(key, _)) => {
                    tracing::error!(task = %key, "an HTTP/2 stream task panicked; dropped");
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The connection's record of streams waiting to write: a stream that produced data and
/// was not asked for more within the write timeout sits behind a flow-control window the
/// client never opens.
///
/// The watchdog ([`Stalls::stuck`]) holds no timer while no stream waits: it parks until
/// the first one does, so an idle HTTP/2 connection costs no wake-ups.
#[derive(Clone, Default)]
pub(crate) struct Stalls(Arc<StallsInner>);

#[derive(Default)]
struct StallsInner {
    slots: Mutex<StallSlots>,
    /// Notified when the first stream starts waiting.
    waiting: Event,
}

#[derive(Default)]
struct StallSlots {
    /// Per body: since when it waits to be asked for more.
    since: Slab<Option<Instant>>,
    /// How many entries of `since` are `Some`.
    waiting: usize,
}

impl StallSlots {
    fn earliest(&self) -> Option<Instant> {
        if self.waiting == 0 {
            return None;
        }
        self.since.iter().filter_map(|(_, since)| *since).min()
    }
}

impl Stalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, StallSlots> {
        self.0.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wraps a response body so it reports its waits here. `end` is the stream's own
    /// verdict ([`ConnectionEnd::stream_of`]): a body hyper drops while the connection
    /// lives (`alive`) was reset by the client.
    pub(crate) fn watch<T: Timer + Clone>(
        &self,
        body: HttpBody,
        timer: T,
        end: Arc<ConnectionEnd>,
        alive: Arc<AtomicBool>,
    ) -> Watched<T> {
        let slot = self.lock().since.insert(None);
        Watched {
            body,
            stalls: self.clone(),
            slot,
            timer,
            end,
            alive,
        }
    }

    fn set(&self, slot: usize, since: Option<Instant>) {
        let first = {
            let mut slots = self.lock();
            let Some(entry) = slots.since.get_mut(slot) else {
                return;
            };
            let was = entry.is_some();
            *entry = since;
            match (was, since.is_some()) {
                (false, true) => {
                    slots.waiting += 1;
                    slots.waiting == 1
                }
                (true, false) => {
                    slots.waiting -= 1;
                    false
                }
                _ => false,
            }
        };
        if first {
            self.0.waiting.notify(1);
        }
    }

    fn remove(&self, slot: usize) {
        let mut slots = self.lock();
        if let Some(Some(_)) = slots.since.try_remove(slot) {
            slots.waiting -= 1;
        }
    }

    /// Resolves once some stream has waited longer than `limit` to write.
    pub(crate) async fn stuck<T: Timer>(&self, timer: &T, limit: Duration) {
        loop {
            let next = {
                let slots = self.lock();
                match slots.earliest() {
                    // Registered under the lock the first waiter takes: not missed.
                    None => Err(self.0.waiting.listen()),
                    Some(since) => Ok(since + limit),
                }
            };
            match next {
                Err(listener) => listener.await,
                Ok(deadline) if timer.now() >= deadline => return,
                Ok(deadline) => timer.sleep_until(deadline).await,
            }
        }
    }
}

/// A response body on an HTTP/2 stream, reporting to [`Stalls`].
pub(crate) struct Watched<T> {
    body: HttpBody,
    stalls: Stalls,
    slot: usize,
    timer: T,
    end: Arc<ConnectionEnd>,
    alive: Arc<AtomicBool>,
}

// The timer is never pinned through the wrapper.
impl<T> Unpin for Watched<T> {}

impl<T> Watched<T> {
    fn mark(&self, since: Option<Instant>) {
        self.stalls.set(self.slot, since);
    }
}

impl<T> Drop for Watched<T> {
    fn drop(&mut self) {
        self.stalls.remove(self.slot);
        // Runs before the body's own drop reads the verdict. A body that finished has its
        // own reason, which wins; one dropped with the connection future reads none.
        if self.alive.load(Ordering::Acquire) {
            self.end.set(crate::CloseReason::PeerGone);
        }
    }
}

/// Cleared when the connection's future is dropped (before its streams are): from then on
/// a dropped body was not reset by the client.
#[derive(Debug)]
pub(crate) struct Alive(pub(crate) Arc<AtomicBool>);

impl Alive {
    pub(crate) fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<T: Timer> http_body::Body for Watched<T> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        // Asked again: whatever we produced was taken.
        this.mark(None);
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.is_data()
            && !this.body.is_end_stream()
        {
            this.mark(Some(this.timer.now()));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
