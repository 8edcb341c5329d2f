//! The fleet scenario (`cargo xtask bench --scale`, "Redis fleet"): C x S subscribers of
//! one topic spread round-robin over several server processes that share topics through
//! Redis, and one pipelined publisher on one of them (or any server).
//!
//! `loadgen --scenario fleet --urls URL1,URL2,... --pids PID1,PID2,... --publish-url URL
//!          [--redis-pid PID] [--connections C] [--subs S] [--events N] [--in-flight K]
//!          [--paced M] [--parallel P]`
//!
//! Connection `i` goes to `URLS[i % n]`, so every process holds C / n connections (its
//! share of C x S subscribers). The publisher keeps K `publish` mutations outstanding over N
//! events (the next one goes out as soon as one completes). The figures:
//!
//! - **events/s and deliveries/s**: events (deliveries) over the span from sending the
//!   first publish until the last delivery of any event;
//! - **per-event latency** (p50, p99, max): from sending an event's publish until its last
//!   subscriber had it (what "everyone has it" costs);
//! - **per-delivery latency** (p50, p99): from sending the publish until one subscriber
//!   had it, over every delivery (a histogram of 100 µs buckets);
//! - delivered / expected and `lost`; a run that lost anything has no latency or
//!   throughput figures, only the loss;
//! - each server's RSS with every subscriber live and its CPU time over the publishing,
//!   and Redis's CPU time when `--redis-pid` is given.
//!
//! The pipelined publisher outruns delivery whenever a `publish` completes before its
//! event is delivered (with Redis pub/sub it completes once Redis has it), so its latency
//! figures are mostly the backlog draining. Then `--paced M` events (default 20) are
//! published one at a time, each once the one before reached every subscriber: their
//! per-event p50/p99 is the latency with nothing queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use serde_json::{Value, json};

use super::scale::{check_fds, open_bounded, own_usage};
use super::{Args, Observer, connect, cpu_ms, leading_index, percentile, recv, rss_kib};

const QUERY: &str = "subscription { messages(topic: \"fleet\") }";

/// One document for every publish, the message in a variable (as a real producer sends it).
const PUBLISH: &str = "mutation($m: String!) { publish(topic: \"fleet\", message: $m) }";

/// Warm-up events tried before the measured ones (indices `0..WARMUPS`; the measured ones
/// follow). A process `SUBSCRIBE`s its Redis channel when its first local subscriber
/// appears, asynchronously, so a live stream does not yet mean Redis will route to it: the
/// warm-up repeats until one event reached every subscriber.
const WARMUPS: usize = 8;

/// Per-delivery latency histogram: buckets of this many ns ...
const BUCKET_NS: u64 = 100_000;
/// ... up to this many buckets (30 s); later deliveries land in the last one.
const BUCKETS: usize = 300_000;

