//! The topic broker behind the `messages` subscription and `publish` mutation: in memory by
//! default, or Redis pub/sub across processes (`demo --redis URL`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures_core::Stream;
use slab::Slab;

/// Messages a slow subscriber may have queued before new ones are dropped for it. Bounded
/// queues are allocated up front, so this is also memory per subscription.
const QUEUE: usize = 32;

/// Topic broker. Clones share the topics.
#[derive(Debug, Clone)]
pub enum Broker {
    /// In this process only.
    Memory(MemoryBroker),
    /// Redis pub/sub: reaches every process connected to the same Redis.
    #[cfg(feature = "redis")]
    Redis(subscope_redis::RedisTopics),
}

impl Default for Broker {
    fn default() -> Self {
        Self::Memory(MemoryBroker::default())
    }
}

/// A boxed stream of messages.
pub type Messages = std::pin::Pin<Box<dyn Stream<Item = String> + Send>>;

impl Broker {
    /// Every message published to `topic` from now on, until the stream is dropped.
    pub fn subscribe(&self, topic: &str) -> Messages {
        match self {
            Self::Memory(m) => Box::pin(m.subscribe(topic)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => Box::pin(r.subscribe(topic)),
        }
    }

    /// Publishes `message`; returns how many receivers it reached (local subscribers in
    /// memory; subscribed server processes with Redis).
    pub async fn publish(&self, topic: &str, message: &str) -> Result<usize, String> {
        match self {
            Self::Memory(m) => Ok(m.publish(topic, message)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.publish(topic, message).await.map_err(|e| e.to_string()),
        }
    }
}

/// The in-memory broker. Clones share the topics.
#[derive(Debug, Clone, Default)]
pub struct MemoryBroker {
    topics: Arc<Mutex<HashMap<String, Slab<async_channel::Sender<String>>>>>,
}

/// Unregisters a subscriber when its stream is dropped.
#[derive(Debug)]
struct Registration {
    broker: MemoryBroker,
    topic: String,
    key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut topics = self.broker.lock();
        if let Some(subs) = topics.get_mut(&self.topic) {
            subs.try_remove(self.key);
            if subs.is_empty() {
                topics.remove(&self.topic);
            }
        }
    }
}

impl MemoryBroker {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Slab<async_channel::Sender<String>>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every message published to `topic` from now on, until the stream is dropped.
    pub fn subscribe(&self, topic: &str) -> impl Stream<Item = String> + Send + use<> {
        let (tx, rx) = async_channel::bounded(QUEUE);
        let key = self.lock().entry(topic.to_owned()).or_default().insert(tx);
        let registration = Registration {
            broker: self.clone(),
            topic: topic.to_owned(),
            key,
        };
        futures_lite::StreamExt::map(rx, move |m| {
            let _ = &registration;
            m
        })
    }

    /// Publishes `message`; returns how many subscribers received it.
    pub fn publish(&self, topic: &str, message: &str) -> usize {
        let topics = self.lock();
        topics.get(topic).map_or(0, |subs| {
            subs.iter()
                .filter(|(_, tx)| tx.try_send(message.to_owned()).is_ok())
                .count()
        })
    }

    /// Subscribers of `topic` now.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.lock().get(topic).map_or(0, Slab::len)
    }
}
