//! Nothing lost under load (`docs/PROTOCOL.md` 4.5), on every runtime, in memory: a
//! pipelined publisher reaches every subscription exactly once and in order; a subscriber
//! that stops reading lags alone and is told; the drop policies count exactly what they
//! drop; the default limits never cut the publisher.

use std::time::{Duration, Instant};

use serde_json::json;
use subscope::{Config, Delivery, Overflow};
use subscope_tests::load::{Received, publish_pipelined};
use subscope_tests::{Client, DEADLINE, TestRuntime, TestServer, per_runtime, wait_until};

const CONNECTIONS: usize = 50;
const PER_CONNECTION: usize = 20;
const MESSAGES: usize = 200;
const WINDOW: usize = 64;

fn subscriber(s: &TestServer, topic: &str, ids: &[String]) -> Client {
    subscribe(Client::modern(s.addr), topic, ids)
}

/// A subscriber with a small TCP receive window, to stall the server quickly.
fn stalling_subscriber(s: &TestServer, topic: &str, id: &str) -> Client {
    subscribe(
        Client::modern_with_receive_buffer(s.addr, 16 * 1024),
        topic,
        &[id.to_owned()],
    )
}

fn subscribe(mut c: Client, topic: &str, ids: &[String]) -> Client {
    c.init(None);
    for id in ids {
        c.subscribe(
            id,
            &format!("subscription {{ messages(topic: {}) }}", json!(topic)),
        );
    }
    c
}

fn publisher(s: &TestServer) -> Client {
    let mut c = Client::modern(s.addr);
    c.init(None);
    c
}

/// `n` numbered messages of `pad` more bytes each. The padding is pseudo-random letters
/// and digits, so the compressed run of the suite moves about as many bytes as the plain
/// one (a repeated letter would shrink a thousandfold and no reader would ever stall).
fn numbered(n: usize, pad: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..n)
        .map(|i| {
            let pad: String = (0..pad)
                .map(|_| {
                    // xorshift64
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(ALPHABET[(state % ALPHABET.len() as u64) as usize])
                })
                .collect();
            format!("{i:06}{pad}")
        })
        .collect()
}

fn a_pipelined_publisher_reaches_every_subscription_exactly_once_in_order<R: TestRuntime>() {
    // The library's defaults: no rate limit, buffer 1024, overflow `end`.
    let s = R::start(Config::default());
    let ids: Vec<String> = (0..PER_CONNECTION).map(|i| format!("s{i}")).collect();
    let readers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let mut c = subscriber(&s, "load", &ids);
            let ids = ids.clone();
            std::thread::spawn(move || Received::read(&mut c, &ids, MESSAGES))
        })
        .collect();
    wait_until("1000 subscriptions registered", DEADLINE, || {
        s.broker.subscribers("load") == CONNECTIONS * PER_CONNECTION
    });
    let messages = numbered(MESSAGES, 10);
    let mut p = publisher(&s);
    let receivers = publish_pipelined(&mut p, "load", &messages, WINDOW);
    assert!(
        receivers
            .iter()
            .all(|&n| n == (CONNECTIONS * PER_CONNECTION) as u64),
        "publish reported {receivers:?}"
    );
    for reader in readers {
        let got = reader.join().expect("reader");
        for id in &ids {
            assert!(
                got.values[id] == messages,
                "{id}: not every message exactly once, in order ({} of {})",
                got.values[id].len(),
                messages.len()
            );
        }
        assert!(got.errors.is_empty() && got.completed.is_empty(), "{got:?}");
    }
    let g = s.gauges.snapshot();
    assert_eq!((g.events_dropped, g.subscriptions_lagged), (0, 0));
    // The publisher was never cut: it is still in service.
    p.subscribe("q", "{ hello }");
    assert_eq!(p.recv_json()["payload"]["data"]["hello"], "world");
}

/// Floods `topic` with `n` messages of about 2 KiB while a stalled subscriber does not
/// read (far more than its socket buffers hold), with `fast` reading everything (they must
/// lose nothing). Returns the messages and the fast clients, still connected.
fn flood_past_a_stalled_reader(
    s: &TestServer,
    topic: &str,
    n: usize,
    fast: Vec<Client>,
    buffer: usize,
) -> (Vec<String>, Vec<Client>) {
    let messages = numbered(n, 2048);
    let readers: Vec<_> = fast
        .into_iter()
        .map(|mut c| {
            let ids = vec!["f".to_owned()];
            std::thread::spawn(move || (Received::read(&mut c, &ids, n), c))
        })
        .collect();
    let mut p = publisher(s);
    // Sample the per-subscriber queue while publishing, in chunks.
    let mut most = 0;
    for chunk in messages.chunks(250) {
        publish_pipelined(&mut p, topic, chunk, WINDOW);
        most = most.max(s.broker.queued(topic));
    }
    // Server-side memory for the stalled subscriber is its buffer, never more.
    assert!(
        most <= 2 * buffer,
        "queued {most} events (one stalled subscriber, buffer {buffer})"
    );
    let fast = readers
        .into_iter()
        .map(|reader| {
            let (got, c) = reader.join().expect("fast reader");
            let values = &got.values["f"];
            assert!(
                *values == messages,
                "a reading subscriber lost nothing: got {} of {}",
                values.len(),
                messages.len()
            );
            c
        })
        .collect();
    (messages, fast)
}

