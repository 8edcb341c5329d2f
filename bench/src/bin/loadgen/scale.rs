//! The scale scenarios (`cargo xtask bench --scale`): one event broadcast to C x S
//! subscribers of one topic, and a reconnect storm (WebSocket or SSE) followed by a reset of
//! every connection at once. Also what they share with the idle scenario: opening many
//! clients with a bounded number in flight, the process's open-file limit, the load
//! generator's own RSS and CPU, and the server's Prometheus gauges.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use serde_json::{Value, json};
use subscope_bench::port::Conn;

use super::{
    Args, DEADLINE, Observer, Ws, connect, cpu_ms, leading_index, percentile, reset, rss_kib, send,
    sse_subscribe, status_kib,
};

/// The longest a storm phase (everything live, or everything gone) may take.
const STORM_DEADLINE: Duration = Duration::from_secs(120);

/// Client sockets this process keeps below its open-file limit (the observer, the metrics
/// requests, the runtime's own descriptors).
pub(super) const FD_MARGIN: u64 = 500;

/// This process's open-file limit (soft), from `/proc/self/limits`.
pub(super) fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

/// Refuses (panics) to open `sockets` client sockets if they would not fit below the
/// open-file limit with [`FD_MARGIN`] to spare.
pub(super) fn check_fds(sockets: u64) {
    let limit = open_files_limit();
    assert!(
        sockets + FD_MARGIN <= limit,
        "{sockets} client sockets do not fit below the open-file limit {limit} (margin {FD_MARGIN})"
    );
}

/// The load generator's own peak RSS (VmHWM, KiB) and CPU time (user + system, ms) so far.
pub(super) fn own_usage() -> (u64, f64) {
    (
        status_kib("self", "VmHWM:"),
        cpu_ms(std::process::id()).unwrap_or(f64::NAN),
    )
}

/// A process's peak RSS (VmHWM, KiB).
fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(&pid.to_string(), "VmHWM:")
}

/// Panics in client tasks are counted as errors; only the first few are printed.
pub(super) fn quiet_panics() {
    static PRINTED: AtomicU64 = AtomicU64::new(0);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if PRINTED.fetch_add(1, Ordering::Relaxed) < 3 {
            default(info);
        }
    }));
}

/// Runs `open(i)` for `i in 0..n` as tasks, at most `parallel` at a time; returns what the
/// ones that succeeded opened and how many failed (panicked). `done` counts finished
/// tasks and `last_done` holds when the last one finished (ns since `epoch`).
pub(super) async fn open_bounded<T, F, Fut>(
    n: u64,
    parallel: u64,
    epoch: Instant,
    done: Arc<AtomicU64>,
    last_done: Arc<AtomicU64>,
    open: F,
) -> (Vec<T>, u64)
where
    T: Send + 'static,
    F: Fn(u64) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel.max(1) as usize));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("semaphore open");
        let (fut, done, last_done) = (open(i), Arc::clone(&done), Arc::clone(&last_done));
        set.spawn(async move {
            let t = fut.await;
            drop(permit);
            last_done.fetch_max(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
            done.fetch_add(1, Ordering::Relaxed);
            t
        });
    }
    let mut opened = Vec::with_capacity(n as usize);
    let mut errors = 0;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(t) => opened.push(t),
            Err(_) => errors += 1,
        }
    }
    (opened, errors)
}

