//! Pub/sub mode (no history): one shared subscriber connection per process.

use std::collections::HashSet;
use std::sync::Weak;
use std::sync::atomic::Ordering;

use futures_lite::StreamExt;
use subscope_core::rt::Timer;

use crate::{BACKOFF_MAX, BACKOFF_START, Command, Event, Inner, decode};

enum Step {
    Reconcile(Option<String>),
    Message(Option<redis::Msg>),
}

/// Pub/sub mode's shared subscriber connection: reconciles subscriptions and fans messages
/// out.
/// Ends when every `RedisTopics` clone is gone.
pub(crate) async fn manage<T: Event, R: Timer>(
    inner: Weak<Inner<T>>,
    rx: async_channel::Receiver<Command<T>>,
    rt: R,
) {
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
            let reconcile = async {
                Step::Reconcile(rx.recv().await.ok().map(|c| match c {
                    Command::Reconcile(topic, _) => topic,
                    // Pub/sub keeps nothing to resume from: `subscribe_after` said the gap.
                    Command::Resume(resumer, _) => resumer.topic().to_owned(),
                }))
            };
            let message = async { Step::Message(stream.next().await) };
            match futures_lite::future::or(reconcile, message).await {
                Step::Reconcile(None) => return,
                Step::Reconcile(Some(channel)) => {
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
                Step::Message(None) => healthy = false,
                Step::Message(Some(msg)) => {
                    let Some(i) = inner.upgrade() else { return };
                    let payload: Vec<u8> = msg.get_payload().unwrap_or_default();
                    if let Some(event) = decode::<T>(msg.get_channel_name(), &payload) {
                        // The delivery policy handles a full buffer, visibly.
                        i.fanout.deliver(msg.get_channel_name(), None, event);
                    }
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
