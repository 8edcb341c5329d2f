//! The topics behind the `messages` subscription and `publish` mutation: subscope's own
//! in-memory topics by default, or Redis across processes (`demo --redis URL`: Redis
//! Streams with `--history N`, else pub/sub). Both are the product's [`Topics`] contract,
//! so buffering, the overflow policy, history and resumption, and the gauges are the same
//! either way.

use async_graphql::Context;
use subscope::{Delivery, MemoryTopics, Subscription, Topics};

/// Topic broker of string events. Clones share the topics.
#[derive(Debug, Clone)]
pub enum Broker {
    /// In this process only.
    Memory(MemoryTopics<String>),
    /// Redis: reaches every process connected to the same Redis.
    #[cfg(feature = "redis")]
    Redis(subscope_redis::RedisTopics<String>),
}

impl Broker {
    /// In-memory topics delivering under `delivery`.
    pub fn memory(delivery: Delivery) -> Self {
        Self::Memory(MemoryTopics::new(delivery))
    }

    /// `topic`'s messages for the operation `ctx` resolves: resumed after the client's
    /// `lastEventId` if it sent one, each result carrying its `eventId`.
    pub fn resume(&self, ctx: &Context<'_>, topic: &str) -> Subscription<String> {
        match self {
            Self::Memory(m) => m.resume(ctx, topic),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.resume(ctx, topic),
        }
    }

    /// Publishes `message`; returns how many receivers took it (local subscribers in
    /// memory; subscribed server processes with Redis pub/sub; 1 once stored in a Redis
    /// Stream).
    pub async fn publish(&self, topic: &str, message: String) -> Result<usize, String> {
        match self {
            Self::Memory(m) => Ok(m.publish(topic, message)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.publish(topic, &message).await.map_err(|e| e.to_string()),
        }
    }

    /// Binds the topics to `builder`'s server, so they count into its gauges.
    pub fn bind<E, H, R>(
        &self,
        builder: subscope::ServerBuilder<E, H, R>,
    ) -> subscope::ServerBuilder<E, H, R>
    where
        E: async_graphql::Executor,
        H: subscope::Hooks,
        R: subscope::rt::Runtime,
    {
        match self {
            Self::Memory(m) => builder.topics(m),
            #[cfg(feature = "redis")]
            Self::Redis(r) => builder.topics(r),
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
