//! Topic pub/sub with bounded, observable delivery: nothing is lost without the subscriber
//! being told.
//!
//! [`Fanout`] is the delivery engine every topics implementation shares: a registry of
//! topics, and per subscriber a bounded buffer that is allocated as it fills (an idle
//! subscriber holds no buffer). When a subscriber cannot keep up, its [`Overflow`] policy
//! decides, and every decision is visible:
//!
//! - [`Overflow::End`] (the default): the subscriber gets every event up to the overflow,
//!   then one final `Err(`[`Missed::Lagged`]`)` item carrying how many events it missed, then
//!   the end of the stream. A resolver turns it into a GraphQL error with
//!   `extensions.code = "SUBSCRIBER_LAGGED"` (`?`, `From` or `.extend()` into an
//!   [`async_graphql::Error`] all keep the code), so the client sees a `next` with that error, then `complete`.
//! - [`Overflow::DropOldest`] / [`Overflow::DropNewest`]: the stream goes on; every dropped
//!   event is counted.
//!
//! A broker that lost its connection calls [`Fanout::broker_gap`]: under `End` every
//! subscriber then ends with [`Missed::BrokerGap`] (`extensions.code = "BROKER_GAP"`);
//! under the drop policies the gap is counted. Drops, lag endings and gaps are counted in
//! the server's [`Gauges`] and logged through `tracing`.
//!
//! [`MemoryTopics`] is the in-process implementation of the [`Topics`] contract;
//! `subscope-redis` implements it across processes on the same engine.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use async_graphql::ErrorExtensions;
use futures_core::Stream;
use slab::Slab;

use crate::Gauges;

/// What a subscriber's full buffer does with the next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// End the subscription: every event up to the overflow, then [`Missed::Lagged`].
    #[default]
    End,
    /// Drop the oldest queued event to make room; the stream goes on.
    DropOldest,
    /// Drop the new event; the stream goes on.
    DropNewest,
}

/// An [`Overflow`] name that is not `end`, `drop-oldest` or `drop-newest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown overflow policy `{0}` (expected end, drop-oldest or drop-newest)")]
pub struct ParseOverflowError(String);

impl std::str::FromStr for Overflow {
    type Err = ParseOverflowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "end" => Ok(Self::End),
            "drop-oldest" => Ok(Self::DropOldest),
            "drop-newest" => Ok(Self::DropNewest),
            other => Err(ParseOverflowError(other.to_owned())),
        }
    }
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::End => "end",
            Self::DropOldest => "drop-oldest",
            Self::DropNewest => "drop-newest",
        })
    }
}

/// The delivery settings of one topics instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// Events one subscriber may have queued (default 1024).
    pub buffer: usize,
    /// What a full buffer does (default [`Overflow::End`]).
    pub overflow: Overflow,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            buffer: 1024,
            overflow: Overflow::End,
        }
    }
}

impl Delivery {
    /// Events one subscriber may have queued (at least 1).
    #[must_use]
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events.max(1);
        self
    }

    /// What a full buffer does.
    #[must_use]
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }
}

/// Why a subscription ended before its topic did: its final item.
///
/// It converts into the GraphQL error a resolver yields as the stream's final item, with
/// the message, `extensions.code` ([`Missed::code`]) and, for a lag, `extensions.dropped`,
/// whichever way it is converted: `?`, `.into()`, `async_graphql::Error::from` or
/// `.extend()` ([`ErrorExtensions`]).
///
/// ```
/// use std::sync::Arc;
/// use async_graphql::Value;
/// use subscope_core::Missed;
///
/// /// What a resolver's stream maps each topic item through.
/// fn event(item: Result<Arc<str>, Missed>) -> async_graphql::Result<String> {
///     let event = item?; // a `Missed` keeps its code
///     Ok(event.to_string())
/// }
///
/// let err = event(Err(Missed::Lagged { dropped: 3 })).unwrap_err();
/// let extensions = err.extensions.expect("extensions");
/// assert_eq!(extensions.get("code"), Some(&Value::from("SUBSCRIBER_LAGGED")));
/// assert_eq!(extensions.get("dropped"), Some(&Value::from(3)));
/// ```
///
/// It deliberately does not implement `Display` (nor `std::error::Error`): async-graphql
/// converts every `Display` type into an error *without* extensions, and that conversion
/// would win over this one for `?`. [`Missed::message`] is the text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missed {
    /// The subscriber's buffer overflowed under [`Overflow::End`].
    Lagged {
        /// Events published to it that it will never receive.
        dropped: u64,
    },
    /// The broker's connection was lost and re-established: events published meanwhile
    /// may never arrive.
    BrokerGap,
}

