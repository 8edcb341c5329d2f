//! Redis pub/sub topics for subscope resolvers, so an event published on one server process
//! reaches subscribers on every process.
//!
//! All local subscribers of a process share **one** pub/sub connection. A channel is
//! `SUBSCRIBE`d when its first local stream appears and `UNSUBSCRIBE`d when its last one is
//! dropped, on every ending path: a stream's `Drop` cannot await, so it only hands the
//! channel name to the connection's manager task (a non-blocking send on an unbounded
//! queue), which reconciles what Redis has with what local streams want. Publishing goes
//! through an ordinary (multiplexed) connection.
//!
//! **When Redis goes away**, local streams stay open and receive nothing (Redis pub/sub
//! does not store messages: what is published during the gap is lost); the manager
//! reconnects with exponential backoff (50 ms doubling to 2 s, no busy loop) and
//! re-subscribes every channel that still has local streams, after which delivery resumes.
//! `publish` fails with [`PublishError`] while Redis is unreachable.
//!
//! Runtimes: the manager runs on the subscope runtime you pass; under tokio the redis crate
//! uses tokio, elsewhere (smol, async-std) its smol driver.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_core::Stream;
use futures_lite::StreamExt;
use slab::Slab;
use subscope_core::rt::Runtime;

/// Messages a slow local subscriber may have queued before new ones are dropped for it.
const LOCAL_QUEUE: usize = 64;
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

type Locals = HashMap<String, Slab<async_channel::Sender<String>>>;

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
    locals: Mutex<Locals>,
    /// Channel names to reconcile; the manager's only input.
    reconcile: async_channel::Sender<String>,
    publisher: Mutex<Option<redis::aio::MultiplexedConnection>>,
    subscribed: AtomicUsize,
    reconnects: AtomicU64,
}

impl Inner {
    fn locals(&self) -> std::sync::MutexGuard<'_, Locals> {
        self.locals.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Unregisters a local stream when it is dropped, and asks for an `UNSUBSCRIBE` if it was
/// the channel's last.
struct Registration {
    inner: Arc<Inner>,
    channel: String,
    key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut locals = self.inner.locals();
        if let Some(subs) = locals.get_mut(&self.channel) {
            subs.try_remove(self.key);
            if subs.is_empty() {
                locals.remove(&self.channel);
                drop(locals);
                // Unbounded: never blocks, fails only if the manager is gone.
                let _ = self.inner.reconcile.try_send(self.channel.clone());
            }
        }
    }
}

impl RedisTopics {
    /// Connects lazily to `url` (e.g. `redis://127.0.0.1:6379`); the shared subscriber
    /// connection's manager runs on `runtime` until every clone is dropped.
    pub fn new<R: Runtime>(runtime: &R, url: &str) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url)?;
        let (tx, rx) = async_channel::unbounded();
        let inner = Arc::new(Inner {
            client,
            locals: Mutex::default(),
            reconcile: tx,
            publisher: Mutex::default(),
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
    /// subscription), until the stream is dropped.
    pub fn subscribe(&self, channel: &str) -> impl Stream<Item = String> + Send + use<> {
        let (tx, rx) = async_channel::bounded(LOCAL_QUEUE);
        let (key, first) = {
            let mut locals = self.inner.locals();
            let subs = locals.entry(channel.to_owned()).or_default();
            (subs.insert(tx), subs.len() == 1)
        };
        if first {
            let _ = self.inner.reconcile.try_send(channel.to_owned());
        }
        let registration = Registration {
            inner: Arc::clone(&self.inner),
            channel: channel.to_owned(),
            key,
        };
        rx.map(move |m| {
            let _ = &registration;
            m
        })
    }

    /// Publishes `message`; returns how many Redis subscriber connections (processes)
    /// received it.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<usize, PublishError> {
        let cached = self
            .inner
            .publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut conn = match cached {
            Some(c) => c,
            None => {
                let c = self.inner.client.get_multiplexed_async_connection().await?;
                *self
                    .inner
                    .publisher
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
                c
            }
        };
        let result = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async::<usize>(&mut conn)
            .await;
        if result.is_err() {
            // Reconnect on the next publish.
            *self
                .inner
                .publisher
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        Ok(result?)
    }

    /// Channels this process is subscribed to at Redis now.
    pub fn channels_subscribed(&self) -> usize {
        self.inner.subscribed.load(Ordering::Relaxed)
    }

    /// Local streams of `channel` now.
    pub fn local_streams(&self, channel: &str) -> usize {
        self.inner.locals().get(channel).map_or(0, Slab::len)
    }

    /// Times the shared subscriber connection was lost and re-established.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }
}

enum Event {
    Reconcile(Option<String>),
    Message(Option<redis::Msg>),
}

/// The shared subscriber connection: reconciles subscriptions and fans messages out.
/// Ends when every `RedisTopics` clone is gone.
async fn manage<R: Runtime>(inner: Weak<Inner>, rx: async_channel::Receiver<String>, rt: R) {
    let mut backoff = BACKOFF_START;
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
            Some(i) => i.locals().keys().cloned().collect(),
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
                    let wanted = i.locals().contains_key(&channel);
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
                    if let Some(subs) = i.locals().get(msg.get_channel_name()) {
                        for (_, tx) in subs.iter() {
                            // A full local queue drops the message for that subscriber only.
                            let _ = tx.try_send(payload.clone());
                        }
                    }
                }
            }
        }
        let Some(i) = inner.upgrade() else { return };
        i.subscribed.store(0, Ordering::Relaxed);
        i.reconnects.fetch_add(1, Ordering::Relaxed);
        drop(i);
        tracing::warn!(?backoff, "redis pub/sub connection lost; reconnecting");
        rt.sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
