//! `cargo xtask bench --scale`, section "Redis fleet": 4 demo processes behind one Redis,
//! 25,000 subscribers each, and a pipelined publisher, against one process holding all
//! 100,000 subscribers with the same publisher (issue 24, item 4). Run only this section
//! with `cargo xtask bench --scale --only fleet`.

use std::process::{Child, Command};
use std::time::Instant;

use crate::bench::{fmt_value, json_number, start_redis};
use crate::bench_scale::{Demo, count, count_of, kib};

/// Connections the load generator opens, and subscriptions on each: 100,000 subscribers.
const CONNECTIONS: u64 = 10_000;
const SUBS: u64 = 10;

/// Events published per run, and how many `publish` mutations are outstanding at once.
/// The events stay below the demo's default `--subscriber-buffer` (1,024 queued events per
/// subscriber), so a subscriber can never overflow however far behind the reader falls: a
/// loss here is a loss in the path, not the overflow policy at work.
const EVENTS: u64 = 100;
const IN_FLIGHT: u64 = 64;

/// Events then published one at a time (the latency with nothing queued).
const PACED: u64 = 20;

/// The fleet's size.
const FLEET: usize = 4;

/// Connections opened at a time.
const OPEN_PARALLEL: &str = "128";

/// A child process killed (and reaped) however the section ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A JSON array of numbers under `key` in a load-generator line (`null` entries are
/// `None`).
fn json_array(line: &str, key: &str) -> Vec<Option<f64>> {
    line.split(&format!("\"{key}\":["))
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .map(|items| {
            items
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// One run: `processes` demos (with `--redis URL` when given), the load generator's
/// fleet scenario against them, the publisher on the first. Its JSON line, or why not.
fn run(bin: &str, processes: usize, redis: Option<(&str, u32)>) -> Result<String, String> {
    let extra: Vec<&str> = redis.map_or(Vec::new(), |(url, _)| vec!["--redis", url]);
    // Dropping the demos (on every path out of here) kills them.
    let demos: Vec<Demo> = (0..processes)
        .map(|_| Demo::start(bin, "tokio", &extra).ok_or("a demo did not start"))
        .collect::<Result<_, _>>()?;
    let urls: Vec<&str> = demos.iter().map(|d| d.url.as_str()).collect();
    let pids: Vec<String> = demos.iter().map(|d| d.child.id().to_string()).collect();
    let out = Command::new(format!("{bin}/loadgen"))
        .args(["--scenario", "fleet", "--urls", &urls.join(",")])
        .args(["--pids", &pids.join(","), "--publish-url", urls[0]])
        .args(["--redis-pid", &redis.map_or(0, |r| r.1).to_string()])
        .args(["--connections", &CONNECTIONS.to_string()])
        .args(["--subs", &SUBS.to_string(), "--events", &EVENTS.to_string()])
        .args(["--in-flight", &IN_FLIGHT.to_string()])
        .args(["--paced", &PACED.to_string()])
        .args(["--parallel", OPEN_PARALLEL])
        .args(["--spread", "true", "--small-buffers", "true"])
        .output();
    crate::bench_scale::loadgen_line(out)
}

/// The section: its Markdown, the load generator's lines (for the "what the load
/// generator used" table) and whether a run failed or lost events.
pub(crate) fn fleet(bin: &str) -> (String, Vec<(String, String)>, bool) {
    let started = Instant::now();
    let subscribers = CONNECTIONS * SUBS;
    let mut md = format!(
        "\n## Redis fleet: {FLEET} processes behind one Redis against one process\n\n\
         One redis-server (no persistence) and tokio demo processes with `--redis URL` \
         (pub/sub: no `--history`). The load generator opens {} WebSocket connections × \
         {SUBS} subscriptions to `messages(topic: \"fleet\")`, connection i to process \
         i mod P, so each of the {FLEET} fleet processes holds {} subscribers; the single \
         process holds all {}. One publisher connection on the first process keeps \
         {IN_FLIGHT} `publish` mutations outstanding over {EVENTS} events (after warm-up \
         events until one reached every subscriber: a process `SUBSCRIBE`s its Redis channel \
         asynchronously). The single process also runs with `--redis`, so the publish path \
         (mutation → Redis `PUBLISH` → the process's pub/sub connection → its subscribers) is \
         the same; the last row is it without Redis (topics in memory).\n\n\
         **Figures.** events/s and deliveries/s: over the span from sending the first \
         publish until the last delivery. Per event: from sending its publish until its \
         last subscriber had it (p50, p99). Per delivery: from sending the publish until \
         one subscriber had it, over all {} deliveries (100 µs buckets). Publishing: until \
         the last `publish` completed. **The pipelined publisher outruns delivery**: with \
         Redis a `publish` completes once Redis has the event, so all {EVENTS} go out at \
         once and its latency figures are mostly the backlog of {} deliveries draining; \
         the paced columns are {PACED} further events published one at a time, each once \
         the one before reached every subscriber: the latency with nothing queued. Server \
         CPU: user + system of every demo process over the pipelined publishing, summed; \
         Redis's beside it. \
         RSS: each demo with every subscriber live. A run with any loss shows no \
         throughput or latency, only the loss.\n\n\
         **This machine cannot show a fleet scaling.** The {FLEET} processes, Redis and the \
         load generator (one thread reading all {} sockets) share {} cores: the fleet row \
         shows that delivery through Redis across processes is complete and what it costs, \
         not what {FLEET} machines would do.\n\n\
         | run | processes | subscribers per process | events | in flight | publishing | \
         events/s | deliveries/s | per event p50 | per event p99 | per delivery p50 | \
         per delivery p99 | delivered / expected | paced p50 | paced p99 | server CPU (sum) | \
         Redis CPU | RSS per process | setup |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | \
         ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        count(CONNECTIONS as f64),
        count((subscribers / FLEET as u64) as f64),
        count(subscribers as f64),
        count((subscribers * EVENTS) as f64),
        count((subscribers * EVENTS) as f64),
        count(CONNECTIONS as f64),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let Some((redis, url)) = start_redis() else {
        md.push_str("\nskipped: redis-server not available\n");
        eprintln!("scale fleet: skipped, redis-server not available");
        return (md, Vec::new(), false);
    };
    let redis = Killed(redis);
    let redis_arg = Some((url.as_str(), redis.0.id()));
    let mut rows = Vec::new();
    let mut failed = false;
    let mut lines: Vec<(&str, Option<String>)> = Vec::new();
    for (label, processes, with_redis) in [
        ("fleet, Redis", FLEET, redis_arg),
        ("single, Redis", 1, redis_arg),
        ("single, in memory", 1, None),
    ] {
        let t = Instant::now();
        match run(bin, processes, with_redis) {
            Ok(line) => {
                eprintln!(
                    "scale fleet {label} ({:.0} s): {line}",
                    t.elapsed().as_secs_f64()
                );
                let (delivered, expected) = (
                    json_number(&line, "delivered").unwrap_or(0.0),
                    json_number(&line, "expected").unwrap_or(f64::NAN),
                );
                let paced_ok = json_number(&line, "paced_delivered")
                    == json_number(&line, "paced_expected")
                    && json_number(&line, "paced_failed") == Some(0.0);
                let ok = delivered == expected
                    && json_number(&line, "errors") == Some(0.0)
                    && json_number(&line, "publish_failed") == Some(0.0);
                failed |= !paced_ok;
                failed |= !ok;
                let ms = |key: &str| {
                    json_number(&line, key).map_or("n/a".to_owned(), |v| format!("{v:.1} ms"))
                };
                let rss: Vec<String> = json_array(&line, "rss_live_kib")
                    .into_iter()
                    .map(kib)
                    .collect();
                let cpu_s = |key: &str| {
                    json_number(&line, key)
                        .map_or("n/a".to_owned(), |v| format!("{:.1} s", v / 1e3))
                };
                md.push_str(&format!(
                    "| {label} | {processes} | {} | {EVENTS} | {IN_FLIGHT} | {} | {} | {} | {} | {} | {} | {} | {} / {} = {:.4}{} | {} | {} | {} | {} | {} | {} s |\n",
                    count((subscribers / processes as u64) as f64),
                    json_number(&line, "publish_s")
                        .map_or("n/a".to_owned(), |v| format!("{v:.2} s")),
                    fmt_value(json_number(&line, "events_per_s")),
                    count_of(json_number(&line, "deliveries_per_s")),
                    ms("event_p50_ms"),
                    ms("event_p99_ms"),
                    ms("delivery_p50_ms"),
                    ms("delivery_p99_ms"),
                    count(delivered),
                    count(expected),
                    delivered / expected,
                    if ok {
                        String::new()
                    } else {
                        format!(" (**lost {}**)", count_of(json_number(&line, "lost")))
                    },
                    if paced_ok {
                        ms("paced_p50_ms")
                    } else {
                        format!(
                            "**lost {}**",
                            count(
                                json_number(&line, "paced_expected").unwrap_or(f64::NAN)
                                    - json_number(&line, "paced_delivered").unwrap_or(0.0)
                            )
                        )
                    },
                    ms("paced_p99_ms"),
                    cpu_s("server_cpu_ms_sum"),
                    if with_redis.is_some() {
                        // Tens of ms: two decimals.
                        json_number(&line, "redis_cpu_ms")
                            .map_or("n/a".to_owned(), |v| format!("{:.2} s", v / 1e3))
                    } else {
                        "–".to_owned()
                    },
                    rss.join(", "),
                    fmt_value(json_number(&line, "setup_s")),
                ));
                rows.push((format!("Redis fleet, {label}"), line.clone()));
                lines.push((label, Some(line)));
            }
            Err(e) => {
                eprintln!("scale fleet {label} failed: {e}");
                md.push_str(&format!(
                    "| {label} | {processes} | failed: {e} | | | | | | | | | | | | | | | | |\n"
                ));
                failed = true;
                lines.push((label, None));
            }
        }
    }
    drop(redis);
    let get = |label: &str, key: &str| {
        lines
            .iter()
            .find(|l| l.0 == label)
            .and_then(|l| l.1.as_deref())
            .and_then(|l| json_number(l, key))
    };
    let ratio = |key: &str| match (get("fleet, Redis", key), get("single, Redis", key)) {
        (Some(f), Some(s)) if s > 0.0 => format!("{:.2}", f / s),
        _ => "n/a".to_owned(),
    };
    md.push_str(&format!(
        "\nFleet / single (both through Redis): events/s × **{}**, per-event p99 × **{}**, \
         per-delivery p99 × **{}**, paced p99 × **{}**, server CPU × {}. The smallest `publish` result (Redis \
         processes an event reached): fleet {}, single {}.\n\nSection wall time: {:.0} s.\n",
        ratio("events_per_s"),
        ratio("event_p99_ms"),
        ratio("delivery_p99_ms"),
        ratio("paced_p99_ms"),
        ratio("server_cpu_ms_sum"),
        count_of(get("fleet, Redis", "publish_reached_min")),
        count_of(get("single, Redis", "publish_reached_min")),
        started.elapsed().as_secs_f64(),
    ));
    (md, rows, failed)
}
