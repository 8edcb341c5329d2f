//! Runtime-free coordination: a one-shot broadcast signal and a tracker of live futures.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use event_listener::Event;

/// A flag that is raised once and wakes every waiter.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    event: Event,
}

impl Signal {
    pub(crate) fn raise(&self) {
        // SeqCst pairs with the load in `wait` after `listen`: a waiter that registered
        // before this store is notified, one that registers after sees the flag.
        self.raised.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Resolves once the signal is raised.
    pub(crate) async fn wait(self: Arc<Self>) {
        loop {
            if self.is_raised() {
                return;
            }
            let listener = self.event.listen();
            if self.is_raised() {
                return;
            }
            listener.await;
        }
    }
}

/// Counts live tracked futures; [`Tracker::wait`] resolves when none is left.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    live: AtomicUsize,
    event: Event,
}

/// Held by a tracked future; its drop is the moment the future counts as gone.
#[derive(Debug)]
pub(crate) struct TrackerToken(Arc<Tracker>);

impl Drop for TrackerToken {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.event.notify(usize::MAX);
        }
    }
}

impl Tracker {
    pub(crate) fn token(self: &Arc<Self>) -> TrackerToken {
        self.live.fetch_add(1, Ordering::SeqCst);
        TrackerToken(Arc::clone(self))
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Resolves when no tracked future is alive (every destructor has finished).
    pub(crate) async fn wait(&self) {
        loop {
            if self.live() == 0 {
                return;
            }
            let listener = self.event.listen();
            if self.live() == 0 {
                return;
            }
            listener.await;
        }
    }
}

/// A future tracked by a [`Tracker`].
///
/// Field order is the guarantee: `fut` is declared first, so it is dropped (with all it
/// owns) before `_token`, and `Tracker::wait` cannot return while its destructor runs.
pub(crate) struct Tracked<F> {
    fut: Pin<Box<F>>,
    _token: TrackerToken,
}

impl<F> Tracked<F> {
    pub(crate) fn new(fut: F, token: TrackerToken) -> Self {
        Self {
            fut: Box::pin(fut),
            _token: token,
        }
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.fut.as_mut().poll(cx)
    }
}