impl Missed {
    /// The `extensions.code` of the GraphQL error: `SUBSCRIBER_LAGGED` or `BROKER_GAP`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Lagged { .. } => "SUBSCRIBER_LAGGED",
            Self::BrokerGap => "BROKER_GAP",
        }
    }

    /// The error message a client sees.
    pub fn message(&self) -> String {
        match self {
            Self::Lagged { dropped } => {
                format!("subscriber lagged: {dropped} events were dropped")
            }
            Self::BrokerGap => {
                "broker gap: events published while the broker was unreachable may be lost"
                    .to_owned()
            }
        }
    }
}

/// The GraphQL error a resolver yields as the stream's final item: the message,
/// `extensions.code` and, for a lag, `extensions.dropped`. This is what `?` uses.
impl From<Missed> for async_graphql::Error {
    fn from(missed: Missed) -> Self {
        missed.extend()
    }
}

/// `missed.extend()`: the same error as `?` and `From` give.
impl ErrorExtensions for Missed {
    fn extend(&self) -> async_graphql::Error {
        let code = self.code();
        let dropped = match self {
            Self::Lagged { dropped } => Some(*dropped),
            Self::BrokerGap => None,
        };
        async_graphql::Error::new(self.message()).extend_with(|_, e| {
            e.set("code", code);
            if let Some(n) = dropped {
                e.set("dropped", n);
            }
        })
    }
}

/// One subscriber's buffer and state, shared by its stream and the registry.
#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
}

/// Why a subscription will end; the count of a lag is `SlotState::dropped`, read when the
/// final item is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Lagged,
    BrokerGap,
}

#[derive(Debug, Default)]
struct SlotState {
    queue: VecDeque<Arc<str>>,
    waker: Option<Waker>,
    /// Set once the subscription must end after what is queued (policy `End`).
    ending: Option<Ending>,
    /// Events this subscriber lost.
    dropped: u64,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Called with a topic name and whether it now has subscribers, whenever that changes.
type TopicChange = Box<dyn Fn(&str, bool) + Send + Sync>;

struct FanoutInner {
    topics: Mutex<HashMap<String, Slab<Arc<Slot>>>>,
    delivery: Delivery,
    gauges: Arc<Gauges>,
    on_change: Option<TopicChange>,
}

impl FanoutInner {
    fn topics(&self) -> MutexGuard<'_, HashMap<String, Slab<Arc<Slot>>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The delivery engine: a topic registry with one bounded buffer per subscriber. Clones
/// share it. See the module docs.
#[derive(Clone)]
pub struct Fanout {
    inner: Arc<FanoutInner>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("delivery", &self.inner.delivery)
            .field("topics", &self.inner.topics().len())
            .finish_non_exhaustive()
    }
}

impl Fanout {
    /// An engine delivering under `delivery`, counting into `gauges`.
    pub fn new(delivery: Delivery, gauges: Arc<Gauges>) -> Self {
        Self::build(delivery, gauges, None)
    }

    /// Like [`Fanout::new`], and calls `on_change(topic, wanted)` whenever a topic gains its
    /// first subscriber (`true`) or loses its last (`false`), so a broker can subscribe and
    /// unsubscribe upstream. It runs inside `subscribe` and inside a stream's `Drop`: it
    /// must not block.
    pub fn with_topic_changes(
        delivery: Delivery,
        gauges: Arc<Gauges>,
        on_change: impl Fn(&str, bool) + Send + Sync + 'static,
    ) -> Self {
        Self::build(delivery, gauges, Some(Box::new(on_change)))
    }

