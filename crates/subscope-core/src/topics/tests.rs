//! The delivery engine's behaviour, without sockets or timers.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use async_graphql::ErrorExtensions;
use futures_core::Stream;
use futures_lite::StreamExt;
use futures_lite::future::block_on;

use super::{Delivery, EventId, Fanout, History, Missed, Overflow, Resume, Subscription};
use crate::Gauges;

fn fanout(buffer: usize, overflow: Overflow) -> (Fanout<String>, Arc<Gauges>) {
    let gauges = Arc::new(Gauges::new());
    let delivery = Delivery::default().buffer(buffer).overflow(overflow);
    let f = Fanout::new(delivery);
    f.count_into(Arc::clone(&gauges));
    (f, gauges)
}

fn drain(sub: &mut Subscription<String>) -> Vec<Result<String, Missed>> {
    let mut out = Vec::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    while let Poll::Ready(Some(item)) = Pin::new(&mut *sub).poll_next(&mut cx) {
        out.push(item);
    }
    out
}

fn ok(range: std::ops::Range<u32>) -> Vec<Result<String, Missed>> {
    range.map(|i| Ok(i.to_string())).collect()
}

#[test]
fn end_delivers_the_prefix_then_the_lag_then_nothing() {
    let (f, gauges) = fanout(4, Overflow::End);
    let mut slow = f.subscribe("t");
    let mut fast = f.subscribe("t");
    for i in 0..10u32 {
        f.publish("t", i.to_string());
        if i < 3 {
            assert_eq!(drain(&mut fast), ok(i..i + 1));
        }
    }
    let mut want = ok(0..4);
    want.push(Err(Missed::Lagged { dropped: 6 }));
    assert_eq!(drain(&mut slow), want);
    assert_eq!(block_on(slow.next()), None);
    assert_eq!(f.subscribers("t"), 1, "the lagged slot is released");
    // `fast` read its first 3, then stopped reading too: it lagged at event 7.
    let mut fast_items = drain(&mut fast);
    assert_eq!(fast_items.pop(), Some(Err(Missed::Lagged { dropped: 3 })));
    assert_eq!(fast_items, ok(3..7));
    let snap = gauges.snapshot();
    assert_eq!(snap.events_dropped, 9);
    assert_eq!(snap.subscriptions_lagged, 2);
}

#[test]
fn drop_oldest_and_drop_newest_count_exactly_what_they_drop() {
    for (overflow, want) in [(Overflow::DropOldest, 6..10), (Overflow::DropNewest, 0..4)] {
        let (f, gauges) = fanout(4, overflow);
        let mut sub = f.subscribe("t");
        for i in 0..10u32 {
            f.publish("t", i.to_string());
        }
        assert_eq!(drain(&mut sub), ok(want), "{overflow}");
        assert_eq!(sub.dropped(), 6);
        assert_eq!(gauges.snapshot().events_dropped, 6);
        assert_eq!(gauges.snapshot().subscriptions_lagged, 0);
        // The stream goes on.
        f.publish("t", "after".to_owned());
        assert_eq!(drain(&mut sub), [Ok("after".to_owned())]);
    }
}

#[test]
fn a_broker_gap_ends_under_end_and_is_counted_otherwise() {
    let (f, gauges) = fanout(8, Overflow::End);
    let mut sub = f.subscribe("t");
    f.publish("t", "before".to_owned());
    f.broker_gap();
    f.publish("t", "after the gap is not delivered".to_owned());
    assert_eq!(
        drain(&mut sub),
        [Ok("before".to_owned()), Err(Missed::BrokerGap)]
    );
    assert_eq!(gauges.snapshot().broker_gaps, 1);

    let (f, gauges) = fanout(8, Overflow::DropNewest);
    let mut sub = f.subscribe("t");
    f.broker_gap();
    f.publish("t", "goes on".to_owned());
    assert_eq!(drain(&mut sub), [Ok("goes on".to_owned())]);
    assert_eq!(gauges.snapshot().broker_gaps, 1);
}

#[test]
fn memory_follows_what_is_queued_and_dropping_unsubscribes() {
    let (f, _) = fanout(1024, Overflow::End);
    let mut sub = f.subscribe("t");
    assert_eq!(sub.queue_capacity(), 0, "idle: no buffer");
    for i in 0..1000u32 {
        f.publish("t", i.to_string());
    }
    assert_eq!(f.queued("t"), 1000);
    assert_eq!(drain(&mut sub).len(), 1000);
    assert_eq!(sub.queue_capacity(), 0, "drained: buffer given back");
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&changes);
    let f = Fanout::<String>::with_topic_changes(Delivery::default(), move |t, on| {
        seen.lock().unwrap().push(format!("{t} {on}"));
    });
    let a = f.subscribe("x");
    let b = f.subscribe("x");
    drop(a);
    drop(b);
    assert_eq!(*changes.lock().unwrap(), ["x true", "x false"]);
    assert_eq!(f.subscribers("x"), 0);
}

#[test]
fn overflow_names_round_trip() {
    for o in [Overflow::End, Overflow::DropOldest, Overflow::DropNewest] {
        assert_eq!(o.to_string().parse::<Overflow>(), Ok(o));
    }
    assert!("drop".parse::<Overflow>().is_err());
}