/// How long the run waits, after the last publish completed, for the last deliveries
/// (bounded: it also stops after 3 s without any delivery).
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// A comma-separated list argument.
fn list(a: &Args, key: &str) -> Vec<String> {
    a.get(key, "")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `p` quantile of a histogram of `BUCKET_NS` buckets, in ms (the bucket's upper edge).
fn hist_percentile(hist: &[AtomicU64], p: f64) -> Option<f64> {
    let total: u64 = hist.iter().map(|b| b.load(Ordering::Relaxed)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * p).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, b) in hist.iter().enumerate() {
        seen += b.load(Ordering::Relaxed);
        if seen >= rank {
            return Some(((i as u64 + 1) * BUCKET_NS) as f64 / 1e6);
        }
    }
    None
}

/// Delivery bookkeeping shared by every reader task; times are ns since `epoch`.
struct Tally {
    epoch: Instant,
    /// When each event's publish was sent (0: not yet).
    sent: Vec<AtomicU64>,
    /// Deliveries per event.
    counts: Vec<AtomicU64>,
    /// The last delivery of each event.
    lasts: Vec<AtomicU64>,
    /// Deliveries of the pipelined events (`WARMUPS..pipelined_end`), by latency.
    hist: Vec<AtomicU64>,
    pipelined_end: usize,
    /// Deliveries of an index past the events (never expected; counted to be seen).
    strays: AtomicU64,
}

impl Tally {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// A `next` frame's text: counts the delivery of the event it names.
    fn record(&self, text: &str) {
        let Some(rest) = text.split("\"messages\":\"").nth(1) else {
            return;
        };
        let Some(i) = leading_index(rest).filter(|i| *i < self.counts.len()) else {
            self.strays.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = self.now();
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.lasts[i].fetch_max(now, Ordering::Relaxed);
        if (WARMUPS..self.pipelined_end).contains(&i) {
            let lat = now.saturating_sub(self.sent[i].load(Ordering::Relaxed));
            let b = ((lat / BUCKET_NS) as usize).min(BUCKETS - 1);
            self.hist[b].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Deliveries of events `range`, summed.
    fn delivered(&self, range: std::ops::Range<usize>) -> u64 {
        self.counts[range]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Waits until `count()` reaches `want`, or nothing changed for 3 s, or `deadline` passed.
async fn wait_count(count: impl Fn() -> u64, want: u64, deadline: Duration) {
    let end = Instant::now() + deadline;
    let (mut seen, mut quiet_since) = (u64::MAX, Instant::now());
    while count() < want && Instant::now() < end {
        let now = count();
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
        } else if quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Publishes events `range` on `publisher`, keeping `in_flight` mutations outstanding;
/// records each one's send time in `tally.sent`. Returns the smallest `publish` result
/// (with Redis pub/sub: how many processes the event reached) and how many failed.
async fn publish_pipelined(
    publisher: &mut super::Ws,
    tally: &Tally,
    range: std::ops::Range<usize>,
    in_flight: usize,
) -> (Option<u64>, u64) {
    let (mut next, mut done, mut outstanding) = (range.start, range.start, 0);
    let (mut reached_min, mut failed): (Option<u64>, u64) = (None, 0);
    while done < range.end {
        while outstanding < in_flight && next < range.end {
            tally.sent[next].store(tally.now(), Ordering::Relaxed);
            super::send(
                publisher,
                json!({"id": format!("p{next}"), "type": "subscribe", "payload": {
                    "query": PUBLISH,
                    "variables": {"m": format!("{next} fleet")},
                }}),
            )
            .await;
            next += 1;
            outstanding += 1;
        }
        // `recv` is bounded by the load generator's deadline (it panics past it).
        let m = recv(publisher).await;
        match m["type"].as_str() {
            Some("complete") => {
                done += 1;
                outstanding -= 1;
            }
            Some("next") => match m["payload"]["data"]["publish"].as_u64() {
                Some(n) => reached_min = Some(reached_min.map_or(n, |r| r.min(n))),
                None => failed += 1,
            },
            _ => {
                // An `error` ends that operation without a `complete`.
                failed += 1;
                done += 1;
                outstanding -= 1;
            }
        }
    }
    (reached_min, failed)
}

/// The fleet scenario; see the module documentation.
pub(super) async fn fleet(a: &Args) -> Value {
    let mut urls = list(a, "--urls");
    if urls.is_empty() {
        urls.push(a.get("--url", "ws://127.0.0.1:8000/graphql"));
    }
    let pids: Vec<u32> = list(a, "--pids")
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    let redis_pid = a.num("--redis-pid", 0) as u32;
    let publish_url = a.get("--publish-url", &urls[0]);
    let (c, s) = (a.num("--connections", 1000), a.num("--subs", 10));
    let events = a.num("--events", 200) as usize;
    let in_flight = a.num("--in-flight", 64).max(1) as usize;
    let paced = a.num("--paced", 20) as usize;
    let parallel = a.num("--parallel", 128);
    let n = urls.len() as u64;
    // The subscribers, an observer per server and the publisher.
    check_fds(c + n + 1);
    let mut observers = Vec::new();
    for url in &urls {
        let mut obs = Observer::new(url).await;
        let base = obs.live_streams().await;
        observers.push((obs, base));
    }
    let rss_before: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    let total = WARMUPS + events + paced;
    let atomics = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
    let tally = Arc::new(Tally {
        epoch: Instant::now(),
        sent: atomics(total),
        counts: atomics(total),
        lasts: atomics(total),
        hist: atomics(BUCKETS),
        pipelined_end: WARMUPS + events,
        strays: AtomicU64::new(0),
    });
    let setup = Instant::now();
    let urls_owned = Arc::new(urls.clone());
    let (conns, errors) = open_bounded(c, parallel, setup, Arc::default(), Arc::default(), |i| {
        let url = urls_owned[(i % n) as usize].clone();
        async move { super::scale::subscribed(&url, s, QUERY).await }
    })
    .await;
    let setup_s = setup.elapsed().as_secs_f64();
    // Readers run until their stream ends or the set is dropped at the end.
    let mut readers = tokio::task::JoinSet::new();
    for mut ws in conns {
        let tally = Arc::clone(&tally);
        readers.spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m {
                    tally.record(t.as_str());
                }
            }
        });
    }
    // Every server holds its share: connections i ≡ k (mod n) went to server k (a failed
    // one is counted in `errors`, and then the wait below fails loudly at its deadline).
    for (k, (obs, base)) in observers.iter_mut().enumerate() {
        let share = (c / n + u64::from((k as u64) < c % n)) * s;
        obs.wait_live(true, *base, share).await;
    }
    let expected_each = c.saturating_sub(errors) * s;
    let rss_live: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    let mut publisher = connect(&publish_url).await;
    // Warm-up: until one event reached every subscriber (see `WARMUPS`).
    let mut warm = None;
    for w in 0..WARMUPS {
        publish_pipelined(&mut publisher, &tally, w..w + 1, 1).await;
        wait_count(
            || tally.counts[w].load(Ordering::Relaxed),
            expected_each,
            Duration::from_secs(10),
        )
        .await;
        if tally.counts[w].load(Ordering::Relaxed) == expected_each {
            warm = Some(w + 1);
            break;
        }
    }
    let cpu_before: Vec<Option<f64>> = pids.iter().map(|p| cpu_ms(*p)).collect();
    let redis_cpu_before = cpu_ms(redis_pid);
    let measured = WARMUPS..WARMUPS + events;
    let started = tally.now();
    let publishing = Instant::now();
    let (reached_min, publish_failed) =
        publish_pipelined(&mut publisher, &tally, measured.clone(), in_flight).await;
    let publish_s = publishing.elapsed().as_secs_f64();
    let expected = expected_each * events as u64;
    wait_count(
        || tally.delivered(measured.clone()),
        expected,
        DRAIN_DEADLINE,
    )
    .await;
    let delivered = tally.delivered(measured.clone());
    let last = measured
        .clone()
        .map(|i| tally.lasts[i].load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let cpu: Vec<Option<f64>> = pids
        .iter()
        .zip(&cpu_before)
        .map(|(p, b)| b.zip(cpu_ms(*p)).map(|(b, a)| a - b))
        .collect();
    let redis_cpu = redis_cpu_before.zip(cpu_ms(redis_pid)).map(|(b, a)| a - b);
    // Paced: one event at a time, each once the one before reached every subscriber (or
    // 3 s passed without a delivery, or the deadline).
    let paced_range = WARMUPS + events..total;
    let mut paced_failed = 0;
    for i in paced_range.clone() {
        paced_failed += publish_pipelined(&mut publisher, &tally, i..i + 1, 1)
            .await
            .1;
        wait_count(
            || tally.counts[i].load(Ordering::Relaxed),
            expected_each,
            Duration::from_secs(10),
        )
        .await;
    }
    drop(readers);
    let paced_delivered = tally.delivered(paced_range.clone());
    let paced_complete =
        paced_delivered == expected_each * paced as u64 && paced_failed == 0 && errors == 0;
    // Per event, from its publish until its last subscriber had it (ms), sorted.
    let latencies = |range: std::ops::Range<usize>| {
        let mut ms: Vec<f64> = range
            .map(|i| {
                let sent = tally.sent[i].load(Ordering::Relaxed);
                let last = tally.lasts[i].load(Ordering::Relaxed);
                last.saturating_sub(sent) as f64 / 1e6
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let paced_times = latencies(paced_range);
    let complete = delivered == expected && errors == 0 && publish_failed == 0;
    let span_s = last.saturating_sub(started) as f64 / 1e9;
    let per_event = latencies(measured.clone());
    // Which events lost deliveries, the first few (to see whether a loss is a whole
    // process missing an event, or single subscribers).
    let short: Vec<Value> = measured
        .clone()
        .filter_map(|i| {
            let got = tally.counts[i].load(Ordering::Relaxed);
            (got != expected_each).then(|| json!([i - WARMUPS, got]))
        })
        .take(10)
        .collect();
    let (own_rss, own_cpu) = own_usage();
    json!({
        "processes": n,
        "connections": c,
        "subs": s,
        "subscribers": c * s,
        "subscribers_per_process": c * s / n.max(1),
        "events": events,
        "in_flight": in_flight,
        "errors": errors,
        "setup_s": setup_s,
        // Warm-up events it took until one reached every subscriber (null: none did).
        "warmups": warm,
        "publish_s": publish_s,
        // The smallest `publish` result: with Redis pub/sub, processes an event reached.
        "publish_reached_min": reached_min,
        "publish_failed": publish_failed,
        "span_s": span_s,
        // No throughput or latency for a run that lost events: it is reported as lost.
        "events_per_s": complete.then(|| events as f64 / span_s),
        "deliveries_per_s": complete.then(|| delivered as f64 / span_s),
        "event_p50_ms": complete.then(|| percentile(&per_event, 0.50)),
        "event_p99_ms": complete.then(|| percentile(&per_event, 0.99)),
        "event_max_ms": complete.then(|| per_event.last().copied()).flatten(),
        "delivery_p50_ms": complete.then(|| hist_percentile(&tally.hist, 0.50)).flatten(),
        "delivery_p99_ms": complete.then(|| hist_percentile(&tally.hist, 0.99)).flatten(),
        "delivered": delivered,
        "expected": expected,
        "lost": expected.saturating_sub(delivered),
        "short_events": short,
        "paced": paced,
        "paced_delivered": paced_delivered,
        "paced_expected": expected_each * paced as u64,
        "paced_failed": paced_failed,
        "paced_p50_ms": paced_complete.then(|| percentile(&paced_times, 0.50)),
        "paced_p99_ms": paced_complete.then(|| percentile(&paced_times, 0.99)),
        "strays": tally.strays.load(Ordering::Relaxed),
        "server_cpu_ms": cpu,
        "server_cpu_ms_sum": cpu.iter().copied().sum::<Option<f64>>(),
        "redis_cpu_ms": (redis_pid != 0).then_some(redis_cpu).flatten(),
        "rss_before_kib": rss_before,
        "rss_live_kib": rss_live,
        "loadgen_peak_rss_kib": own_rss,
        "loadgen_cpu_ms": own_cpu,
    })
}
