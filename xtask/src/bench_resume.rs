//! `cargo xtask bench`'s resumption section: what history costs the live path, how fast a
//! resumed subscriber catches up, Redis Streams against pub/sub, and a rolling restart.
//! Every figure is measured in the same run as its baseline and counts delivered/expected.

use std::process::Command;

use crate::bench::{
    CONTENDERS, Contender, SCENARIOS, fmt_value, json_number, loss, redis_fanout, start_contender,
    start_redis,
};

/// The section's markdown, JSON object, summary lines and whether anything lost events.
pub(crate) struct Section {
    pub(crate) markdown: String,
    pub(crate) json: String,
    pub(crate) summary: Vec<String>,
    pub(crate) failed: bool,
}

fn tokio_demo() -> &'static Contender {
    &CONTENDERS[0] // subscope-tokio: the demo on tokio
}

/// Runs the load generator; its JSON line, or `None` (logged).
fn loadgen(bin: &str, what: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(format!("{bin}/loadgen"))
        .args(args)
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        eprintln!(
            "bench {what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    eprintln!("bench {what}: {line}");
    Some(line)
}

/// The wide fan-out against the demo with `extra` flags.
fn fanout(bin: &str, quick: bool, window: &str, extra: &[&str]) -> Option<String> {
    let (mut server, url) = start_contender(bin, tokio_demo(), extra)?;
    let params = if quick {
        SCENARIOS[0].quick
    } else {
        SCENARIOS[0].full
    };
    let pid = server.id().to_string();
    let mut args = vec![
        "--url",
        url.as_str(),
        "--pid",
        pid.as_str(),
        "--scenario",
        "fanout",
    ];
    args.extend_from_slice(params);
    args.extend_from_slice(&["--window", window]);
    let line = loadgen(bin, &format!("fanout {extra:?}"), &args);
    let _ = server.kill();
    let _ = server.wait();
    line
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_owned(),
    }
}

