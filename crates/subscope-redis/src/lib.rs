//! Redis topics for subscope resolvers, so an event published on one server process
//! reaches subscribers on every process, and (with history) a subscriber resumes on any
//! process after the last event it saw.
//!
//! [`RedisTopics`] implements subscope's [`Topics`] contract with the same delivery engine
//! as the in-memory topics ([`Fanout`]): a bounded buffer per local subscriber, allocated as
//! it fills, and the configured [`Overflow`](subscope_core::Overflow) policy when one cannot
//! keep up — never a silent drop. Events are any serde type, carried as JSON.
//!
//! # Two modes, chosen by [`Delivery::history`]
//!
//! **Redis Streams** (history on, `History::last(n)`): one stream per topic
//! (`subscope:topic:<topic>`). A publish is an `XADD` with `MAXLEN ~ n` and is acknowledged
//! only once Redis stored it, so a process killed with SIGKILL loses nothing it
//! acknowledged. Event ids are the stream entry ids. One reading connection per process
//! (`XREAD` on every stream with local subscribers, from the last id it delivered) fans out
//! locally. A resuming subscriber gets `XRANGE` from its id up to the last id the reader
//! delivered, handed over by the reader itself between two reads, so the seam between
//! replay and live is exact; whether the stream lost entries past its id is read from the
//! stream's own record (`XINFO STREAM`: trimming removes everything before `first-entry`,
//! and `entries-added` > `length` says it removed something; `max-deleted-entry-id` records
//! only `XDEL`), and said as `RESUME_GAP`.
//! When Redis goes away the reader reconnects and reads on from the last id it delivered:
//! a blip is a replay, not a gap; only a stream trimmed past that id is a `BROKER_GAP`
//! (for that topic's subscribers).
//!
//! Redis memory per topic: about `n ×` (the event's JSON + ~30 bytes of entry overhead),
//! trimmed approximately (whole macro-nodes of up to 100 entries, so up to ~`n + 100`).
//!
//! **Pub/sub** (no history): all local subscribers of a process share **one** pub/sub
//! connection. A channel is `SUBSCRIBE`d when its first local stream appears and
//! `UNSUBSCRIBE`d when its last one is dropped, on every ending path: a stream's `Drop`
//! cannot await, so it only hands the channel name to the connection's manager task (a
//! non-blocking send on an unbounded queue). Redis pub/sub stores nothing, so whatever is
//! published while the connection is down is lost: after reconnecting (exponential
//! backoff, 50 ms doubling to 2 s) the manager reports the gap to every local subscriber
//! ([`Fanout::broker_gap`]): under `Overflow::End` each stream ends with a `BROKER_GAP`
//! error item; under the drop policies the gap is counted and delivery resumes.
//!
//! Streams mode wants Redis 7.0 or later (`XINFO STREAM`'s `entries-added`, exclusive
//! `XRANGE` starts); with an older one, trimming is assumed wherever the stream's first
//! entry is past an id, so gaps are said conservatively. A reader starts reading a topic
//! from when its first subscriber came, but never past the stream's last id (so a clock
//! ahead of Redis's cannot hide entries). An error that reconnecting cannot fix (a key of
//! another type, a denied command) ends only the subscribers it concerns, with a gap.
//!
//! `publish` fails with [`PublishError`] while Redis is unreachable. Runtimes: the reader
//! runs on the subscope runtime you pass; under tokio the redis crate uses tokio,
//! elsewhere (smol, async-std) its smol driver.

#![deny(rustdoc::broken_intra_doc_links)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

mod pubsub;
mod streams;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use subscope_core::rt::{Spawn, Timer};
use subscope_core::{Delivery, EventId, Fanout, Resumer, Subscription, Topics};

/// How long a command may wait for Redis's answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What a Redis topic carries: any serde type, as JSON.
pub trait Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Event for T {}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Redis did not take it (unreachable, or an error reply).
    #[error("publishing to Redis failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// The event could not be serialized.
    #[error("the event could not be serialized: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Why the topics could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL: {0}")]
pub struct ConfigError(#[from] redis::RedisError);

/// Redis-backed topics of events `T`. Cheap to clone; clones share the connections.
#[derive(Debug)]
pub struct RedisTopics<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for RedisTopics<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What local streams ask of the reader, on an unbounded (never blocking) queue.
pub(crate) enum Command<T> {
    /// A topic gained its first or lost its last local subscriber; with the wall-clock
    /// millisecond it happened (a new stream is read from there).
    Reconcile(String, u64),
    /// A subscriber waits for its replay after this id.
    Resume(Resumer<T>, EventId),
}

pub(crate) struct Inner<T> {
    client: redis::Client,
    fanout: Fanout<T>,
    /// Streams mode: `Some(maxlen)`.
    history: Option<usize>,
    commands: async_channel::Sender<Command<T>>,
    publisher: async_lock::Mutex<Option<redis::aio::MultiplexedConnection>>,
    subscribed: AtomicUsize,
    reconnects: AtomicU64,
    /// Streams mode: the reader's connection id, to `CLIENT UNBLOCK` it when a command
    /// arrives while it waits in `XREAD`.
    reader_id: AtomicU64,
}

impl<T> std::fmt::Debug for Inner<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTopics")
            .field("history", &self.history)
            .field("fanout", &self.fanout)
            .finish_non_exhaustive()
    }
}

/// The key of a topic's stream.
pub(crate) fn stream_key(topic: &str) -> String {
    format!("subscope:topic:{topic}")
}

/// The topic of a stream key.
pub(crate) fn topic_of(key: &str) -> &str {
    key.strip_prefix("subscope:topic:").unwrap_or(key)
}

