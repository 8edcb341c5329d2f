//! An in-memory topic broker for the `messages` subscription and `publish` mutation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures_core::Stream;
use slab::Slab;

/// Messages a slow subscriber may have queued before new ones are dropped for it. Bounded
/// queues are allocated up front, so this is also memory per subscription.
const QUEUE: usize = 32;

/// Topic broker. Clones share the topics.
#[derive(Debug, Clone, Default)]
pub struct Broker {
    topics: Arc<Mutex<HashMap<String, Slab<async_channel::Sender<String>>>>>,
}

/// Unregisters a subscriber when its stream is dropped.
#[derive(Debug)]
struct Registration {
    broker: Broker,
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

impl Broker {
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
