//! The topics behind the `messages` subscription and `publish` mutation: subscope's own
//! in-memory topics by default, or Redis pub/sub across processes (`demo --redis URL`).
//! Both are the product's [`Topics`] contract, so buffering, the overflow policy and the
//! gauges are the same either way.

use std::sync::Arc;

use subscope::{Delivery, Gauges, MemoryTopics, Subscription, Topics};

/// Topic broker. Clones share the topics.
#[derive(Debug, Clone)]
pub enum Broker {
    /// In this process only.
    Memory(MemoryTopics),
    /// Redis pub/sub: reaches every process connected to the same Redis.
    #[cfg(feature = "redis")]
    Redis(subscope_redis::RedisTopics),
}

impl Broker {
    /// In-memory topics delivering under `delivery`, counting into `gauges`.
    pub fn memory(delivery: Delivery, gauges: Arc<Gauges>) -> Self {
        Self::Memory(MemoryTopics::new(delivery, gauges))
    }

    /// Every message published to `topic` from now on, until the stream is dropped or its
    /// final `Missed` item.
    pub fn subscribe(&self, topic: &str) -> Subscription {
        match self {
            Self::Memory(m) => m.subscribe(topic),
            #[cfg(feature = "redis")]
            Self::Redis(r) => Topics::subscribe(r, topic),
        }
    }

    /// Publishes `message`; returns how many receivers took it (local subscribers in
    /// memory; subscribed server processes with Redis).
    pub async fn publish(&self, topic: &str, message: &str) -> Result<usize, String> {
        match self {
            Self::Memory(m) => match m.publish(topic, message).await {
                Ok(n) => Ok(n),
                Err(never) => match never {},
            },
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.publish(topic, message).await.map_err(|e| e.to_string()),
        }
    }

    /// Events queued for the local subscribers of `topic` now, in total.
    pub fn queued(&self, topic: &str) -> usize {
        match self {
            Self::Memory(m) => m.fanout().queued(topic),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.queued(topic),
        }
    }

    /// Local subscribers of `topic` now.
    pub fn subscribers(&self, topic: &str) -> usize {
        match self {
            Self::Memory(m) => m.fanout().subscribers(topic),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.local_streams(topic),
        }
    }
}