    fn build(delivery: Delivery, gauges: Arc<Gauges>, on_change: Option<TopicChange>) -> Self {
        Self {
            inner: Arc::new(FanoutInner {
                topics: Mutex::default(),
                delivery,
                gauges,
                on_change,
            }),
        }
    }

    /// The delivery settings.
    pub fn delivery(&self) -> Delivery {
        self.inner.delivery
    }

    /// Every event published to `topic` from now on, until the stream is dropped or its
    /// final [`Missed`] item.
    pub fn subscribe(&self, topic: &str) -> Subscription {
        let slot = Arc::new(Slot::default());
        let (key, first) = {
            let mut topics = self.inner.topics();
            let subs = topics.entry(topic.to_owned()).or_default();
            (subs.insert(Arc::clone(&slot)), subs.len() == 1)
        };
        if first && let Some(f) = &self.inner.on_change {
            f(topic, true);
        }
        Subscription {
            slot,
            registration: Some(Registration {
                inner: Arc::clone(&self.inner),
                topic: topic.to_owned(),
                key,
            }),
            done: false,
        }
    }

    /// Queues `event` for every subscriber of `topic`, in publish order; returns how many
    /// took it (subscribers ending under `End` and drops under `DropNewest` do not count).
    pub fn publish(&self, topic: &str, event: impl Into<Arc<str>>) -> usize {
        let event = event.into();
        let delivery = self.inner.delivery;
        let gauges = &self.inner.gauges;
        let mut wake = Vec::new();
        let delivered = {
            let topics = self.inner.topics();
            let Some(subs) = topics.get(topic) else {
                return 0;
            };
            let mut delivered = 0;
            for (_, slot) in subs.iter() {
                let mut s = slot.lock();
                if s.ending.is_none() && s.queue.len() >= delivery.buffer {
                    match delivery.overflow {
                        Overflow::End => {
                            s.ending = Some(Ending::Lagged);
                            gauges.count_lagged();
                            tracing::warn!(
                                topic,
                                buffer = delivery.buffer,
                                "subscriber lagged: its subscription ends after what is queued"
                            );
                            wake.extend(s.waker.take());
                        }
                        Overflow::DropOldest => {
                            s.queue.pop_front();
                            count_drop(&mut s, gauges, topic, delivery.overflow);
                        }
                        Overflow::DropNewest => {
                            count_drop(&mut s, gauges, topic, delivery.overflow);
                            continue;
                        }
                    }
                }
                if s.ending.is_some() {
                    // Ending under `End`: it will be told how many it missed.
                    s.dropped += 1;
                    gauges.count_dropped();
                    continue;
                }
                s.queue.push_back(Arc::clone(&event));
                delivered += 1;
                wake.extend(s.waker.take());
            }
            delivered
        };
        for w in wake {
            w.wake();
        }
        delivered
    }

    /// The broker lost events it cannot name (its connection dropped and came back): every
    /// current subscriber is treated under the policy. `End` ends each with
    /// [`Missed::BrokerGap`] after what is queued; the drop policies count the gap.
    pub fn broker_gap(&self) {
        let mut wake = Vec::new();
        let mut told = 0;
        {
            let topics = self.inner.topics();
            for (_, slot) in topics.values().flat_map(Slab::iter) {
                told += 1;
                self.inner.gauges.count_gap();
                if self.inner.delivery.overflow == Overflow::End {
                    let mut s = slot.lock();
                    if s.ending.is_none() {
                        s.ending = Some(Ending::BrokerGap);
                        wake.extend(s.waker.take());
                    }
                }
            }
        }
        tracing::warn!(
            subscribers = told,
            overflow = %self.inner.delivery.overflow,
            "broker gap: events published meanwhile may be lost"
        );
        for w in wake {
            w.wake();
        }
    }

    /// Topics with at least one subscriber now.
    pub fn topics(&self) -> Vec<String> {
        self.inner.topics().keys().cloned().collect()
    }

