//! Shared execution: identical subscriptions run one `execute_stream` and serialize each
//! event once.
//!
//! Operations opt in with a [`ShareKey`] ([`crate::Hooks::share_key`], or
//! [`crate::Config::share_identical`]). The first operation with a key starts the
//! *upstream*; later ones join it at its next event. There is no task: whichever subscriber
//! is polled while the upstream has nothing queued for it polls the upstream, serializes the
//! event once and queues it for every subscriber (each under its own bound and overflow
//! policy, so a slow one lags alone). The upstream's waker wakes every waiting subscriber,
//! so a subscriber whose socket is blocked never holds the others up. When the last
//! subscriber is dropped, the upstream's stream is dropped inside that `drop`.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};

use async_graphql::{ErrorExtensions, Response, ServerError};
use futures_core::Stream;
use futures_core::stream::BoxStream;
use slab::Slab;

use crate::Gauges;
use crate::share_key::ShareKey;
use crate::token::{TokenInner, check_leak};
use crate::topics::{Delivery, Missed, Overflow};

/// One shared event, as every subscriber receives it.
#[derive(Debug, Clone)]
pub(crate) enum SharedItem {
    /// An execution result, serialized once, and its topic event id
    /// (`extensions.eventId`, for SSE's `id:` line).
    Next(Arc<str>, Option<Arc<str>>),
    /// The first result was a request error (no data, pathless errors).
    RequestError(Arc<[ServerError]>),
    /// This subscriber's buffer overflowed under `Overflow::End`: its final item.
    Lagged(ServerError),
}

/// The registry of one server's upstreams.
pub(crate) struct Shares {
    upstreams: Mutex<HashMap<ShareKey, Weak<Upstream>>>,
    delivery: Delivery,
    gauges: Arc<Gauges>,
}

impl Shares {
    pub(crate) fn new(delivery: Delivery, gauges: Arc<Gauges>) -> Arc<Self> {
        Arc::new(Self {
            upstreams: Mutex::default(),
            delivery,
            gauges,
        })
    }

    fn map(&self) -> MutexGuard<'_, HashMap<ShareKey, Weak<Upstream>>> {
        self.upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the live upstream for `key`, or starts one with `start` (and `token`, the
    /// leak-detection token of the request it executes).
    pub(crate) fn join(
        self: &Arc<Self>,
        key: ShareKey,
        token: Option<Weak<TokenInner>>,
        start: impl FnOnce() -> BoxStream<'static, Response>,
    ) -> SharedSubscription {
        let mut map = self.map();
        if let Some(upstream) = map.get(&key).and_then(Weak::upgrade)
            && let Some(slot) = upstream.add_slot()
        {
            self.gauges.open_shared_subscriber();
            return SharedSubscription { upstream, slot };
        }
        let upstream = Arc::new_cyclic(|weak| Upstream {
            waker: Waker::from(Arc::new(WakeAll(weak.clone()))),
            key: key.clone(),
            shares: Arc::downgrade(self),
            state: Mutex::new(UpState {
                stream: Some(start()),
                driving: false,
                ended: false,
                panicked: false,
                first: true,
                slots: Slab::new(),
                token,
            }),
            delivery: self.delivery,
            gauges: Arc::clone(&self.gauges),
        });
        self.gauges.open_upstream();
        self.gauges.open_shared_subscriber();
        let slot = upstream.add_slot().unwrap_or_default();
        map.insert(key, Arc::downgrade(&upstream));
        SharedSubscription { upstream, slot }
    }
}

struct Upstream {
    /// Polls the stream with this: it wakes every waiting subscriber (made once).
    waker: Waker,
    key: ShareKey,
    shares: Weak<Shares>,
    state: Mutex<UpState>,
    delivery: Delivery,
    gauges: Arc<Gauges>,
}

struct UpState {
    /// `None` while a subscriber polls it (outside the lock) and after it ended.
    stream: Option<BoxStream<'static, Response>>,
    driving: bool,
    ended: bool,
    panicked: bool,
    /// No event yet: the first one may be a request error.
    first: bool,
    slots: Slab<Slot>,
    /// With leak detection on: the token of the request the upstream executes.
    token: Option<Weak<TokenInner>>,
}

impl UpState {
    /// The registered wakers of every subscriber but `except`, taken.
    fn take_wakers(&mut self, except: Option<usize>) -> Vec<Waker> {
        self.slots
            .iter_mut()
            .filter(|(k, _)| Some(*k) != except)
            .filter_map(|(_, s)| s.waker.take())
            .collect()
    }
}

#[derive(Default)]
struct Slot {
    queue: VecDeque<SharedItem>,
    waker: Option<Waker>,
    /// Overflowed under `Overflow::End`: the lag item comes after what is queued.
    lagged: bool,
    dropped: u64,
    done: bool,
}

impl Upstream {
    fn lock(&self) -> MutexGuard<'_, UpState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new subscriber slot, or `None` if the upstream already ended.
    fn add_slot(&self) -> Option<usize> {
        let mut state = self.lock();
        (!state.ended).then(|| state.slots.insert(Slot::default()))
    }

