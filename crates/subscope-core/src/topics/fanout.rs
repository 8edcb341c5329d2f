//! The delivery engine every topics implementation shares: per topic its subscribers and
//! (with history) its retained events; per subscriber a bounded queue allocated as it fills.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_core::Stream;
use slab::Slab;

use super::event_id::fresh_epoch;
use super::{Delivery, EventId, Missed, Overflow, Resume};
use crate::Gauges;

/// One event as the engine holds it: shared by every queue and the history.
#[derive(Debug)]
struct Entry<T> {
    id: Option<EventId>,
    /// When it was published (kept only under an age bound).
    at: Option<Instant>,
    value: T,
}

/// One subscriber's buffer and state, shared by its stream and the registry.
struct Slot<T> {
    state: Mutex<SlotState<T>>,
}

/// Why a subscription will end; the count of a lag is `SlotState::dropped`, read when the
/// final item is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Lagged,
    BrokerGap,
}

struct SlotState<T> {
    /// Said before anything else (a resume gap).
    first: Option<Missed>,
    /// Retained events a resumed subscriber catches up on, before `queue`. Not bounded by
    /// the buffer: history bounds it, and it only holds shared entries.
    replay: VecDeque<Arc<Entry<T>>>,
    /// Live events, bounded by the buffer.
    queue: VecDeque<Arc<Entry<T>>>,
    /// Waiting for its replay ([`Resumer`]): live events are not queued, the replay will
    /// hold them.
    paused: bool,
    /// Live events up to this id are already the subscriber's (a resume after an id the
    /// broker's reader had not reached yet).
    skip_through: Option<EventId>,
    waker: Option<Waker>,
    /// Set once the subscription must end after what is queued (policy `End`).
    ending: Option<Ending>,
    /// Events this subscriber lost.
    dropped: u64,
}