/// An event's JSON, or `None` (logged) if it is not a `T`: something else wrote to the
/// channel or stream.
pub(crate) fn decode<T: Event>(topic: &str, payload: &[u8]) -> Option<T> {
    match serde_json::from_slice(payload) {
        Ok(event) => Some(event),
        Err(err) => {
            tracing::error!(topic, error = %err, "an event in Redis is not of this topic's type: skipped");
            None
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<T: Event> RedisTopics<T> {
    /// Connects lazily to `url` (e.g. `redis://127.0.0.1:6379`); local subscribers are
    /// served under `delivery` (history on: Redis Streams; off: pub/sub). The reader runs
    /// on `runtime` until every clone and every stream is gone. Bind the topics to the
    /// server with `ServerBuilder::topics` so they count into its gauges.
    pub fn new<R: Spawn + Timer + Clone>(
        runtime: &R,
        url: &str,
        delivery: Delivery,
    ) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url)?;
        let (tx, rx) = async_channel::unbounded::<Command<T>>();
        let changes = tx.clone();
        let fanout = Fanout::with_topic_changes(delivery, move |topic, _wanted| {
            // Unbounded: never blocks, fails only if the reader is gone.
            let _ = changes.try_send(Command::Reconcile(topic.to_owned(), now_ms()));
        });
        let history = delivery.history.is_on().then_some(delivery.history.len);
        let inner = Arc::new(Inner {
            client,
            fanout,
            history,
            commands: tx,
            publisher: async_lock::Mutex::new(None),
            subscribed: AtomicUsize::new(0),
            reconnects: AtomicU64::new(0),
            reader_id: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&inner);
        if history.is_some() {
            runtime.spawn(Box::pin(streams::read(weak, rx, runtime.clone())));
        } else {
            runtime.spawn(Box::pin(pubsub::manage(weak, rx, runtime.clone())));
        }
        Ok(Self { inner })
    }

    /// Every event published to `topic` from now on (once the reader reads it), until
    /// the stream is dropped or its final `Missed` item.
    pub fn subscribe(&self, topic: &str) -> Subscription<T> {
        self.subscribe_after(topic, None)
    }

    /// With history: every event of the topic's stream after `after`, then live ones,
    /// exactly once (`RESUME_GAP` first where the stream was trimmed past `after` or the
    /// id is not from it). Without: `RESUME_GAP` (nothing retained), then live.
    pub fn subscribe_after(&self, topic: &str, after: Option<EventId>) -> Subscription<T> {
        match (after, self.inner.history) {
            (Some(after), Some(_)) => {
                let (subscription, resumer) = self.inner.fanout.subscribe_paused(topic);
                // If the reader is gone, the resumer's drop tells the subscriber.
                let _ = self
                    .inner
                    .commands
                    .try_send(Command::Resume(resumer, after));
                subscription
            }
            _ => self.inner.fanout.subscribe_after(topic, after),
        }
    }

    /// Publishes `event`: with history an `XADD` (acknowledged once stored; returns 1),
    /// else a `PUBLISH` (returns how many processes received it).
    pub async fn publish(&self, topic: &str, event: &T) -> Result<usize, PublishError> {
        let json = serde_json::to_vec(event)?;
        let mut conn = self.inner.publisher().await?;
        let result = match self.inner.history {
            Some(maxlen) => redis::cmd("XADD")
                .arg(stream_key(topic))
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen)
                .arg("*")
                .arg("p")
                .arg(json)
                .query_async::<String>(&mut conn)
                .await
                .map(|_id| 1),
            None => {
                redis::cmd("PUBLISH")
                    .arg(topic)
                    .arg(json)
                    .query_async::<usize>(&mut conn)
                    .await
            }
        };
        if result.is_err() {
            // Reconnect on the next publish.
            *self.inner.publisher.lock().await = None;
        }
        Ok(result?)
    }

    /// The engine (subscriber counts, queued events).
    pub fn fanout(&self) -> &Fanout<T> {
        &self.inner.fanout
    }

    /// Channels (pub/sub) or streams this process reads now.
    pub fn channels_subscribed(&self) -> usize {
        self.inner.subscribed.load(Ordering::Relaxed)
    }

    /// Events queued for the local streams of `channel` now, in total.
    pub fn queued(&self, channel: &str) -> usize {
        self.inner.fanout.queued(channel)
    }

    /// Local streams of `channel` now.
    pub fn local_streams(&self, channel: &str) -> usize {
        self.inner.fanout.subscribers(channel)
    }

    /// Times the reading connection was lost and re-established.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }
}

impl<T> Inner<T> {
    /// The shared command connection (publishes, replays), made on first use.
    pub(crate) async fn publisher(
        &self,
    ) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
        // One connection is made at a time, and publishes take their turn in order, so a
        // pipelining publisher's events reach Redis in the order it sent them.
        let mut cached = self.publisher.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        // redis-rs times a response out after 500 ms by default: a publisher that
        // pipelines on a loaded server would see publishes fail that Redis performs. Slow
        // is not lost; only a dead link should fail a publish.
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(COMMAND_TIMEOUT));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *cached = Some(c.clone());
        Ok(c)
    }
}

impl<T: Event> Topics for RedisTopics<T> {
    type Event = T;
    type Error = PublishError;

    fn fanout(&self) -> &Fanout<T> {
        &self.inner.fanout
    }

    fn subscribe_after(&self, topic: &str, after: Option<EventId>) -> Subscription<T> {
        Self::subscribe_after(self, topic, after)
    }

    fn publish(
        &self,
        topic: &str,
        event: T,
    ) -> impl Future<Output = Result<usize, PublishError>> + Send {
        let this = self.clone();
        let topic = topic.to_owned();
        async move { this.publish(&topic, &event).await }
    }
}
