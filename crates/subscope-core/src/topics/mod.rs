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
//! the server's [`Gauges`](crate::Gauges) and logged through `tracing`.
//!
//! **History and resumption** (PROTOCOL.md 4.7). With [`History`] on, every event gets an
//! [`EventId`] and a topic keeps its last N events (optionally no older than an age). A
//! subscriber that passes the last id it saw ([`Topics::subscribe_after`], or one line in a
//! resolver: [`Topics::resume`]) gets every retained event after it, then live events,
//! exactly once: the replay is taken under the same lock a publish takes, so an event
//! published meanwhile is either in the replay or in the live queue, never both, never
//! neither. If history no longer reaches back to that id, the first item is
//! [`Missed::ResumeGap`] (`extensions.code = "RESUME_GAP"`) naming the oldest retained id:
//! a gap is always said. The server puts each result's event id into the result's
//! `extensions.eventId`.
//!
//! Events are typed: any `Clone + Send + Sync` type in memory (use `Arc<T>` for large
//! ones: each subscriber gets a clone), a serde type with Redis.
//!
//! [`MemoryTopics`] is the in-process implementation of the [`Topics`] contract;
//! `subscope-redis` implements it across processes on the same engine. Bind a topics
//! instance to the server it serves with `ServerBuilder::topics`, so its drops, lags and
//! gaps count in that server's gauges.

mod event_id;
mod fanout;
mod memory;
mod resume;

use std::future::Future;
use std::time::Duration;

use async_graphql::ErrorExtensions;

pub use event_id::{EventId, ParseEventIdError};
pub use fanout::{Fanout, Resumer, Subscription};
pub use memory::MemoryTopics;
pub use resume::Resume;
pub(crate) use resume::resume_of;

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
    /// What a topic retains for resuming subscribers (default: nothing).
    pub history: History,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            buffer: 1024,
            overflow: Overflow::End,
            history: History::default(),
        }
    }
}

/// What each topic retains so a subscriber can resume after an event id.
///
/// Memory per topic is bounded by `len` events: about `len × (64 bytes + the event's own
/// heap)` in memory, plus the topic's name and counters, which are kept while history is
/// on. With Redis Streams the stream is capped at about `len` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct History {
    /// Events kept per topic (0: no history, no event ids).
    pub len: usize,
    /// Events older than this are not replayed (None: kept until `len` pushes them out).
    /// Aged events are freed lazily, when their topic is next published to or resumed.
    pub max_age: Option<Duration>,
}

impl History {
    /// Keep the last `len` events of each topic.
    pub fn last(len: usize) -> Self {
        Self { len, max_age: None }
    }

    /// Also drop events older than `age`.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Whether events are kept (and get ids).
    pub fn is_on(self) -> bool {
        self.len > 0
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

    /// What each topic retains for resuming subscribers.
    #[must_use]
    pub fn history(mut self, history: History) -> Self {
        self.history = history;
        self
    }
}

/// What a subscriber missed: a subscription's final item ([`Missed::Lagged`],
/// [`Missed::BrokerGap`]), or its first ([`Missed::ResumeGap`], after which it goes on).
///
/// It converts into the GraphQL error a resolver yields as the stream's final item, with
/// the message, `extensions.code` ([`Missed::code`]) and, for a lag, `extensions.dropped`,
/// whichever way it is converted: `?`, `.into()`, `async_graphql::Error::from` or
/// `.extend()` ([`ErrorExtensions`]).
///
/// ```
/// use async_graphql::Value;
/// use subscope_core::Missed;
///
/// /// What a resolver's stream maps each topic item through.
/// fn event(item: Result<String, Missed>) -> async_graphql::Result<String> {
///     let event = item?; // a `Missed` keeps its code
///     Ok(event)
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
    /// The first item of a resumed subscription whose history does not reach back to the
    /// id it resumes after (trimmed, another process's or stream's id, or no history): the
    /// retained events follow, then live ones. Not final.
    ResumeGap {
        /// The oldest event still retained (`None`: none is).
        oldest: Option<EventId>,
    },
}

