//! Redis pub/sub topics for subscope resolvers, so an event published on one server process
//! reaches subscribers on every process.
//!
//! [`RedisTopics`] implements subscope's [`Topics`] contract with the same delivery engine
//! as the in-memory topics ([`Fanout`]): a bounded buffer per local subscriber, allocated as
//! it fills, and the configured [`Overflow`](subscope_core::Overflow) policy when one cannot
//! keep up — never a silent drop.
//!
//! All local subscribers of a process share **one** pub/sub connection. A channel is
//! `SUBSCRIBE`d when its first local stream appears and `UNSUBSCRIBE`d when its last one is
//! dropped, on every ending path: a stream's `Drop` cannot await, so it only hands the
//! channel name to the connection's manager task (a non-blocking send on an unbounded
//! queue), which reconciles what Redis has with what local streams want. Publishing goes
//! through an ordinary (multiplexed) connection.
//!
//! **When Redis goes away**, Redis pub/sub stores nothing, so whatever is published until
//! the connection is back is lost. The manager reconnects with exponential backoff (50 ms
//! doubling to 2 s, no busy loop), re-subscribes every channel that still has local
//! streams, and then reports the gap to every local subscriber ([`Fanout::broker_gap`]):
//! under `Overflow::End` each stream ends with a `BROKER_GAP` error item; under the drop
//! policies the gap is counted and delivery resumes. `publish` fails with [`PublishError`]
//! while Redis is unreachable.
//!
//! Runtimes: the manager runs on the subscope runtime you pass; under tokio the redis crate
//! uses tokio, elsewhere (smol, async-std) its smol driver.

#![deny(rustdoc::broken_intra_doc_links)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_lite::StreamExt;
use subscope_core::rt::{Spawn, Timer};
use subscope_core::{Delivery, Fanout, Gauges, Subscription, Topics};

/// How long a `PUBLISH` may wait for Redis's answer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[error("publishing to Redis failed: {0}")]
pub struct PublishError(#[from] redis::RedisError);

/// Why the topics could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL: {0}")]
pub struct ConfigError(#[from] redis::RedisError);

/// Redis-backed topics. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisTopics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: redis::Client,
    /// Local subscribers; a topic gaining its first or losing its last one is sent to the
    /// manager, the connection's only input, on an unbounded (never blocking) queue.
    fanout: Fanout,
    publisher: async_lock::Mutex<Option<redis::aio::MultiplexedConnection>>,
    subscribed: AtomicUsize,
    reconnects: AtomicU64,
}

impl RedisTopics {
    /// Connects lazily to `url` (e.g. `redis://127.0.0.1:6379`); local subscribers are
    /// served under `delivery` and counted into `gauges`. The shared subscriber
    /// connection's manager runs on `runtime` until every clone and every stream is gone.
    pub fn new<R: Spawn + Timer + Clone>(
        runtime: &R,
        url: &str,
        delivery: Delivery,
        gauges: Arc<Gauges>,
    ) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url)?;
        let (tx, rx) = async_channel::unbounded::<String>();
        let fanout = Fanout::with_topic_changes(delivery, gauges, move |topic, _wanted| {
            // Unbounded: never blocks, fails only if the manager is gone.
            let _ = tx.try_send(topic.to_owned());
        });
        let inner = Arc::new(Inner {
            client,
            fanout,
            publisher: async_lock::Mutex::new(None),
            subscribed: AtomicUsize::new(0),
            reconnects: AtomicU64::new(0),
        });
        runtime.spawn(Box::pin(manage(
            Arc::downgrade(&inner),
            rx,
            runtime.clone(),
        )));
        Ok(Self { inner })
    }

    /// Every message published to `channel` from now on (once Redis confirms the
    /// subscription), until the stream is dropped or its final `Missed` item.
    pub fn subscribe(&self, channel: &str) -> Subscription {
        self.inner.fanout.subscribe(channel)
    }

    /// Publishes `message`; returns how many Redis subscriber connections (processes)
    /// received it.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<usize, PublishError> {
        let mut conn = {
            // One connection is made at a time, and publishes take their turn in order, so
            // a pipelining publisher's events reach Redis in the order it sent them.
            let mut cached = self.inner.publisher.lock().await;
            match cached.as_ref() {
                Some(c) => c.clone(),
                None => {
                    // redis-rs times a response out after 500 ms by default: a publisher
                    // that pipelines on a loaded server would see publishes fail that Redis
                    // performs. Slow is not lost; only a dead link should fail a publish.
                    let config = redis::AsyncConnectionConfig::new()
                        .set_response_timeout(Some(PUBLISH_TIMEOUT));
                    let c = self
                        .inner
                        .client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    *cached = Some(c.clone());
                    c
                }
            }
        };
        let result = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async::<usize>(&mut conn)
            .await;
        if result.is_err() {
            // Reconnect on the next publish.
            *self.inner.publisher.lock().await = None;
        }
        Ok(result?)
    }

    /// Channels this process is subscribed to at Redis now.
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

    /// Times the shared subscriber connection was lost and re-established.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }
}