#[test]
fn the_graphql_error_carries_code_and_dropped() {
    let e = Missed::Lagged { dropped: 5 }.extend();
    let ext = serde_json::to_value(e.extensions.expect("extensions")).expect("json");
    assert_eq!(
        ext,
        serde_json::json!({"code": "SUBSCRIBER_LAGGED", "dropped": 5})
    );
    let e = Missed::BrokerGap.extend();
    let ext = serde_json::to_value(e.extensions.expect("extensions")).expect("json");
    assert_eq!(ext, serde_json::json!({"code": "BROKER_GAP"}));
}

/// `?` in a resolver gives the same error as `.extend()`: message, code and count.
#[test]
fn question_mark_keeps_code_and_dropped() {
    fn through_question_mark(item: Result<String, Missed>) -> async_graphql::Result<String> {
        Ok(item?)
    }
    for missed in [Missed::Lagged { dropped: 7 }, Missed::BrokerGap] {
        let e = through_question_mark(Err(missed.clone())).expect_err("an error");
        assert_eq!(e.message, missed.message());
        let ext = serde_json::to_value(e.extensions.expect("extensions")).expect("json");
        let want = match missed {
            Missed::Lagged { .. } => {
                serde_json::json!({"code": "SUBSCRIBER_LAGGED", "dropped": 7})
            }
            Missed::BrokerGap => serde_json::json!({"code": "BROKER_GAP"}),
            Missed::ResumeGap { .. } => unreachable!(),
        };
        assert_eq!(ext, want);
    }
    // And a subscription's real final item, through `?`.
    let (f, _) = fanout(1, Overflow::End);
    let mut sub = f.subscribe("t");
    f.broker_gap();
    let item = block_on(sub.next()).expect("an item");
    let e = through_question_mark(item).expect_err("the gap");
    let ext = e.extensions.expect("extensions");
    assert_eq!(
        ext.get("code"),
        Some(&async_graphql::Value::from("BROKER_GAP"))
    );
}

fn history(len: usize) -> (Fanout<String>, Arc<Gauges>) {
    let gauges = Arc::new(Gauges::new());
    let f = Fanout::new(Delivery::default().history(History::last(len)));
    f.count_into(Arc::clone(&gauges));
    (f, gauges)
}

fn values(items: &[Result<String, Missed>]) -> Vec<String> {
    items.iter().filter_map(|i| i.clone().ok()).collect()
}

/// Publishes `n` numbered events; returns their ids, read by a live subscriber.
fn publish_numbered(f: &Fanout<String>, range: std::ops::Range<u32>) -> Vec<EventId> {
    let resume = Resume::new(None);
    let mut probe = f.subscribe("t").tracked_by(resume.clone());
    let mut ids = Vec::new();
    for i in range {
        f.publish("t", i.to_string());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        match Pin::new(&mut probe).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(_))) => ids.push(resume.take_current().expect("an id")),
            other => panic!("probe got {other:?}"),
        }
    }
    ids
}

#[test]
fn ids_increase_and_a_resume_gets_what_followed_exactly_once() {
    let (f, gauges) = history(100);
    let ids = publish_numbered(&f, 0..10);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let mut resumed = f.subscribe_after("t", Some(ids[3]));
    f.publish("t", "10".to_owned());
    assert_eq!(drain(&mut resumed), ok(4..11));
    assert_eq!(gauges.snapshot().events_replayed, 6);
    assert_eq!(gauges.snapshot().resume_gaps, 0);
    // After the newest id: nothing to replay, then live.
    let last = publish_numbered(&f, 11..12)[0];
    let mut caught_up = f.subscribe_after("t", Some(last));
    assert_eq!(drain(&mut caught_up), []);
    f.publish("t", "12".to_owned());
    assert_eq!(drain(&mut caught_up), ok(12..13));
}