    /// Subscribers of `topic` now.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.inner.topics().get(topic).map_or(0, Slab::len)
    }

    /// Events queued for the subscribers of `topic` now, in total.
    pub fn queued(&self, topic: &str) -> usize {
        self.inner.topics().get(topic).map_or(0, |subs| {
            subs.iter().map(|(_, slot)| slot.lock().queue.len()).sum()
        })
    }
}

fn count_drop(s: &mut SlotState, gauges: &Gauges, topic: &str, overflow: Overflow) {
    s.dropped += 1;
    gauges.count_dropped();
    // One line when a subscriber starts dropping, then one per power of two: visible,
    // never a flood of logs.
    if s.dropped.is_power_of_two() {
        tracing::warn!(topic, %overflow, dropped = s.dropped, "slow subscriber: events dropped");
    }
}

/// Removes a subscriber from its topic when its stream ends or is dropped.
struct Registration {
    inner: Arc<FanoutInner>,
    topic: String,
    key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let last = {
            let mut topics = self.inner.topics();
            let Some(subs) = topics.get_mut(&self.topic) else {
                return;
            };
            subs.try_remove(self.key);
            let last = subs.is_empty();
            if last {
                topics.remove(&self.topic);
            }
            last
        };
        if last && let Some(f) = &self.inner.on_change {
            f(&self.topic, false);
        }
    }
}

/// One subscriber's stream: `Ok(event)` in publish order; at most one final `Err(Missed)`
/// (then the end). Dropping it unsubscribes at once.
pub struct Subscription {
    slot: Arc<Slot>,
    registration: Option<Registration>,
    done: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.slot.lock();
        f.debug_struct("Subscription")
            .field("queued", &s.queue.len())
            .field("dropped", &s.dropped)
            .field("done", &self.done)
            .finish()
    }
}

impl Subscription {
    /// Events this subscriber lost so far (overflow and, under `End`, after it).
    pub fn dropped(&self) -> u64 {
        self.slot.lock().dropped
    }
}

/// Queued events above which a drained buffer gives its memory back.
const KEEP_CAPACITY: usize = 64;

impl Stream for Subscription {
    type Item = Result<Arc<str>, Missed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let ending = {
            let mut s = self.slot.lock();
            if let Some(event) = s.queue.pop_front() {
                if s.queue.is_empty() && s.queue.capacity() > KEEP_CAPACITY {
                    // Memory follows what is queued: a burst does not stay allocated.
                    s.queue = VecDeque::new();
                }
                return Poll::Ready(Some(Ok(event)));
            }
            // Left set, so a publish racing this poll counts as dropped, not delivered.
            match s.ending {
                Some(Ending::Lagged) => Some(Missed::Lagged { dropped: s.dropped }),
                Some(Ending::BrokerGap) => Some(Missed::BrokerGap),
                None => {
                    s.waker = Some(cx.waker().clone());
                    None
                }
            }
        };
        match ending {
            Some(missed) => {
                // Told; the slot is released before the final item is handed over.
                self.done = true;
                self.registration = None;
                Poll::Ready(Some(Err(missed)))
            }
            None => Poll::Pending,
        }
    }
}

/// A topic pub/sub backend for resolvers: [`MemoryTopics`] in one process,
/// `subscope_redis::RedisTopics` across processes, or your own (NATS, Kafka, Postgres
/// `LISTEN`).
///
/// # What an implementation must guarantee
/// - `subscribe` returns a [`Subscription`] from a [`Fanout`], so buffering, the overflow
///   policy, the final [`Missed`] item, the gauges and the logs are the same everywhere;
/// - every event a publisher hands over reaches every subscriber of that topic at most
///   once and in publish order (hand it to [`Fanout::publish`] once, in order);
/// - whenever the backend may have lost events it cannot name (a reconnect, a consumer
///   group rebalance, a `LISTEN` connection that dropped), it calls
///   [`Fanout::broker_gap`] before delivering anything newer;
/// - dropping a `Subscription` unsubscribes on every path (it is a `Drop`, so the backend
///   may only be told through [`Fanout::with_topic_changes`], which must not block).
pub trait Topics: Send + Sync + 'static {
    /// Why a publish failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Every event published to `topic` from now on.
    fn subscribe(&self, topic: &str) -> Subscription;

    /// Publishes `event` to `topic`; returns how many receivers took it (what a receiver
    /// is depends on the backend: local subscribers in memory, processes with Redis).
    fn publish(
        &self,
        topic: &str,
        event: &str,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;
}