pub(crate) fn run(bin: &str, quick: bool, window: u64) -> Section {
    let w = window.to_string();
    let mut s = Section {
        markdown: String::from("\n## Resumable subscriptions (subscope-tokio, one run)\n"),
        json: String::from("{"),
        summary: Vec::new(),
        failed: false,
    };
    let record = |s: &mut Section, key: &str, line: &Option<String>| {
        if let Some(line) = line {
            if loss(line).is_some() {
                eprintln!("bench resume {key}: LOST events: {line}");
                s.failed = true;
            }
            if s.json.len() > 1 {
                s.json.push(',');
            }
            s.json.push_str(&format!("\"{key}\":{line}"));
        } else {
            s.failed = true;
        }
    };

    // 1. History on the live path: the same fan-out, history off then on.
    let off = fanout(bin, quick, &w, &[]);
    let on = fanout(bin, quick, &w, &["--history", "100000"]);
    record(&mut s, "history_off", &off);
    record(&mut s, "history_on", &on);
    let get = |l: &Option<String>, k: &str| l.as_deref().and_then(|l| json_number(l, k));
    s.markdown.push_str(&format!(
        "\n### What history costs the live path (wide fan-out, history off vs `--history 100000`)\n\n\
         | history | events/s | server CPU ms per 1,000 events | p99 (ms) | delivered / expected |\n| --- | ---: | ---: | ---: | ---: |\n\
         | off | {} | {} | {} | {} / {} |\n| on | {} | {} | {} | {} / {} |\n| on / off | {} | {} | | |\n",
        fmt_value(get(&off, "events_per_s")),
        fmt_value(get(&off, "cpu_ms_per_1000_events")),
        fmt_value(get(&off, "p99_ms")),
        fmt_value(get(&off, "delivered")),
        fmt_value(get(&off, "expected")),
        fmt_value(get(&on, "events_per_s")),
        fmt_value(get(&on, "cpu_ms_per_1000_events")),
        fmt_value(get(&on, "p99_ms")),
        fmt_value(get(&on, "delivered")),
        fmt_value(get(&on, "expected")),
        ratio(get(&on, "events_per_s"), get(&off, "events_per_s")),
        ratio(get(&on, "cpu_ms_per_1000_events"), get(&off, "cpu_ms_per_1000_events")),
    ));
    s.summary.push(format!(
        "history on/off: events/s {}, server CPU per 1,000 events {}",
        ratio(get(&on, "events_per_s"), get(&off, "events_per_s")),
        ratio(
            get(&on, "cpu_ms_per_1000_events"),
            get(&off, "cpu_ms_per_1000_events")
        ),
    ));

    // 2. Replay speed against the live rate, in one server.
    let messages = if quick { "5000" } else { "50000" };
    let replay = start_contender(bin, tokio_demo(), &["--history", "1000000"]).and_then(
        |(mut server, url)| {
            let line = loadgen(
                bin,
                "replay",
                &[
                    "--url",
                    &url,
                    "--scenario",
                    "replay",
                    "--messages",
                    messages,
                    "--window",
                    &w,
                ],
            );
            let _ = server.kill();
            let _ = server.wait();
            line
        },
    );
    record(&mut s, "replay", &replay);
    s.markdown.push_str(&format!(
        "\n### Catching up: a resumed subscriber's replay against the live rate ({messages} events)\n\n\
         | live events/s (one subscriber, {window} publishes in flight) | replay events/s (resumed after the first id) | replay / live | delivered / expected |\n| ---: | ---: | ---: | ---: |\n| {} | {} | {} | {} / {} |\n",
        fmt_value(get(&replay, "live_events_per_s")),
        fmt_value(get(&replay, "replay_events_per_s")),
        ratio(get(&replay, "replay_events_per_s"), get(&replay, "live_events_per_s")),
        fmt_value(get(&replay, "delivered")),
        fmt_value(get(&replay, "expected")),
    ));
    s.summary.push(format!(
        "replay / live rate: {}",
        ratio(
            get(&replay, "replay_events_per_s"),
            get(&replay, "live_events_per_s")
        )
    ));

    // 3. Redis Streams against Redis pub/sub, the same cross-process fan-out.
    let pubsub = redis_fanout(bin, quick, window, &[]);
    let streams = redis_fanout(bin, quick, window, &["--history", "100000"]);
    record(&mut s, "redis_pubsub", &pubsub);
    record(&mut s, "redis_streams", &streams);
    s.markdown.push_str(&format!(
        "\n### Redis Streams vs Redis pub/sub (subscribers on one process, publisher on another)\n\n\
         | mode | events/s | p50 (ms) | p99 (ms) | delivered / expected |\n| --- | ---: | ---: | ---: | ---: |\n\
         | pub/sub | {} | {} | {} | {} / {} |\n| Streams | {} | {} | {} | {} / {} |\n| Streams / pub/sub | {} | | | |\n",
        fmt_value(get(&pubsub, "events_per_s")),
        fmt_value(get(&pubsub, "p50_ms")),
        fmt_value(get(&pubsub, "p99_ms")),
        fmt_value(get(&pubsub, "delivered")),
        fmt_value(get(&pubsub, "expected")),
        fmt_value(get(&streams, "events_per_s")),
        fmt_value(get(&streams, "p50_ms")),
        fmt_value(get(&streams, "p99_ms")),
        fmt_value(get(&streams, "delivered")),
        fmt_value(get(&streams, "expected")),
        ratio(get(&streams, "events_per_s"), get(&pubsub, "events_per_s")),
    ));
    s.summary.push(format!(
        "Redis Streams / pub/sub events/s: {}",
        ratio(get(&streams, "events_per_s"), get(&pubsub, "events_per_s"))
    ));

    // 4. A rolling restart: A killed under a pipelined publisher, its clients resume on B.
    let rolling = (|| {
        let (mut redis, url) = start_redis()?;
        let extra = ["--redis", url.as_str(), "--history", "100000"];
        let (mut a, a_url) = start_contender(bin, tokio_demo(), &extra)?;
        let (mut b, b_url) = start_contender(bin, tokio_demo(), &extra)?;
        let pid = a.id().to_string();
        let (conns, subs, msgs) = if quick {
            ("10", "10", "400")
        } else {
            ("50", "20", "1000")
        };
        let line = loadgen(
            bin,
            "rolling",
            &[
                "--url",
                &a_url,
                "--publish-url",
                &b_url,
                "--kill-pid",
                &pid,
                "--scenario",
                "rolling",
                "--connections",
                conns,
                "--subs",
                subs,
                "--messages",
                msgs,
                "--window",
                &w,
            ],
        );
        for child in [&mut a, &mut b, &mut redis] {
            let _ = child.kill();
            let _ = child.wait();
        }
        line
    })();
    record(&mut s, "rolling_restart", &rolling);
    let exact = get(&rolling, "subscriptions_exact");
    let all = get(&rolling, "subscriptions");
    if exact.is_none() || exact != all || get(&rolling, "duplicates") != Some(0.0) {
        s.failed = true;
    }
    s.markdown.push_str(&format!(
        "\n### Rolling restart (two processes behind Redis Streams; A SIGKILLed half-way under {window} publishes in flight; its clients resume on B)\n\n\
         | subscriptions with every event once, in order | delivered / expected | duplicates |\n| ---: | ---: | ---: |\n| {} of {} | {} / {} ({}) | {} |\n",
        fmt_value(exact),
        fmt_value(all),
        fmt_value(get(&rolling, "delivered")),
        fmt_value(get(&rolling, "expected")),
        ratio(get(&rolling, "delivered"), get(&rolling, "expected")),
        fmt_value(get(&rolling, "duplicates")),
    ));
    s.summary.push(format!(
        "rolling restart: delivered/expected {}, {} of {} subscriptions exact",
        ratio(get(&rolling, "delivered"), get(&rolling, "expected")),
        fmt_value(exact),
        fmt_value(all)
    ));
    s.json.push('}');
    s
}