impl<T> Slot<T> {
    fn new(paused: bool) -> Self {
        Self {
            state: Mutex::new(SlotState {
                first: None,
                replay: VecDeque::new(),
                queue: VecDeque::new(),
                paused,
                skip_through: None,
                waker: None,
                ending: None,
                dropped: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Called with a topic name and whether it now has subscribers, whenever that changes.
type TopicChange = Box<dyn Fn(&str, bool) + Send + Sync>;

/// One topic: its subscribers and, with history, what it retains.
struct Topic<T> {
    subs: Slab<Arc<Slot<T>>>,
    history: VecDeque<Arc<Entry<T>>>,
    /// The sequence number of the last event published (memory ids; 0: none yet).
    last_seq: u64,
    /// The sequence number of the newest event no longer retained (0: none).
    evicted: u64,
}

impl<T> Default for Topic<T> {
    fn default() -> Self {
        Self {
            subs: Slab::new(),
            history: VecDeque::new(),
            last_seq: 0,
            evicted: 0,
        }
    }
}

struct Inner<T> {
    topics: Mutex<HashMap<String, Topic<T>>>,
    delivery: Delivery,
    /// The epoch of this instance's event ids.
    epoch: u64,
    /// The server's gauges once bound (`ServerBuilder::topics`); private ones until then.
    gauges: OnceLock<Arc<Gauges>>,
    on_change: Option<TopicChange>,
}

impl<T> Inner<T> {
    fn topics(&self) -> MutexGuard<'_, HashMap<String, Topic<T>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn gauges(&self) -> &Gauges {
        self.gauges.get_or_init(Arc::default)
    }

    /// Drops retained events past the age bound.
    fn expire(&self, topic: &mut Topic<T>) {
        let Some(age) = self.delivery.history.max_age else {
            return;
        };
        let now = Instant::now();
        while let Some(e) = topic.history.front() {
            if e.at.is_some_and(|at| now.duration_since(at) <= age) {
                break;
            }
            topic.evicted = e.id.map_or(topic.evicted, EventId::seq);
            topic.history.pop_front();
        }
    }
}

/// The delivery engine: a topic registry with one bounded buffer per subscriber and, with
/// [`super::History`], the retained events of each topic. Clones share it. See the module
/// docs.
pub struct Fanout<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Fanout<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> std::fmt::Debug for Fanout<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("delivery", &self.inner.delivery)
            .field("topics", &self.inner.topics().len())
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> Fanout<T> {
    /// An engine delivering under `delivery`.
    pub fn new(delivery: Delivery) -> Self {
        Self::build(delivery, None)
    }

    /// Like [`Fanout::new`], and calls `on_change(topic, wanted)` whenever a topic gains its
    /// first subscriber (`true`) or loses its last (`false`), so a broker can subscribe and
    /// unsubscribe upstream. It runs inside `subscribe` and inside a stream's `Drop`: it
    /// must not block.
    pub fn with_topic_changes(
        delivery: Delivery,
        on_change: impl Fn(&str, bool) + Send + Sync + 'static,
    ) -> Self {
        Self::build(delivery, Some(Box::new(on_change)))
    }

    fn build(delivery: Delivery, on_change: Option<TopicChange>) -> Self {
        Self {
            inner: Arc::new(Inner {
                topics: Mutex::default(),
                delivery,
                epoch: fresh_epoch(),
                gauges: OnceLock::new(),
                on_change,
            }),
        }
    }

    /// Counts drops, lags, gaps and replays into `gauges` (the server's: see
    /// `ServerBuilder::topics`). The first binding wins; counts made before it are not
    /// carried over.
    pub fn count_into(&self, gauges: Arc<Gauges>) {
        let bound = self.inner.gauges.get_or_init(|| Arc::clone(&gauges));
        if !Arc::ptr_eq(bound, &gauges) {
            tracing::warn!("topics already count into other gauges; this binding is ignored");
        }
    }

    /// The delivery settings.
    pub fn delivery(&self) -> Delivery {
        self.inner.delivery
    }

    /// Every event published to `topic` from now on, until the stream is dropped or its
    /// final [`Missed`] item.
    pub fn subscribe(&self, topic: &str) -> Subscription<T> {
        self.subscribe_after(topic, None)
    }

    /// Every event of `topic` this engine retains after `after`, then every live one,
    /// exactly once: the replay is read under the lock [`Fanout::publish`] takes. Where
    /// history does not reach back to `after` (trimmed, another instance's id, one never
    /// issued, or no history), the first item is [`Missed::ResumeGap`], then every
    /// retained event. `None`: from now on.
    pub fn subscribe_after(&self, topic: &str, after: Option<EventId>) -> Subscription<T> {
        let slot = Arc::new(Slot::new(false));
        let inner = &self.inner;
        let (key, first) = {
            let mut topics = inner.topics();
            let t = topics.entry(topic.to_owned()).or_default();
            if let Some(after) = after {
                let mut s = slot.lock();
                if inner.delivery.history.is_on() {
                    inner.expire(t);
                    let gap = after.epoch() != inner.epoch
                        || after.seq() > t.last_seq
                        || after.seq() < t.evicted;
                    s.replay = t
                        .history
                        .iter()
                        .filter(|e| gap || e.id.is_some_and(|id| id > after))
                        .cloned()
                        .collect();
                    if gap {
                        s.first = Some(Missed::ResumeGap {
                            oldest: t.history.front().and_then(|e| e.id),
                        });
                    }
                } else {
                    s.first = Some(Missed::ResumeGap { oldest: None });
                }
                count_resume(inner.gauges(), topic, Some(after), &s);
            }
            (t.subs.insert(Arc::clone(&slot)), t.subs.len() == 1)
        };
        self.registered(topic, slot, key, first)
    }

    /// A subscriber of `topic` whose replay a broker supplies ([`Resumer::resume`]): until
    /// then it yields nothing and live events skip it, so the broker must replay every
    /// event up to the last one it delivered live for `topic` (see `subscope-redis`).
    pub fn subscribe_paused(&self, topic: &str) -> (Subscription<T>, Resumer<T>) {
        let slot = Arc::new(Slot::new(true));
        let (key, first) = {
            let mut topics = self.inner.topics();
            let t = topics.entry(topic.to_owned()).or_default();
            (t.subs.insert(Arc::clone(&slot)), t.subs.len() == 1)
        };
        let resumer = Resumer {
            slot: Some(Arc::clone(&slot)),
            inner: Arc::clone(&self.inner),
            topic: topic.to_owned(),
        };
        (self.registered(topic, slot, key, first), resumer)
    }

    fn registered(
        &self,
        topic: &str,
        slot: Arc<Slot<T>>,
        key: usize,
        first: bool,
    ) -> Subscription<T> {
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
            tracker: None,
            done: false,
        }
    }

    /// Publishes `event` to `topic`: with history it gets the next id and is retained;
    /// it is queued for every subscriber in publish order. Returns how many took it
    /// (subscribers ending under `End` and drops under `DropNewest` do not count).
    pub fn publish(&self, topic: &str, event: T) -> usize {
        let history = self.inner.delivery.history;
        let mut topics = self.inner.topics();
        if history.is_on() && !topics.contains_key(topic) {
            // The name is copied once, when the topic first gets history.
            topics.insert(topic.to_owned(), Topic::default());
        }
        let Some(t) = topics.get_mut(topic) else {
            return 0;
        };
        let entry = if history.is_on() {
            t.last_seq += 1;
            let entry = Arc::new(Entry {
                id: Some(EventId::new(self.inner.epoch, t.last_seq)),
                at: history.max_age.map(|_| Instant::now()),
                value: event,
            });
            t.history.push_back(Arc::clone(&entry));
            while t.history.len() > history.len {
                if let Some(old) = t.history.pop_front() {
                    t.evicted = old.id.map_or(t.evicted, EventId::seq);
                }
            }
            self.inner.expire(t);
            entry
        } else {
            Arc::new(Entry {
                id: None,
                at: None,
                value: event,
            })
        };
        let (delivered, wake) = self.push(topic, &t.subs, &entry);
        drop(topics);
        for w in wake {
            w.wake();
        }
        delivered
    }

    /// Delivers an event a broker numbered (`id`, e.g. a Redis Stream entry id) to the
    /// local subscribers of `topic`, without retaining it here. Returns how many took it.
    pub fn deliver(&self, topic: &str, id: Option<EventId>, event: T) -> usize {
        let entry = Arc::new(Entry {
            id,
            at: None,
            value: event,
        });
        let topics = self.inner.topics();
        let Some(t) = topics.get(topic) else {
            return 0;
        };
        let (delivered, wake) = self.push(topic, &t.subs, &entry);
        drop(topics);
        for w in wake {
            w.wake();
        }
        delivered
    }

    fn push(
        &self,
        topic: &str,
        subs: &Slab<Arc<Slot<T>>>,
        entry: &Arc<Entry<T>>,
    ) -> (usize, Vec<Waker>) {
        let delivery = self.inner.delivery;
        let gauges = self.inner.gauges();
        let mut wake = Vec::new();
        let mut delivered = 0;
        for (_, slot) in subs.iter() {
            let mut s = slot.lock();
            if s.paused
                || entry
                    .id
                    .is_some_and(|id| s.skip_through.is_some_and(|t| id <= t))
            {
                // Its broker replays this event, or it has it already.
                continue;
            }
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
            s.queue.push_back(Arc::clone(entry));
            delivered += 1;
            wake.extend(s.waker.take());
        }
        (delivered, wake)
    }

    /// The broker lost events it cannot name (its connection dropped and came back): every
    /// current subscriber is treated under the policy. `End` ends each with
    /// [`Missed::BrokerGap`] after what is queued; the drop policies count the gap.
    pub fn broker_gap(&self) {
        self.gap(None);
    }

    /// Like [`Fanout::broker_gap`], for the subscribers of one topic only (its stream was
    /// trimmed past what they had).
    pub fn broker_gap_in(&self, topic: &str) {
        self.gap(Some(topic));
    }

    fn gap(&self, only: Option<&str>) {
        let mut wake = Vec::new();
        let mut told = 0;
        let gauges = self.inner.gauges();
        {
            let topics = self.inner.topics();
            let subs = topics
                .iter()
                .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
                .flat_map(|(_, t)| t.subs.iter());
            for (_, slot) in subs {
                told += 1;
                gauges.count_gap();
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
            topic = only,
            overflow = %self.inner.delivery.overflow,
            "broker gap: events published meanwhile may be lost"
        );
        for w in wake {
            w.wake();
        }
    }

    /// Topics with at least one subscriber now.
    pub fn topics(&self) -> Vec<String> {
        self.inner
            .topics()
            .iter()
            .filter(|(_, t)| !t.subs.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Subscribers of `topic` now.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.inner.topics().get(topic).map_or(0, |t| t.subs.len())
    }

    /// Events queued for the subscribers of `topic` now, in total (replays included).
    pub fn queued(&self, topic: &str) -> usize {
        self.inner.topics().get(topic).map_or(0, |t| {
            t.subs
                .iter()
                .map(|(_, slot)| {
                    let s = slot.lock();
                    s.queue.len() + s.replay.len()
                })
                .sum()
        })
    }

    /// Events `topic` retains now.
    pub fn retained(&self, topic: &str) -> usize {
        self.inner
            .topics()
            .get(topic)
            .map_or(0, |t| t.history.len())
    }
}

fn count_resume<T>(gauges: &Gauges, topic: &str, after: Option<EventId>, s: &SlotState<T>) {
    gauges.count_replayed(s.replay.len());
    if let Some(Missed::ResumeGap { oldest }) = &s.first {
        gauges.count_resume_gap();
        tracing::info!(topic, after = ?after.map(|id| id.to_string()), oldest = ?oldest.map(|id| id.to_string()),
            replayed = s.replay.len(), "resume gap: said to the subscriber");
    }
}

fn count_drop<T>(s: &mut SlotState<T>, gauges: &Gauges, topic: &str, overflow: Overflow) {
    s.dropped += 1;
    gauges.count_dropped();
    // One line when a subscriber starts dropping, then one per power of two: visible,
    // never a flood of logs.
    if s.dropped.is_power_of_two() {
        tracing::warn!(topic, %overflow, dropped = s.dropped, "slow subscriber: events dropped");
    }
}

/// Hands a paused subscriber ([`Fanout::subscribe_paused`]) its replay. Dropped without
/// [`Resumer::resume`], the subscriber is told [`Missed::ResumeGap`] (nothing retained) and
/// goes on live: a gap is said, never silent.
pub struct Resumer<T> {
    slot: Option<Arc<Slot<T>>>,
    inner: Arc<Inner<T>>,
    topic: String,
}

impl<T> std::fmt::Debug for Resumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<T> Resumer<T> {
    /// The topic the subscriber waits on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Starts the subscriber: `gap` first (if any), then `replay` in order, then the live
    /// events delivered from now on, skipping those up to `skip_through` (ids the
    /// subscriber already has). The caller must deliver nothing live for this topic
    /// between reading `replay` and this call.
    pub fn resume(
        mut self,
        gap: Option<Missed>,
        replay: impl IntoIterator<Item = (EventId, T)>,
        skip_through: Option<EventId>,
    ) {
        if let Some(slot) = self.slot.take() {
            self.start(&slot, gap, replay, skip_through);
        }
    }

    fn start(
        &self,
        slot: &Slot<T>,
        gap: Option<Missed>,
        replay: impl IntoIterator<Item = (EventId, T)>,
        skip_through: Option<EventId>,
    ) {
        let waker = {
            let mut s = slot.lock();
            s.skip_through = skip_through;
            s.replay = replay
                .into_iter()
                .map(|(id, value)| {
                    Arc::new(Entry {
                        id: Some(id),
                        at: None,
                        value,
                    })
                })
                .collect();
            s.first = gap;
            s.paused = false;
            count_resume(self.inner.gauges(), &self.topic, None, &s);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Resumer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            tracing::warn!(topic = %self.topic, "a resume was abandoned: the subscriber is told");
            self.start(&slot, Some(Missed::ResumeGap { oldest: None }), [], None);
        }
    }
}

/// Removes a subscriber from its topic when its stream ends or is dropped.
struct Registration<T> {
    inner: Arc<Inner<T>>,
    topic: String,
    key: usize,
}

impl<T> Drop for Registration<T> {
    fn drop(&mut self) {
        let last = {
            let mut topics = self.inner.topics();
            let Some(t) = topics.get_mut(&self.topic) else {
                return;
            };
            t.subs.try_remove(self.key);
            let last = t.subs.is_empty();
            // A topic with history keeps it (and its counters) for later resumes.
            if last && t.last_seq == 0 && t.history.is_empty() {
                topics.remove(&self.topic);
            }
            last
        };
        if last && let Some(f) = &self.inner.on_change {
            f(&self.topic, false);
        }
    }
}

/// One subscriber's stream: first a [`Missed::ResumeGap`] if a resume could not be whole,
/// then `Ok(event)` in publish order; at most one final `Err(Missed)` (then the end).
/// Dropping it unsubscribes at once.
pub struct Subscription<T> {
    slot: Arc<Slot<T>>,
    registration: Option<Registration<T>>,
    /// The operation whose results carry this stream's event ids.
    tracker: Option<Resume>,
    done: bool,
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.slot.lock();
        f.debug_struct("Subscription")
            .field("queued", &s.queue.len())
            .field("replay", &s.replay.len())
            .field("dropped", &s.dropped)
            .field("done", &self.done)
            .finish()
    }
}

impl<T> Subscription<T> {
    /// Events this subscriber lost so far (overflow and, under `End`, after it).
    pub fn dropped(&self) -> u64 {
        self.slot.lock().dropped
    }

    /// Reports each event's id to `resume`, so the operation's results carry it in
    /// `extensions.eventId` ([`super::Topics::resume`] does this).
    #[must_use]
    pub fn tracked_by(mut self, resume: Resume) -> Self {
        self.tracker = Some(resume);
        self
    }
}

/// Queued events above which a drained buffer gives its memory back.
const KEEP_CAPACITY: usize = 64;

impl<T: Clone> Stream for Subscription<T> {
    type Item = Result<T, Missed>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        /// What one poll found in the slot.
        enum Step<T> {
            Event(Arc<Entry<T>>),
            /// Said, and the stream goes on (a resume gap).
            Told(Missed),
            /// Said, and the stream ends.
            Final(Missed),
            Wait,
        }
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let step = {
            let mut s = this.slot.lock();
            if let Some(first) = s.first.take() {
                Step::Told(first)
            } else if s.paused {
                s.waker = Some(cx.waker().clone());
                Step::Wait
            } else if let Some(entry) = s.replay.pop_front() {
                if s.replay.is_empty() {
                    s.replay = VecDeque::new();
                }
                Step::Event(entry)
            } else if let Some(entry) = s.queue.pop_front() {
                if s.queue.is_empty() && s.queue.capacity() > KEEP_CAPACITY {
                    // Memory follows what is queued: a burst does not stay allocated.
                    s.queue = VecDeque::new();
                }
                Step::Event(entry)
            } else {
                // Left set, so a publish racing this poll counts as dropped, not delivered.
                match s.ending {
                    Some(Ending::Lagged) => Step::Final(Missed::Lagged { dropped: s.dropped }),
                    Some(Ending::BrokerGap) => Step::Final(Missed::BrokerGap),
                    None => {
                        s.waker = Some(cx.waker().clone());
                        Step::Wait
                    }
                }
            }
        };
        match step {
            Step::Event(entry) => {
                if let Some(t) = &this.tracker {
                    t.record(entry.id);
                }
                Poll::Ready(Some(Ok(entry.value.clone())))
            }
            Step::Told(missed) => {
                if let Some(t) = &this.tracker {
                    t.record(None);
                }
                Poll::Ready(Some(Err(missed)))
            }
            Step::Final(missed) => {
                if let Some(t) = &this.tracker {
                    t.record(None);
                }
                // Told; the slot is released before the final item is handed over.
                this.done = true;
                this.registration = None;
                Poll::Ready(Some(Err(missed)))
            }
            Step::Wait => Poll::Pending,
        }
    }
}

#[cfg(test)]
impl<T> Subscription<T> {
    /// The live queue's allocated capacity.
    pub(super) fn queue_capacity(&self) -> usize {
        self.slot.lock().queue.capacity()
    }
}

#[cfg(test)]
impl<T> Fanout<T> {
    /// Topics in the registry, with or without subscribers.
    pub(super) fn registered_topics(&self) -> usize {
        self.inner.topics().len()
    }
}