impl Topics for RedisTopics {
    type Error = PublishError;

    fn subscribe(&self, topic: &str) -> Subscription {
        Self::subscribe(self, topic)
    }

    fn publish(
        &self,
        topic: &str,
        event: &str,
    ) -> impl Future<Output = Result<usize, PublishError>> + Send {
        Self::publish(self, topic, event)
    }
}

enum Event {
    Reconcile(Option<String>),
    Message(Option<redis::Msg>),
}

/// The shared subscriber connection: reconciles subscriptions and fans messages out.
/// Ends when every `RedisTopics` clone is gone.
async fn manage<R: Timer>(inner: Weak<Inner>, rx: async_channel::Receiver<String>, rt: R) {
    let mut backoff = BACKOFF_START;
    // Set once a connection was lost: the next healthy one reports the gap (and the flag is
    // set again whenever a connection ends).
    let mut lost = false;
    loop {
        let Some(client) = inner.upgrade().map(|i| i.client.clone()) else {
            return;
        };
        let pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(err) => {
                tracing::warn!(error = %err, ?backoff, "redis pub/sub connection failed");
                rt.sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed: HashSet<String> = HashSet::new();
        let wanted: Vec<String> = match inner.upgrade() {
            Some(i) => i.fanout.topics(),
            None => return,
        };
        let mut healthy = true;
        for channel in wanted {
            if sink.subscribe(&channel).await.is_err() {
                healthy = false;
                break;
            }
            subscribed.insert(channel);
        }
        if healthy {
            backoff = BACKOFF_START;
            if lost {
                // Back, and subscribed again: tell every local stream that what was
                // published meanwhile is gone, before anything newer is delivered.
                if let Some(i) = inner.upgrade() {
                    i.fanout.broker_gap();
                }
            }
        }
        while healthy {
            if let Some(i) = inner.upgrade() {
                i.subscribed.store(subscribed.len(), Ordering::Relaxed);
            }
            let reconcile = async { Event::Reconcile(rx.recv().await.ok()) };
            let message = async { Event::Message(stream.next().await) };
            match futures_lite::future::or(reconcile, message).await {
                Event::Reconcile(None) => return,
                Event::Reconcile(Some(channel)) => {
                    let Some(i) = inner.upgrade() else { return };
                    let wanted = i.fanout.subscribers(&channel) > 0;
                    drop(i);
                    if wanted && !subscribed.contains(&channel) {
                        healthy = sink.subscribe(&channel).await.is_ok();
                        subscribed.insert(channel);
                    } else if !wanted && subscribed.remove(&channel) {
                        healthy = sink.unsubscribe(&channel).await.is_ok();
                    }
                }
                Event::Message(None) => healthy = false,
                Event::Message(Some(msg)) => {
                    let Some(i) = inner.upgrade() else { return };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    // The delivery policy handles a full buffer, visibly.
                    i.fanout.publish(msg.get_channel_name(), payload);
                }
            }
        }
        let Some(i) = inner.upgrade() else { return };
        lost = true;
        i.subscribed.store(0, Ordering::Relaxed);
        i.reconnects.fetch_add(1, Ordering::Relaxed);
        drop(i);
        tracing::warn!(?backoff, "redis pub/sub connection lost; reconnecting");
        rt.sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