impl Missed {
    /// The `extensions.code` of the GraphQL error: `SUBSCRIBER_LAGGED`, `BROKER_GAP` or
    /// `RESUME_GAP`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Lagged { .. } => "SUBSCRIBER_LAGGED",
            Self::BrokerGap => "BROKER_GAP",
            Self::ResumeGap { .. } => "RESUME_GAP",
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
            Self::ResumeGap { oldest: Some(_) } => {
                "resume gap: events after the given id are no longer retained; the retained \
                 ones follow"
                    .to_owned()
            }
            Self::ResumeGap { oldest: None } => {
                "resume gap: no history reaches back to the given id; live events follow".to_owned()
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
        async_graphql::Error::new(self.message()).extend_with(|_, e| {
            e.set("code", code);
            match self {
                Self::Lagged { dropped } => e.set("dropped", *dropped),
                Self::ResumeGap { oldest } => e.set(
                    "oldestEventId",
                    oldest.map_or(async_graphql::Value::Null, |id| id.to_string().into()),
                ),
                Self::BrokerGap => {}
            }
        })
    }
}

/// A topic pub/sub backend for resolvers: [`MemoryTopics`] in one process,
/// `subscope_redis::RedisTopics` across processes, or your own (NATS, Kafka, Postgres
/// `LISTEN`).
///
/// # What an implementation must guarantee
/// - subscriptions come from a [`Fanout`], so buffering, the overflow policy, the
///   [`Missed`] items, the gauges and the logs are the same everywhere;
/// - every event a publisher hands over reaches every subscriber of that topic at most
///   once and in publish order (hand it to the fanout once, in order);
/// - with history, ids are strictly increasing within a topic, and
///   [`Topics::subscribe_after`] delivers every retained event after the id, then live
///   ones, exactly once, or says [`Missed::ResumeGap`] first where history does not reach
///   back (without history: `ResumeGap { oldest: None }`, then live);
/// - whenever the backend may have lost events it cannot name (a reconnect, a consumer
///   group rebalance, a `LISTEN` connection that dropped), it replays them or calls
///   [`Fanout::broker_gap`] before delivering anything newer;
/// - dropping a `Subscription` unsubscribes on every path (it is a `Drop`, so the backend
///   may only be told through [`Fanout::with_topic_changes`], which must not block).
pub trait Topics: Send + Sync + 'static {
    /// What is published: cloned to each local subscriber.
    type Event: Clone + Send + Sync + 'static;
    /// Why a publish failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The delivery engine behind the subscriptions (gauges, subscriber counts).
    fn fanout(&self) -> &Fanout<Self::Event>;

    /// Every event published to `topic` from now on.
    fn subscribe(&self, topic: &str) -> Subscription<Self::Event> {
        self.subscribe_after(topic, None)
    }

    /// Every retained event of `topic` after `after` (none: from now on), then every live
    /// one, exactly once; see the trait docs for the gap.
    fn subscribe_after(&self, topic: &str, after: Option<EventId>) -> Subscription<Self::Event>;

    /// Publishes `event` to `topic`; returns how many receivers took it (what a receiver
    /// is depends on the backend: local subscribers in memory, processes with Redis
    /// pub/sub, the stream with Redis Streams).
    fn publish(
        &self,
        topic: &str,
        event: Self::Event,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;

    /// The one line a resolver needs: `topic`'s events for the operation resolving now,
    /// resumed after the `lastEventId` its client sent (if any), each result carrying its
    /// event id in `extensions.eventId`.
    ///
    /// ```
    /// use async_graphql::{Context, Result, Subscription};
    /// use futures_core::Stream;
    /// use subscope_core::{MemoryTopics, Missed, Topics};
    ///
    /// struct Sub;
    /// #[Subscription]
    /// impl Sub {
    ///     async fn bids(&self, ctx: &Context<'_>, item: String)
    ///         -> Result<impl Stream<Item = Result<u64, Missed>> + use<>>
    ///     {
    ///         Ok(ctx.data::<MemoryTopics<u64>>()?.resume(ctx, &item))
    ///     }
    /// }
    /// ```
    fn resume(&self, ctx: &async_graphql::Context<'_>, topic: &str) -> Subscription<Self::Event> {
        match Resume::of(ctx) {
            Some(resume) => self
                .subscribe_after(topic, resume.take_after())
                .tracked_by(resume.clone()),
            None => self.subscribe(topic),
        }
    }
}

#[cfg(test)]
mod tests;