/// The server's Prometheus gauge `subscope_NAME` from `GET /metrics` (a fresh connection).
async fn metric(url: &str, name: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = super::authority(url);
    let fetch = async {
        let mut tcp = subscope_bench::port::tcp_connect(&host).await.ok()?;
        let req = format!("GET /metrics HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        tcp.read_to_end(&mut body).await.ok()?;
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    let text = tokio::time::timeout(DEADLINE, fetch).await.ok()??;
    let prefix = format!("subscope_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

/// A WebSocket to `url` with `subs` subscriptions to `query` sent (ids `s0`, `s1`, ...).
pub(super) async fn subscribed(url: &str, subs: u64, query: &str) -> Ws {
    let mut ws = connect(url).await;
    for i in 0..subs {
        send(
            &mut ws,
            json!({"id": format!("s{i}"), "type": "subscribe", "payload": {"query": query}}),
        )
        .await;
    }
    ws
}

const BROADCAST_QUERY: &str = "subscription { messages(topic: \"broadcast\") }";

/// One event to C x S subscribers of one topic, `--events` times (after one warm-up event
/// that is not counted), one at a time: the time from sending the publish until the last
/// subscriber has the event, p50/p99, and delivered/expected.
pub(super) async fn broadcast(url: &str, a: &Args, pid: u32, graphql: bool) -> Value {
    let (c, s, events) = (
        a.num("--connections", 1000),
        a.num("--subs", 10),
        a.num("--events", 20),
    );
    let parallel = a.num("--parallel", 256);
    check_fds(c + 2);
    let mut obs = Observer::new(url).await;
    let base = obs.live_streams().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_kib(pid);
    // Per event (0 is the warm-up): deliveries, and when the last one came (ns since epoch).
    let total = events as usize + 1;
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let lasts: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let firsts: Arc<Vec<AtomicU64>> =
        Arc::new((0..total).map(|_| AtomicU64::new(u64::MAX)).collect());
    let epoch = Instant::now();
    let url_owned = url.to_owned();
    let (conns, errors) = open_bounded(c, parallel, epoch, Arc::default(), Arc::default(), |_| {
        let url = url_owned.clone();
        async move { subscribed(&url, s, BROADCAST_QUERY).await }
    })
    .await;
    let setup_s = epoch.elapsed().as_secs_f64();
    // Readers run until aborted (the set is dropped at the end) or their stream ends.
    let mut readers = tokio::task::JoinSet::new();
    for mut ws in conns {
        let (counts, lasts, firsts) =
            (Arc::clone(&counts), Arc::clone(&lasts), Arc::clone(&firsts));
        readers.spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let Some(rest) = t.as_str().split("\"messages\":\"").nth(1) else {
                    continue;
                };
                if let Some(i) = leading_index(rest).filter(|i| *i < counts.len()) {
                    let now = epoch.elapsed().as_nanos() as u64;
                    counts[i].fetch_add(1, Ordering::Relaxed);
                    lasts[i].fetch_max(now, Ordering::Relaxed);
                    firsts[i].fetch_min(now, Ordering::Relaxed);
                }
            }
        });
    }
    let expected_each = c.saturating_sub(errors) * s;
    obs.wait_live(graphql, base, expected_each).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_live = rss_kib(pid);
    let mut publisher = connect(url).await;
    let cpu_before = cpu_ms(pid);
    let (mut times, mut first_times) = (Vec::new(), Vec::new());
    let mut delivered = 0;
    for i in 0..total {
        let sent_at = epoch.elapsed().as_nanos() as u64;
        send(
            &mut publisher,
            json!({"id": format!("p{i}"), "type": "subscribe", "payload": {
                "query": "mutation($m: String!) { publish(topic: \"broadcast\", message: $m) }",
                "variables": {"m": format!("{i} broadcast")},
            }}),
        )
        .await;
        while super::recv(&mut publisher).await["type"] != "complete" {}
        // Until every subscriber has it, nothing arrived for 3 s, or the deadline.
        let end = Instant::now() + DEADLINE;
        let (mut seen, mut quiet_since) = (0, Instant::now());
        while counts[i].load(Ordering::Relaxed) < expected_each && Instant::now() < end {
            let now = counts[i].load(Ordering::Relaxed);
            if now != seen {
                (seen, quiet_since) = (now, Instant::now());
            } else if quiet_since.elapsed() > Duration::from_secs(3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if i == 0 {
            continue;
        }
        let got = counts[i].load(Ordering::Relaxed);
        delivered += got;
        if got == expected_each {
            let last = lasts[i].load(Ordering::Relaxed);
            times.push(last.saturating_sub(sent_at) as f64 / 1e6);
            let first = firsts[i].load(Ordering::Relaxed);
            first_times.push(first.saturating_sub(sent_at) as f64 / 1e6);
        }
    }
    let cpu = cpu_before.zip(cpu_ms(pid)).map(|(b, a)| a - b);
    drop(readers);
    times.sort_by(f64::total_cmp);
    first_times.sort_by(f64::total_cmp);
    let expected = expected_each * events;
    let (own_rss, own_cpu) = own_usage();
    let complete = delivered == expected && errors == 0;
    json!({
        "connections": c,
        "subs": s,
        "subscribers": c * s,
        "events": events,
        "errors": errors,
        "setup_s": setup_s,
        // No latency for a run that lost events: it is reported as lost.
        "p50_ms": complete.then(|| percentile(&times, 0.50)),
        "p99_ms": complete.then(|| percentile(&times, 0.99)),
        "max_ms": complete.then(|| times.last().copied()).flatten(),
        // From the publish until the first subscriber had it.
        "first_p50_ms": complete.then(|| percentile(&first_times, 0.50)),
        "delivered": delivered,
        "expected": expected,
        "lost": expected.saturating_sub(delivered),
        "server_cpu_ms": cpu,
        "rss_before_kib": rss_before,
        "rss_live_kib": rss_live,
        "loadgen_peak_rss_kib": own_rss,
        "loadgen_cpu_ms": own_cpu,
    })
}

/// One storm client: a WebSocket (initialised, its subscriptions sent) or an SSE stream.
enum Client {
    Ws(Box<Ws>),
    Sse(Conn),
}

impl Client {
    /// Closes with SO_LINGER 0: the server sees a TCP reset.
    fn reset(self) {
        match self {
            Self::Ws(ws) => reset(*ws),
            Self::Sse(conn) => {
                let _ = socket2::SockRef::from(conn.tcp()).set_linger(Some(Duration::ZERO));
                drop(conn);
            }
        }
    }
}

/// One timeline row: ms since the round started, phase, live streams (beyond the
/// observer's base), server RSS (KiB).
type Sample = (f64, &'static str, u64, u64);

/// A reconnect storm, `--rounds` times: `--connections` clients connect, initialise and
/// subscribe (`--subs` each over WebSocket, one SSE stream each with `--transport sse`),
/// `--parallel` handshakes in flight; then every connection is reset at once. Times until
/// everything is live and until nothing is, the server's RSS, errors; with
/// `--timeline PATH`, a CSV of the server's live streams and RSS over time.
pub(super) async fn storm(url: &str, a: &Args, pid: u32) -> Value {
    let transport = a.get("--transport", "ws");
    let sse = transport != "ws";
    let n = a.num("--connections", 1000);
    let s = if sse { 1 } else { a.num("--subs", 5) };
    let parallel = a.num("--parallel", 1000);
    let rounds = a.num("--rounds", 2).max(1);
    check_fds(n + 2);
    let mut obs = Observer::new(url).await;
    let base = obs.live_streams().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_baseline = rss_kib(pid);
    let cpu_before = cpu_ms(pid);
    let target = n * s;
    let mut out = json!({
        "transport": transport,
        "connections": n,
        "subs": s,
        "parallel": parallel,
        "target_live": target,
        "rss_baseline_kib": rss_baseline,
    });
    let mut timeline: Vec<(u64, Sample)> = Vec::new();
    for round in 1..=rounds {
        let suffix = if round == 1 {
            String::new()
        } else {
            format!("_{round}")
        };
        let epoch = Instant::now();
        let (done, last_done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let url_owned = url.to_owned();
        let opening = tokio::spawn(open_bounded(
            n,
            parallel,
            epoch,
            Arc::clone(&done),
            Arc::clone(&last_done),
            move |_| {
                let url = url_owned.clone();
                async move {
                    if sse {
                        return Client::Sse(sse_subscribe(&url, super::IDLE_QUERY).await.0);
                    }
                    let mut ws = connect(&url).await;
                    for i in 0..s {
                        send(
                            &mut ws,
                            json!({"id": format!("s{i}"), "type": "subscribe",
                                   "payload": {"query": super::IDLE_QUERY}}),
                        )
                        .await;
                    }
                    Client::Ws(Box::new(ws))
                }
            },
        ));
        // Sample until everything is live, or every client finished and the count stood
        // still for 3 s (some failed), or the deadline.
        let (mut live_at, mut peak) = (None, 0);
        let (mut last_live, mut still_since) = (u64::MAX, Instant::now());
        while epoch.elapsed() < STORM_DEADLINE {
            let live = obs.live_streams().await.saturating_sub(base);
            let rss = rss_kib(pid);
            peak = peak.max(rss);
            timeline.push((
                round,
                (epoch.elapsed().as_secs_f64() * 1e3, "up", live, rss),
            ));
            if live >= target {
                live_at = Some(epoch.elapsed().as_secs_f64());
                break;
            }
            if live != last_live {
                (last_live, still_since) = (live, Instant::now());
            } else if done.load(Ordering::Relaxed) == n
                && still_since.elapsed() > Duration::from_secs(3)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (clients, errors) = match tokio::time::timeout(STORM_DEADLINE, opening).await {
            Ok(Ok(r)) => r,
            _ => (Vec::new(), n),
        };
        let acked_at = last_done.load(Ordering::Relaxed) as f64 / 1e9;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_live = rss_kib(pid);
        let peak = peak.max(peak_rss_kib(pid)).max(rss_live);
        // Every connection reset at once.
        let reset_at = Instant::now();
        let since_epoch = |t: Instant| t.duration_since(epoch).as_secs_f64() * 1e3;
        for client in clients {
            client.reset();
        }
        let reset_s = reset_at.elapsed().as_secs_f64();
        let mut zero_at = None;
        while reset_at.elapsed() < STORM_DEADLINE {
            let live = obs.live_streams().await.saturating_sub(base);
            let rss = rss_kib(pid);
            timeline.push((round, (since_epoch(Instant::now()), "down", live, rss)));
            if live == 0 {
                zero_at = Some(reset_at.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_after = rss_kib(pid);
        timeline.push((round, (since_epoch(Instant::now()), "after", 0, rss_after)));
        let m = out.as_object_mut().expect("object");
        m.insert(format!("live_s{suffix}"), json!(live_at));
        m.insert(format!("acked_s{suffix}"), json!(acked_at));
        m.insert(format!("errors{suffix}"), json!(errors));
        m.insert(format!("peak_rss_kib{suffix}"), json!(peak));
        m.insert(format!("rss_live_kib{suffix}"), json!(rss_live));
        m.insert(format!("reset_loop_s{suffix}"), json!(reset_s));
        m.insert(format!("drain_s{suffix}"), json!(zero_at));
        m.insert(format!("rss_after_kib{suffix}"), json!(rss_after));
    }
    let cpu = cpu_before.zip(cpu_ms(pid)).map(|(b, a)| a - b);
    let (own_rss, own_cpu) = own_usage();
    let m = out.as_object_mut().expect("object");
    m.insert("server_cpu_ms".into(), json!(cpu));
    m.insert(
        "live_after".into(),
        json!(obs.live_streams().await.saturating_sub(base)),
    );
    // The library's gauges (the observer's own connection is one of them).
    for name in ["connections", "operations", "subscriptions"] {
        m.insert(
            format!("metrics_{name}_after"),
            json!(metric(url, name).await),
        );
    }
    m.insert("loadgen_peak_rss_kib".into(), json!(own_rss));
    m.insert("loadgen_cpu_ms".into(), json!(own_cpu));
    if let Some(path) = a.0.get("--timeline") {
        let mut csv = String::from("round,ms,phase,live,rss_kib\n");
        for (round, (ms, phase, live, rss)) in &timeline {
            csv.push_str(&format!("{round},{ms:.1},{phase},{live},{rss}\n"));
        }
        let _ = std::fs::write(path, csv);
    }
    out
}