#[test]
fn a_resume_past_history_says_the_gap_with_the_oldest_id_then_the_retained() {
    let (f, gauges) = history(5);
    let ids = publish_numbered(&f, 0..20);
    let mut sub = f.subscribe_after("t", Some(ids[3]));
    let items = drain(&mut sub);
    assert_eq!(
        items[0],
        Err(Missed::ResumeGap {
            oldest: Some(ids[15])
        })
    );
    assert_eq!(
        values(&items),
        (15..20).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(gauges.snapshot().resume_gaps, 1);
    // The newest evicted id still reaches: event 15 follows it.
    let mut edge = f.subscribe_after("t", Some(ids[14]));
    assert_eq!(drain(&mut edge), ok(15..20));
    // Another instance's id, and an id this instance never issued.
    for foreign in [EventId::new(1, 1), EventId::new(ids[0].epoch(), 999)] {
        let mut sub = f.subscribe_after("t", Some(foreign));
        let items = drain(&mut sub);
        assert_eq!(
            items[0],
            Err(Missed::ResumeGap {
                oldest: Some(ids[15])
            })
        );
        assert_eq!(items.len(), 6);
    }
}

#[test]
fn without_history_a_resume_is_a_gap_then_live_and_events_have_no_id() {
    let (f, _) = fanout(8, Overflow::End);
    let resume = Resume::new(None);
    let mut sub = f
        .subscribe_after("t", Some(EventId::new(1, 1)))
        .tracked_by(resume.clone());
    f.publish("t", "live".to_owned());
    assert_eq!(
        drain(&mut sub),
        [
            Err(Missed::ResumeGap { oldest: None }),
            Ok("live".to_owned())
        ]
    );
    assert_eq!(resume.take_current(), None);
}

#[test]
fn history_expires_by_age_too() {
    let gauges = Arc::new(Gauges::new());
    let history = History::last(100).max_age(std::time::Duration::from_millis(1));
    let f = Fanout::new(Delivery::default().history(history));
    f.count_into(gauges);
    let ids = publish_numbered(&f, 0..3);
    // Older than the bound (a wall-clock wait: age is what is tested).
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut sub = f.subscribe_after("t", Some(ids[0]));
    assert_eq!(drain(&mut sub), [Err(Missed::ResumeGap { oldest: None })]);
    assert_eq!(f.retained("t"), 0);
}

/// The seam: a publisher on another thread goes on while subscribers resume after
/// every id in turn; each gets exactly what followed its id, in order.
#[test]
fn the_seam_between_replay_and_live_loses_and_repeats_nothing_under_a_racing_publisher() {
    const EVENTS: u32 = 20_000;
    // Buffers that hold everything: the publisher may run far ahead of this thread, and a
    // lag is not what is tested here.
    let delivery = Delivery::default()
        .buffer(EVENTS as usize)
        .history(History::last(EVENTS as usize));
    let f = Fanout::new(delivery);
    let resume = Resume::new(None);
    let mut probe = f.subscribe("t").tracked_by(resume.clone());
    let publisher = {
        let f = f.clone();
        std::thread::spawn(move || {
            for i in 0..EVENTS {
                f.publish("t", i.to_string());
            }
        })
    };
    let mut checked = 0;
    let mut seen = 0u32;
    while seen < EVENTS {
        let item = block_on(probe.next()).expect("an item");
        assert_eq!(item, Ok(seen.to_string()));
        let id = resume.take_current().expect("an id");
        seen += 1;
        if seen.is_multiple_of(500) {
            // Resume after `id` while the publisher races on.
            let mut sub = f.subscribe_after("t", Some(id));
            let mut next = seen;
            while next < EVENTS.min(seen + 300) {
                let got = block_on(sub.next()).expect("an item");
                assert_eq!(got, Ok(next.to_string()), "after {id}");
                next += 1;
            }
            checked += 1;
        }
    }
    publisher.join().expect("publisher");
    assert_eq!(checked, EVENTS / 500);
}

#[test]
fn a_paused_subscriber_gets_its_replay_then_live_skipping_what_it_has() {
    let (f, gauges) = fanout(8, Overflow::End);
    let (mut sub, resumer) = f.subscribe_paused("t");
    f.deliver("t", Some(EventId::new(5, 1)), "in the replay".to_owned());
    assert_eq!(
        drain(&mut sub),
        [],
        "paused: live events wait for the replay"
    );
    resumer.resume(
        None,
        [(EventId::new(5, 1), "in the replay".to_owned())],
        Some(EventId::new(5, 2)),
    );
    f.deliver("t", Some(EventId::new(5, 2)), "already had".to_owned());
    f.deliver("t", Some(EventId::new(5, 3)), "live".to_owned());
    assert_eq!(
        drain(&mut sub),
        [Ok("in the replay".to_owned()), Ok("live".to_owned())]
    );
    // A resume abandoned (its broker gone) is said, never silent.
    let (mut sub, resumer) = f.subscribe_paused("t");
    drop(resumer);
    assert_eq!(drain(&mut sub), [Err(Missed::ResumeGap { oldest: None })]);
    assert_eq!(gauges.snapshot().resume_gaps, 1);
}

#[test]
fn the_resume_gap_error_names_the_oldest_id() {
    let e = Missed::ResumeGap {
        oldest: Some(EventId::new(7, 9)),
    }
    .extend();
    let ext = serde_json::to_value(e.extensions.expect("extensions")).expect("json");
    assert_eq!(
        ext,
        serde_json::json!({"code": "RESUME_GAP", "oldestEventId": "7-9"})
    );
    let e = Missed::ResumeGap { oldest: None }.extend();
    let ext = serde_json::to_value(e.extensions.expect("extensions")).expect("json");
    assert_eq!(
        ext,
        serde_json::json!({"code": "RESUME_GAP", "oldestEventId": null})
    );
}

#[test]
fn a_topic_with_history_keeps_it_without_subscribers_and_one_without_is_forgotten() {
    let (f, _) = history(3);
    f.publish("kept", "a".to_owned());
    assert_eq!(f.retained("kept"), 1);
    assert!(f.topics().is_empty(), "no subscriber");
    let (g, _) = fanout(8, Overflow::End);
    drop(g.subscribe("gone"));
    assert_eq!(g.registered_topics(), 0);
}