/// Topics within one process. Clones share the topics.
#[derive(Debug, Clone)]
pub struct MemoryTopics {
    fanout: Fanout,
}

impl MemoryTopics {
    /// In-process topics delivering under `delivery`, counting into `gauges`.
    pub fn new(delivery: Delivery, gauges: Arc<Gauges>) -> Self {
        Self {
            fanout: Fanout::new(delivery, gauges),
        }
    }

    /// The engine (subscriber counts, queued events).
    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }
}

impl Topics for MemoryTopics {
    type Error = Infallible;

    fn subscribe(&self, topic: &str) -> Subscription {
        self.fanout.subscribe(topic)
    }

    fn publish(
        &self,
        topic: &str,
        event: &str,
    ) -> impl Future<Output = Result<usize, Infallible>> + Send {
        std::future::ready(Ok(self.fanout.publish(topic, event)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::StreamExt;
    use futures_lite::future::block_on;

    fn fanout(buffer: usize, overflow: Overflow) -> (Fanout, Arc<Gauges>) {
        let gauges = Arc::new(Gauges::new());
        let delivery = Delivery::default().buffer(buffer).overflow(overflow);
        (Fanout::new(delivery, Arc::clone(&gauges)), gauges)
    }

    fn drain(sub: &mut Subscription) -> Vec<Result<String, Missed>> {
        let mut out = Vec::new();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        while let Poll::Ready(Some(item)) = Pin::new(&mut *sub).poll_next(&mut cx) {
            out.push(item.map(|e| e.to_string()));
        }
        out
    }

    fn ok(range: std::ops::Range<u32>) -> Vec<Result<String, Missed>> {
        range.map(|i| Ok(i.to_string())).collect()
    }

    #[test]
    fn end_delivers_the_prefix_then_the_lag_then_nothing() {
        let (f, gauges) = fanout(4, Overflow::End);
        let mut slow = f.subscribe("t");
        let mut fast = f.subscribe("t");
        for i in 0..10u32 {
            f.publish("t", i.to_string());
            if i < 3 {
                assert_eq!(drain(&mut fast), ok(i..i + 1));
            }
        }
        let mut want = ok(0..4);
        want.push(Err(Missed::Lagged { dropped: 6 }));
        assert_eq!(drain(&mut slow), want);
        assert_eq!(block_on(slow.next()), None);
        assert_eq!(f.subscribers("t"), 1, "the lagged slot is released");
        // `fast` read its first 3, then stopped reading too: it lagged at event 7.
        let mut fast_items = drain(&mut fast);
        assert_eq!(fast_items.pop(), Some(Err(Missed::Lagged { dropped: 3 })));
        assert_eq!(fast_items, ok(3..7));
        let snap = gauges.snapshot();
        assert_eq!(snap.events_dropped, 9);
        assert_eq!(snap.subscriptions_lagged, 2);
    }

    #[test]
    fn drop_oldest_and_drop_newest_count_exactly_what_they_drop() {
        for (overflow, want) in [(Overflow::DropOldest, 6..10), (Overflow::DropNewest, 0..4)] {
            let (f, gauges) = fanout(4, overflow);
            let mut sub = f.subscribe("t");
            for i in 0..10u32 {
                f.publish("t", i.to_string());
            }
            assert_eq!(drain(&mut sub), ok(want), "{overflow}");
            assert_eq!(sub.dropped(), 6);
            assert_eq!(gauges.snapshot().events_dropped, 6);
            assert_eq!(gauges.snapshot().subscriptions_lagged, 0);
            // The stream goes on.
            f.publish("t", "after");
            assert_eq!(drain(&mut sub), [Ok("after".to_owned())]);
        }
    }

    #[test]
    fn a_broker_gap_ends_under_end_and_is_counted_otherwise() {
        let (f, gauges) = fanout(8, Overflow::End);
        let mut sub = f.subscribe("t");
        f.publish("t", "before");
        f.broker_gap();
        f.publish("t", "after the gap is not delivered");
        assert_eq!(
            drain(&mut sub),
            [Ok("before".to_owned()), Err(Missed::BrokerGap)]
        );
        assert_eq!(gauges.snapshot().broker_gaps, 1);

        let (f, gauges) = fanout(8, Overflow::DropNewest);
        let mut sub = f.subscribe("t");
        f.broker_gap();
        f.publish("t", "goes on");
        assert_eq!(drain(&mut sub), [Ok("goes on".to_owned())]);
        assert_eq!(gauges.snapshot().broker_gaps, 1);
    }

    #[test]
    fn memory_follows_what_is_queued_and_dropping_unsubscribes() {
        let (f, _) = fanout(1024, Overflow::End);
        let mut sub = f.subscribe("t");
        assert_eq!(sub.slot.lock().queue.capacity(), 0, "idle: no buffer");
        for i in 0..1000u32 {
            f.publish("t", i.to_string());
        }
        assert_eq!(f.queued("t"), 1000);
        assert_eq!(drain(&mut sub).len(), 1000);
        assert_eq!(
            sub.slot.lock().queue.capacity(),
            0,
            "drained: buffer given back"
        );
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&changes);
        let f = Fanout::with_topic_changes(Delivery::default(), Arc::default(), move |t, on| {
            seen.lock().unwrap().push(format!("{t} {on}"));
        });
        let a = f.subscribe("x");
        let b = f.subscribe("x");
        drop(a);
        drop(b);
        assert_eq!(*changes.lock().unwrap(), ["x true", "x false"]);
        assert_eq!(f.subscribers("x"), 0);
    }

    #[test]
    fn overflow_names_round_trip() {
        for o in [Overflow::End, Overflow::DropOldest, Overflow::DropNewest] {
            assert_eq!(o.to_string().parse::<Overflow>(), Ok(o));
        }
        assert!("drop".parse::<Overflow>().is_err());
    }

    #[test]
    fn the_graphql_error_carries_code_and_dropped() {
        let e = Missed::Lagged { dropped: 5 }.extend();
        let ext = serde_json::to_value(e.extensions.expect("extensions")).expect("json");
        assert_eq!(
            ext,
            serde_json::json!({"code": "SUBSCRIBER_LAGGED", "dropped": 5})
        );
        let e = Missed::BrokerGap.extend();
        let ext = serde_json::to_value(e.extensions.expect("extensions")).expect("json");
        assert_eq!(ext, serde_json::json!({"code": "BROKER_GAP"}));
    }

    /// `?` in a resolver gives the same error as `.extend()`: message, code and count.
    #[test]
    fn question_mark_keeps_code_and_dropped() {
        fn through_question_mark(item: Result<Arc<str>, Missed>) -> async_graphql::Result<String> {
            Ok(item?.to_string())
        }
        for missed in [Missed::Lagged { dropped: 7 }, Missed::BrokerGap] {
            let e = through_question_mark(Err(missed.clone())).expect_err("an error");
            assert_eq!(e.message, missed.message());
            let ext = serde_json::to_value(e.extensions.expect("extensions")).expect("json");
            let want = match missed {
                Missed::Lagged { .. } => {
                    serde_json::json!({"code": "SUBSCRIBER_LAGGED", "dropped": 7})
                }
                Missed::BrokerGap => serde_json::json!({"code": "BROKER_GAP"}),
            };
            assert_eq!(ext, want);
        }
        // And a subscription's real final item, through `?`.
        let (f, _) = fanout(1, Overflow::End);
        let mut sub = f.subscribe("t");
        f.broker_gap();
        let item = block_on(sub.next()).expect("an item");
        let e = through_question_mark(item).expect_err("the gap");
        let ext = e.extensions.expect("extensions");
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("BROKER_GAP"))
        );
    }
}