    /// Queues `item` for every subscriber under the delivery policy; returns the wakers
    /// of the subscribers other than `me` that got something.
    fn distribute(&self, state: &mut UpState, item: &SharedItem, me: usize) -> Vec<Waker> {
        let mut wake = Vec::new();
        let Delivery {
            buffer, overflow, ..
        } = self.delivery;
        for (key, slot) in &mut state.slots {
            if slot.lagged || slot.done {
                continue;
            }
            if slot.queue.len() >= buffer {
                slot.dropped += 1;
                self.gauges.count_dropped();
                match overflow {
                    Overflow::DropOldest => {
                        slot.queue.pop_front();
                        slot.queue.push_back(item.clone());
                    }
                    Overflow::DropNewest => {}
                    _ => {
                        slot.lagged = true;
                        self.gauges.count_lagged();
                        tracing::debug!(key = key, "shared subscriber lagged");
                    }
                }
            } else {
                slot.queue.push_back(item.clone());
            }
            if key != me
                && let Some(w) = slot.waker.take()
            {
                wake.push(w);
            }
        }
        wake
    }

    fn wake_all(&self) {
        let wakers = self.lock().take_wakers(None);
        for w in wakers {
            w.wake();
        }
    }

    /// Drops an upstream's stream, then checks its leak-detection token.
    fn drop_stream(&self, stream: BoxStream<'static, Response>, token: Option<Weak<TokenInner>>) {
        drop(stream);
        check_leak(token.as_ref(), &self.gauges);
    }

    /// Removes a subscriber; the last one drops the stream here, synchronously.
    fn remove_slot(&self, slot: usize) {
        let stream = {
            let mut state = self.lock();
            state.slots.try_remove(slot);
            if !state.slots.is_empty() {
                return;
            }
            state.ended = true;
            state.stream.take().map(|s| (s, state.token.take()))
        };
        if let Some(shares) = self.shares.upgrade() {
            let mut map = shares.map();
            if map
                .get(&self.key)
                .is_some_and(|w| w.as_ptr() == std::ptr::from_ref(self))
            {
                map.remove(&self.key);
            }
        }
        self.gauges.close_upstream();
        if let Some((stream, token)) = stream {
            self.drop_stream(stream, token);
        }
    }
}

/// Wakes every waiting subscriber of an upstream.
struct WakeAll(Weak<Upstream>);

impl Wake for WakeAll {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(upstream) = self.0.upgrade() {
            upstream.wake_all();
        }
    }
}

/// One subscriber of a shared upstream.
pub(crate) struct SharedSubscription {
    upstream: Arc<Upstream>,
    slot: usize,
}

impl Drop for SharedSubscription {
    fn drop(&mut self) {
        self.upstream.gauges.close_shared_subscriber();
        self.upstream.remove_slot(self.slot);
    }
}

impl Stream for SharedSubscription {
    type Item = SharedItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SharedItem>> {
        let (upstream, me) = (&self.upstream, self.slot);
        loop {
            let mut state = upstream.lock();
            let UpState {
                slots,
                ended,
                panicked,
                driving,
                ..
            } = &mut *state;
            let Some(slot) = slots.get_mut(me) else {
                return Poll::Ready(None);
            };
            if let Some(item) = slot.queue.pop_front() {
                return Poll::Ready(Some(item));
            }
            if slot.done {
                return Poll::Ready(None);
            }
            if slot.lagged {
                slot.done = true;
                let missed = Missed::Lagged {
                    dropped: slot.dropped,
                };
                let error = missed.extend().into_server_error(Default::default());
                return Poll::Ready(Some(SharedItem::Lagged(error)));
            }
            if *panicked {
                slot.done = true;
                drop(state);
                // Every subscriber of a panicked upstream ends as panicked (the connection's
                // scope catches it); no panic message is printed again.
                resume_unwind(Box::new("shared upstream panicked"));
            }
            if *ended {
                return Poll::Ready(None);
            }
            slot.waker = Some(cx.waker().clone());
            if *driving {
                // Another subscriber is polling the upstream; it wakes us with the event.
                return Poll::Pending;
            }
            let Some(mut stream) = state.stream.take() else {
                return Poll::Pending;
            };
            state.driving = true;
            drop(state);

            let polled = catch_unwind(AssertUnwindSafe(|| {
                stream
                    .as_mut()
                    .poll_next(&mut Context::from_waker(&upstream.waker))
            }));

            let mut state = upstream.lock();
            state.driving = false;
            let (item, ended_stream): (_, Option<BoxStream<'static, Response>>) = match polled {
                Ok(Poll::Pending) => {
                    state.stream = Some(stream);
                    return Poll::Pending;
                }
                Ok(Poll::Ready(Some(response))) => {
                    state.stream = Some(stream);
                    let first = std::mem::replace(&mut state.first, false);
                    (Some(serialize(first, response)), None)
                }
                Ok(Poll::Ready(None)) => {
                    state.ended = true;
                    (None, Some(stream))
                }
                Err(_panic) => {
                    state.ended = true;
                    state.panicked = true;
                    (None, Some(stream))
                }
            };
            let wake = match &item {
                Some(item) => upstream.distribute(&mut state, item, me),
                None => state.take_wakers(Some(me)),
            };
            let token = if ended_stream.is_some() {
                state.token.take()
            } else {
                None
            };
            drop(state);
            // An ended stream is dropped outside the lock; the others see `ended`.
            if let Some(stream) = ended_stream {
                upstream.drop_stream(stream, token);
            }
            for w in wake {
                w.wake();
            }
        }
    }
}

/// The one serialization of an event.
fn serialize(first: bool, response: Response) -> SharedItem {
    if first && subscope_protocol::policy::is_request_error(&response) {
        return SharedItem::RequestError(response.errors.into());
    }
    let event_id = match response.extensions.get("eventId") {
        Some(async_graphql::Value::String(id)) => Some(Arc::from(id.as_str())),
        _ => None,
    };
    // Serialising plain data into a String cannot fail.
    SharedItem::Next(
        serde_json::to_string(&response).unwrap_or_default().into(),
        event_id,
    )
}