/// The stalled reader resumes after the flood: no write timeout or liveness check may end
/// it first on a loaded CI machine (both are tested on their own elsewhere).
fn stalled_config() -> Config {
    Config::default()
        .write_timeout(Duration::from_secs(120))
        .keepalive_interval(None)
}

fn a_subscriber_that_stops_reading_lags_alone_and_is_told<R: TestRuntime>() {
    let s = R::start(stalled_config());
    let only = |c| vec![c];
    let mut slow = stalling_subscriber(&s, "flood", "s");
    let fast: Vec<Client> = (0..2)
        .map(|_| subscriber(&s, "flood", &only("f".to_owned())))
        .collect();
    wait_until("3 subscribers", DEADLINE, || {
        s.broker.subscribers("flood") == 3
    });
    // About 3.5 MB fit in the socket buffers and the driver's queue, 2 MB in the buffer:
    // 6,000 × 2 KiB (12 MB) lag by a wide margin.
    let n = 6000;
    let (messages, _fast) = flood_past_a_stalled_reader(&s, "flood", n, fast, 1024);
    // The stalled subscriber resumes: a contiguous prefix, the lag error, complete.
    let mut got = Received::default();
    let end = Instant::now() + 3 * DEADLINE;
    while !got.completed.contains(&"s".to_owned()) {
        assert!(Instant::now() < end, "no end for the lagged subscriber");
        got.take(slow.recv_json());
    }
    let prefix = &got.values["s"];
    eprintln!("lagged after a prefix of {} of {n}", prefix.len());
    assert!(prefix.len() < n, "it lagged");
    assert!(
        prefix[..] == messages[..prefix.len()],
        "a contiguous prefix"
    );
    let error = &got.errors["s"];
    assert_eq!(error["extensions"]["code"], "SUBSCRIBER_LAGGED", "{error}");
    assert_eq!(
        error["extensions"]["dropped"],
        (n - prefix.len()) as u64,
        "{error}"
    );
    let g = s.gauges.snapshot();
    assert_eq!(g.subscriptions_lagged, 1);
    assert_eq!(g.events_dropped, (n - prefix.len()) as u64);
    // Its slot is released: the subscription is gone, the connection goes on.
    wait_until("2 subscribers left", DEADLINE, || {
        s.broker.subscribers("flood") == 2
    });
    slow.subscribe("q", "{ hello }");
    assert_eq!(slow.recv_json()["payload"]["data"]["hello"], "world");
}

fn drop_policies_count_exactly_what_they_drop<R: TestRuntime>() {
    for overflow in [Overflow::DropOldest, Overflow::DropNewest] {
        let buffer = 16;
        let delivery = Delivery::default().buffer(buffer).overflow(overflow);
        let s = R::start_with(stalled_config(), delivery);
        let mut slow = stalling_subscriber(&s, "t", "s");
        wait_until("the subscriber", DEADLINE, || {
            s.broker.subscribers("t") == 1
        });
        // About 3.5 MB (1,700 events) fit in the loopback socket buffers and the driver's
        // queue; 4,000 leave a wide margin of drops.
        let n = 4000;
        // No other reader here: with a buffer of 16 a reader that merely competes for the
        // CPU with a pipelined publisher drops too (which is what the policy is for).
        let (messages, _) = flood_past_a_stalled_reader(&s, "t", n, Vec::new(), buffer);
        // Resume, drain what the server still holds, then a marker closes the count.
        let mut got = Received::default();
        let drained = || s.broker.queued("t") == 0;
        while !drained() {
            got.take(slow.recv_json());
        }
        let mut p = publisher(&s);
        publish_pipelined(&mut p, "t", &["end".to_owned()], 1);
        loop {
            let before = got.values.get("s").map_or(0, Vec::len);
            got.take(slow.recv_json());
            let values = &got.values["s"];
            if values.len() > before && values.last().is_some_and(|v| v == "end") {
                break;
            }
        }
        let mut values = got.values.remove("s").unwrap_or_default();
        values.pop();
        let dropped = s.gauges.snapshot().events_dropped;
        eprintln!(
            "{overflow}: {} delivered, {dropped} dropped of {n}",
            values.len()
        );
        assert!(dropped > 0, "{overflow}: nothing was dropped");
        assert_eq!(
            values.len() as u64 + dropped,
            n as u64,
            "{overflow}: count is exact"
        );
        // What arrived arrived in order, each once, and nothing else.
        let mut sorted = values.clone();
        sorted.sort();
        sorted.dedup();
        assert!(sorted == values, "{overflow}: out of order or duplicated");
        assert!(values.iter().all(|v| messages.contains(v)));
        if overflow == Overflow::DropNewest {
            // The first `buffer` events are taken and never evicted.
            assert!(
                values[..buffer] == messages[..buffer],
                "drop-newest keeps the oldest"
            );
        } else {
            // The oldest queued were dropped: the newest `buffer` always arrive.
            assert!(
                values[values.len() - buffer..] == messages[n - buffer..],
                "drop-oldest keeps the newest"
            );
        }
        assert!(
            got.errors.is_empty() && got.completed.is_empty(),
            "the stream goes on"
        );
        assert_eq!(s.gauges.snapshot().subscriptions_lagged, 0);
    }
}

per_runtime!(
    a_pipelined_publisher_reaches_every_subscription_exactly_once_in_order,
    a_subscriber_that_stops_reading_lags_alone_and_is_told,
    drop_policies_count_exactly_what_they_drop,
);
