//! Topics within one process.

use std::convert::Infallible;
use std::future::Future;

use super::{Delivery, EventId, Fanout, Subscription, Topics};

/// Topics within one process, with optional history ([`super::History`]). Clones share the
/// topics.
///
/// ```
/// use subscope_core::{Delivery, MemoryTopics, topics::History};
///
/// #[derive(Clone)]
/// struct Bid { item: String, cents: u64 }
///
/// let topics = MemoryTopics::<Bid>::new(Delivery::default().history(History::last(100)));
/// let _live = topics.subscribe("lamp");
/// assert_eq!(topics.publish("lamp", Bid { item: "lamp".into(), cents: 120 }), 1);
/// ```
#[derive(Debug)]
pub struct MemoryTopics<T> {
    fanout: Fanout<T>,
}

impl<T> Clone for MemoryTopics<T> {
    fn clone(&self) -> Self {
        Self {
            fanout: self.fanout.clone(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> MemoryTopics<T> {
    /// In-process topics delivering under `delivery`. Bind them to the server with
    /// `ServerBuilder::topics` so they count into its gauges.
    pub fn new(delivery: Delivery) -> Self {
        Self {
            fanout: Fanout::new(delivery),
        }
    }

    /// The engine (subscriber counts, queued and retained events).
    pub fn fanout(&self) -> &Fanout<T> {
        &self.fanout
    }

    /// Every event published to `topic` from now on.
    pub fn subscribe(&self, topic: &str) -> Subscription<T> {
        self.fanout.subscribe(topic)
    }

    /// Publishes `event` to `topic`; returns how many subscribers took it. It cannot fail.
    pub fn publish(&self, topic: &str, event: T) -> usize {
        self.fanout.publish(topic, event)
    }
}

impl<T: Clone + Send + Sync + 'static> Topics for MemoryTopics<T> {
    type Event = T;
    type Error = Infallible;

    fn fanout(&self) -> &Fanout<T> {
        &self.fanout
    }

    fn subscribe_after(&self, topic: &str, after: Option<EventId>) -> Subscription<T> {
        self.fanout.subscribe_after(topic, after)
    }

    fn publish(
        &self,
        topic: &str,
        event: T,
    ) -> impl Future<Output = Result<usize, Infallible>> + Send {
        std::future::ready(Ok(self.fanout.publish(topic, event)))
    }
}
