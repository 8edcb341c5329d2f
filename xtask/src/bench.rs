//! `cargo xtask bench`: contenders under one load generator, as ratios and charts.

use std::env;
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::interop::spawn_server;

/// A benchmark contender: name, binary, arguments, whether it runs the GraphQL schema.
pub(crate) struct Contender {
    name: &'static str,
    binary: &'static str,
    args: &'static [&'static str],
    graphql: bool,
    /// How subscribers connect: `ws`, or (only in the `-sse` scenarios) `sse` (one
    /// distinct-connection stream each) or `sse-single` (single-connection streams with
    /// several subscriptions each).
    transport: &'static str,
    /// The scenarios it runs in: `ws` (the plain ones), `sse` (`-sse`) or `deflate`
    /// (`-deflate`); subscope-tokio, the baseline, runs in every one.
    group: &'static str,
}

pub(crate) const CONTENDERS: &[Contender] = &[
    Contender {
        name: "subscope-tokio",
        binary: "demo",
        args: &["--runtime", "tokio"],
        graphql: true,
        transport: "ws",
        group: "ws",
    },
    Contender {
        name: "subscope-tokio-share",
        binary: "demo",
        args: &["--runtime", "tokio", "--share"],
        graphql: true,
        transport: "ws",
        group: "ws",
    },
    Contender {
        name: "subscope-tokio-no-doc-cache",
        binary: "demo",
        args: &["--runtime", "tokio", "--document-cache", "0"],
        graphql: true,
        transport: "ws",
        group: "ws",
    },
    Contender {
        name: "subscope-smol",
        binary: "demo",
        args: &["--runtime", "smol"],
        graphql: true,
        transport: "ws",
        group: "ws",
    },
    Contender {
        name: "subscope-async-std",
        binary: "demo",
        args: &["--runtime", "async-std"],
        graphql: true,
        transport: "ws",
        group: "ws",
    },
    Contender {
        name: "async-graphql",
        binary: "bench-server",
        args: &["--kind", "async-graphql"],
        graphql: true,
        transport: "ws",
        group: "ws",
    },
    Contender {
        name: "limit",
        binary: "bench-server",
        args: &["--kind", "limit"],
        graphql: false,
        transport: "ws",
        group: "ws",
    },
    Contender {
        name: "subscope-tokio-sse",
        binary: "demo",
        args: &["--runtime", "tokio"],
        graphql: true,
        transport: "sse",
        group: "sse",
    },
    Contender {
        name: "subscope-tokio-sse-single",
        binary: "demo",
        args: &["--runtime", "tokio"],
        graphql: true,
        transport: "sse-single",
        group: "sse",
    },
    Contender {
        name: "subscope-smol-sse",
        binary: "demo",
        args: &["--runtime", "smol"],
        graphql: true,
        transport: "sse",
        group: "sse",
    },
    Contender {
        name: "subscope-async-std-sse",
        binary: "demo",
        args: &["--runtime", "async-std"],
        graphql: true,
        transport: "sse",
        group: "sse",
    },
    Contender {
        name: "subscope-tokio-deflate",
        binary: "demo",
        args: &["--runtime", "tokio", "--deflate"],
        graphql: true,
        transport: "ws",
        group: "deflate",
    },
    Contender {
        name: "deflate-l6-w15-m8",
        binary: "demo",
        args: &[
            "--runtime",
            "tokio",
            "--deflate",
            "--deflate-level",
            "6",
            "--deflate-window-bits",
            "15",
            "--deflate-mem-level",
            "8",
        ],
        graphql: true,
        transport: "ws",
        group: "deflate",
    },
    Contender {
        name: "deflate-stream",
        binary: "demo",
        args: &[
            "--runtime",
            "tokio",
            "--deflate",
            "--deflate-context",
            "stream",
        ],
        graphql: true,
        transport: "ws",
        group: "deflate",
    },
    Contender {
        name: "deflate-recent-1k",
        binary: "demo",
        args: &[
            "--runtime",
            "tokio",
            "--deflate",
            "--deflate-context",
            "1024",
        ],
        graphql: true,
        transport: "ws",
        group: "deflate",
    },
    Contender {
        name: "deflate-no-takeover",
        binary: "demo",
        args: &[
            "--runtime",
            "tokio",
            "--deflate",
            "--deflate-no-context-takeover",
        ],
        graphql: true,
        transport: "ws",
        group: "deflate",
    },
    Contender {
        name: "subscope-smol-deflate",
        binary: "demo",
        args: &["--runtime", "smol", "--deflate"],
        graphql: true,
        transport: "ws",
        group: "deflate",
    },
    Contender {
        name: "subscope-async-std-deflate",
        binary: "demo",
        args: &["--runtime", "async-std", "--deflate"],
        graphql: true,
        transport: "ws",
        group: "deflate",
    },
    Contender {
        name: "subscope-tokio-wss",
        binary: "demo",
        args: &[
            "--runtime",
            "tokio",
            "--tls-cert",
            TEST_CERT,
            "--tls-key",
            TEST_KEY,
        ],
        graphql: true,
        transport: "ws",
        group: "port",
    },
    Contender {
        name: "subscope-smol-wss",
        binary: "demo",
        args: &[
            "--runtime",
            "smol",
            "--tls-cert",
            TEST_CERT,
            "--tls-key",
            TEST_KEY,
        ],
        graphql: true,
        transport: "ws",
        group: "port",
    },
    Contender {
        name: "subscope-async-std-wss",
        binary: "demo",
        args: &[
            "--runtime",
            "async-std",
            "--tls-cert",
            TEST_CERT,
            "--tls-key",
            TEST_KEY,
        ],
        graphql: true,
        transport: "ws",
        group: "port",
    },
    Contender {
        name: "subscope-tokio-h2-sse",
        binary: "demo",
        args: &[
            "--runtime",
            "tokio",
            "--tls-cert",
            TEST_CERT,
            "--tls-key",
            TEST_KEY,
        ],
        graphql: true,
        transport: "h2-sse",
        group: "port",
    },
    Contender {
        name: "subscope-smol-h2-sse",
        binary: "demo",
        args: &[
            "--runtime",
            "smol",
            "--tls-cert",
            TEST_CERT,
            "--tls-key",
            TEST_KEY,
        ],
        graphql: true,
        transport: "h2-sse",
        group: "port",
    },
    Contender {
        name: "subscope-async-std-h2-sse",
        binary: "demo",
        args: &[
            "--runtime",
            "async-std",
            "--tls-cert",
            TEST_CERT,
            "--tls-key",
            TEST_KEY,
        ],
        graphql: true,
        transport: "h2-sse",
        group: "port",
    },
];

/// The test certificate the TLS contenders serve (self-signed; the load generator trusts it).
pub(crate) const TEST_CERT: &str = "tests/certs/localhost-cert.pem";
const TEST_KEY: &str = "tests/certs/localhost-key.pem";

/// (scenario, loadgen arguments quick, full, metrics shown: (json key, label, higher is better)).
type Metric = (&'static str, &'static str, bool);
pub(crate) struct Scenario {
    name: &'static str,
    /// Which contenders run it ([`Contender::group`]).
    group: &'static str,
    title: &'static str,
    pub(crate) quick: &'static [&'static str],
    pub(crate) full: &'static [&'static str],
    metrics: &'static [Metric],
}

/// What a fan-out scenario shows: throughput, latency, server CPU per event, no-loss count.
const FANOUT_METRICS: &[Metric] = &[
    ("events_per_s", "events/s", true),
    ("p50_ms", "p50 latency (ms)", false),
    ("p99_ms", "p99 latency (ms)", false),
    (
        "cpu_ms_per_1000_events",
        "server CPU ms per 1,000 events",
        false,
    ),
    ("delivered", "delivered", true),
    ("expected", "expected", true),
];

/// What the compressed fan-out shows: the fan-out's figures and the bytes on the wire.
const DEFLATE_FANOUT_METRICS: &[Metric] = &[
    ("events_per_s", "events/s", true),
    ("p99_ms", "p99 latency (ms)", false),
    (
        "cpu_ms_per_1000_events",
        "server CPU ms per 1,000 events",
        false,
    ),
    ("wire_bytes_per_event", "bytes on the wire per event", false),
    ("delivered", "delivered", true),
    ("expected", "expected", true),
];

/// What the compressed idle scenario shows: idle and active RSS per connection.
const DEFLATE_IDLE_METRICS: &[Metric] = &[
    (
        "kib_per_connection",
        "RSS KiB per idle connection (1 subscription)",
        false,
    ),
    (
        "kib_per_active_connection",
        "RSS KiB per active connection (after 3 events)",
        false,
    ),
];

/// What an idle scenario shows: server RSS per connection and per extra subscription.
const IDLE_METRICS: &[Metric] = &[
    (
        "kib_per_connection",
        "RSS KiB per connection (with 1 subscription)",
        false,
    ),
    (
        "kib_per_subscription",
        "RSS KiB per extra subscription",
        false,
    ),
];

pub(crate) const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "fanout",
        group: "ws",
        title: "Wide fan-out: C connections x S subscriptions to messages(topic), P messages published with W mutations in flight (1,000 identical subscribers in the full run)",
        quick: &["--connections", "10", "--subs", "10", "--messages", "300"],
        full: &["--connections", "100", "--subs", "10", "--messages", "200"],
        metrics: FANOUT_METRICS,
    },
    Scenario {
        name: "fanout100",
        group: "ws",
        title: "Fan-out to 100 identical subscribers (10 x 10)",
        quick: &["--connections", "10", "--subs", "10", "--messages", "500"],
        full: &["--connections", "10", "--subs", "10", "--messages", "2000"],
        metrics: FANOUT_METRICS,
    },
    Scenario {
        name: "fanout10",
        group: "ws",
        title: "Fan-out to 10 identical subscribers (10 x 1)",
        quick: &["--connections", "10", "--subs", "1", "--messages", "2000"],
        full: &["--connections", "10", "--subs", "1", "--messages", "10000"],
        metrics: FANOUT_METRICS,
    },
    Scenario {
        name: "deep",
        group: "ws",
        title: "Deep: 1 subscriber, P messages published with W mutations in flight",
        quick: &["--connections", "1", "--subs", "1", "--messages", "5000"],
        full: &["--connections", "1", "--subs", "1", "--messages", "20000"],
        metrics: &[
            ("events_per_s", "events/s", true),
            ("p50_ms", "p50 latency (ms)", false),
            ("p99_ms", "p99 latency (ms)", false),
            ("delivered", "delivered", true),
            ("expected", "expected", true),
        ],
    },
    Scenario {
        name: "idle",
        group: "ws",
        title: "Many idle subscriptions: N connections, 1 then 5 quiet subscriptions each",
        quick: &["--connections", "200"],
        full: &["--connections", "1000"],
        metrics: IDLE_METRICS,
    },
    Scenario {
        name: "fanout-sse",
        group: "sse",
        title: "Wide fan-out over SSE beside WebSocket: C x S subscribers to messages(topic), P messages published with W mutations in flight (-sse: one distinct-connection stream per subscriber; -sse-single: C single-connection streams of S subscriptions, WebSocket's topology)",
        quick: &["--connections", "10", "--subs", "10", "--messages", "300"],
        full: &["--connections", "100", "--subs", "10", "--messages", "200"],
        metrics: FANOUT_METRICS,
    },
    Scenario {
        name: "idle-sse",
        group: "sse",
        title: "Idle subscriptions over SSE beside WebSocket: N streams (single-connection mode), 1 then 5 quiet subscriptions each",
        quick: &["--connections", "200"],
        full: &["--connections", "1000"],
        metrics: IDLE_METRICS,
    },
    Scenario {
        name: "fanout-deflate",
        group: "deflate",
        title: "Wide fan-out with permessage-deflate offered by every client: C x S subscribers to messages(topic), P messages published with W mutations in flight (subscope-tokio: deflate off, the baseline)",
        quick: &["--connections", "10", "--subs", "10", "--messages", "300"],
        full: &["--connections", "100", "--subs", "10", "--messages", "200"],
        metrics: DEFLATE_FANOUT_METRICS,
    },
    Scenario {
        name: "fanout-deflate-1k",
        group: "deflate",
        title: "Wide fan-out of 1 KiB record-like events with permessage-deflate offered by every client (fields repeat, values change; subscope-tokio: deflate off, the baseline)",
        quick: &[
            "--connections",
            "10",
            "--subs",
            "10",
            "--messages",
            "200",
            "--message-bytes",
            "1024",
        ],
        full: &[
            "--connections",
            "100",
            "--subs",
            "10",
            "--messages",
            "100",
            "--message-bytes",
            "1024",
        ],
        metrics: DEFLATE_FANOUT_METRICS,
    },
    Scenario {
        name: "idle-deflate",
        group: "deflate",
        title: "Idle, then active, compressed connections: N connections with 1 quiet subscription, then 3 events to each (subscope-tokio: deflate off, the baseline)",
        quick: &["--connections", "200"],
        full: &["--connections", "1000"],
        metrics: DEFLATE_IDLE_METRICS,
    },
    Scenario {
        name: "fanout-port",
        group: "port",
        title: "Wide fan-out over TLS and HTTP/2 beside plain WebSocket: C x S subscribers to messages(topic), P messages published with W mutations in flight (-wss: WebSocket over TLS; -h2-sse: S SSE streams on each of C HTTP/2 connections over TLS)",
        quick: &["--connections", "10", "--subs", "10", "--messages", "300"],
        full: &["--connections", "100", "--subs", "10", "--messages", "200"],
        metrics: FANOUT_METRICS,
    },
    Scenario {
        name: "idle-port",
        group: "port",
        title: "Idle subscriptions over TLS and HTTP/2 beside plain WebSocket: N connections, 1 then 5 quiet subscriptions each (-h2-sse: each subscription its own HTTP/2 stream, so the second figure is per HTTP/2 stream)",
        quick: &["--connections", "200"],
        full: &["--connections", "1000"],
        metrics: IDLE_METRICS,
    },
    Scenario {
        name: "churn",
        group: "ws",
        title: "Churn: connect, subscribe, TCP reset, as fast as possible",
        quick: &["--seconds", "3"],
        full: &["--seconds", "15"],
        metrics: &[
            ("cycles_per_s", "cycles/s", true),
            ("live_after", "live streams after", false),
            ("rss_growth_kib", "RSS growth (KiB)", false),
        ],
    },
    Scenario {
        name: "cleanup",
        group: "ws",
        title: "Cleanup latency: client TCP reset to the stream dropped on the server",
        quick: &["--samples", "20"],
        full: &["--samples", "100"],
        metrics: &[("p50_ms", "p50 (ms)", false), ("p99_ms", "p99 (ms)", false)],
    },
];

/// A number from a flat JSON object line (`None` for null or missing).
pub(crate) fn json_number(line: &str, key: &str) -> Option<f64> {
    let rest = line.split(&format!("\"{key}\":")).nth(1)?;
    let value: String = rest
        .chars()
        .take_while(|c| !matches!(c, ',' | '}'))
        .collect();
    value.trim().parse().ok()
}

/// Starts a contender (with `extra` arguments) and returns it with its URL.
pub(crate) fn start_contender(
    dir: &str,
    c: &Contender,
    extra: &[&str],
) -> Option<(std::process::Child, String)> {
    let mut args = vec!["--addr", "127.0.0.1:0"];
    args.extend_from_slice(c.args);
    args.extend_from_slice(extra);
    spawn_server(&format!("{dir}/{}", c.binary), &args)
}

pub(crate) fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_owned(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// A horizontal bar chart of one metric across contenders.
pub(crate) fn bar_chart(title: &str, label: &str, rows: &[(&str, Option<f64>)]) -> String {
    let max = rows
        .iter()
        .filter_map(|r| r.1)
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let (w, bar_h, left) = (720.0, 26.0, 170.0);
    let h = 50.0 + bar_h * rows.len() as f64 + 20.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <text x=\"10\" y=\"20\" font-size=\"14\">{title}</text><text x=\"10\" y=\"38\">{label}</text>"
    );
    for (i, (name, v)) in rows.iter().enumerate() {
        let y = 50.0 + bar_h * i as f64;
        let len = v.map_or(0.0, |v| (w - left - 90.0) * v / max);
        out.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{name}</text><rect x=\"{left}\" y=\"{y}\" width=\"{len:.1}\" height=\"{}\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            y + 17.0,
            bar_h - 6.0,
            if name.starts_with("subscope") { "#1f77b4" } else { "#999999" },
            left + len + 6.0,
            y + 17.0,
            fmt_value(*v)
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// The in-memory subscope-tokio fan-out result from the JSON built so far.
pub(crate) fn memory_fanout_line(json: &str) -> String {
    json.split("\"fanout\":{\"subscope-tokio\":")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .map(|r| format!("{r}}}"))
        .unwrap_or_default()
}

/// Two demo processes (tokio) behind one redis-server: subscribers on one, the publisher on
/// the other. Returns the load generator's JSON line.
pub(crate) fn redis_fanout(bin: &str, quick: bool, window: u64, extra: &[&str]) -> Option<String> {
    let (mut redis, url) = start_redis()?;
    let demo = |name| Contender {
        name,
        binary: "demo",
        args: &["--runtime", "tokio"],
        graphql: true,
        transport: "ws",
        group: "ws",
    };
    let result = (|| {
        let with_redis = |c: &Contender| {
            let mut args = vec!["--redis", url.as_str()];
            args.extend_from_slice(extra);
            start_contender(bin, c, &args)
        };
        let (mut subs, sub_url) = with_redis(&demo("subscribers"))?;
        let (mut publ, pub_url) = with_redis(&demo("publisher"))?;
        let params = if quick {
            SCENARIOS[0].quick
        } else {
            SCENARIOS[0].full
        };
        let out = Command::new(format!("{bin}/loadgen"))
            .args(["--url", &sub_url, "--publish-url", &pub_url])
            .args(["--pid", &subs.id().to_string(), "--scenario", "fanout"])
            .args(params)
            .args(["--window", &window.to_string()])
            .output();
        for child in [&mut subs, &mut publ] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let out = out.ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    })();
    let _ = redis.kill();
    let _ = redis.wait();
    result
}

/// A redis-server on a free loopback port (no persistence), and its URL.
pub(crate) fn start_redis() -> Option<(std::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("redis://127.0.0.1:{port}");
    // Ready when it accepts a connection.
    let end = Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some((redis, url))
}

/// A load-generator result that lost events: `Some((lost, expected))`.
pub(crate) fn loss(line: &str) -> Option<(f64, f64)> {
    let lost = json_number(line, "lost")?;
    (lost > 0.0).then(|| (lost, json_number(line, "expected").unwrap_or(f64::NAN)))
}

/// Builds the demo and the bench binaries in release; returns the directory holding them
/// and `target/bench` (created), or `None` if the build failed.
pub(crate) fn build_release() -> Option<(String, String)> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let built = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "subscope-examples",
            "--bin",
            "demo",
        ])
        .args(["-p", "subscope-bench", "--bins"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !built {
        return None;
    }
    let target = env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    let out_dir = format!("{target}/bench");
    let _ = std::fs::create_dir_all(&out_dir);
    Some((format!("{target}/release"), out_dir))
}

/// Runs every scenario against every contender; writes target/bench/*.{md,json,svg}.
/// `window` is how many `publish` mutations the fan-out publishers keep in flight.
/// `only`: just these scenarios (the result files then hold only them).
pub(crate) fn bench(quick: bool, window: u64, only: Option<&[&str]>) -> ExitCode {
    let window_arg = window.to_string();
    let Some((bin, out_dir)) = build_release() else {
        return ExitCode::FAILURE;
    };
    let started = Instant::now();
    let mut markdown = format!(
        "# subscope benchmarks ({} run, publishers keep {window} mutations in flight)\n\nEach contender runs in its own process on 127.0.0.1; one Rust load generator \
         (its own process) measures. Ratios are against subscope-tokio measured in the same run. A run that \
         lost any event gets no throughput figure: it is shown as lost.\n",
        if quick { "quick" } else { "full" }
    );
    let mut summary = Vec::new();
    let mut json = String::from("{");
    let mut fanout_ratio = None;
    let mut failed = false;
    let mut first = true;
    for sc in SCENARIOS {
        if only.is_some_and(|names| !names.contains(&sc.name)) {
            continue;
        }
        let mut results: Vec<(&str, String)> = Vec::new();
        for c in CONTENDERS {
            // Each group's contenders beside subscope-tokio (plain WebSocket).
            if c.group != sc.group && c.name != "subscope-tokio" {
                continue;
            }
            let Some((mut server, url)) = start_contender(&bin, c, &[]) else {
                eprintln!("bench: {} did not start", c.name);
                failed = true;
                continue;
            };
            let params = if quick { sc.quick } else { sc.full };
            let out = Command::new(format!("{bin}/loadgen"))
                .args(["--url", &url, "--pid", &server.id().to_string()])
                .args([
                    "--scenario",
                    sc.name,
                    "--graphql",
                    if c.graphql { "true" } else { "false" },
                ])
                .args(params)
                .args(["--window", &window_arg])
                .args(["--transport", c.transport, "--ca", TEST_CERT])
                .args(if sc.group == "deflate" {
                    &["--deflate", "true", "--active", "true"][..]
                } else {
                    &[]
                })
                .output();
            let _ = server.kill();
            let _ = server.wait();
            match out {
                Ok(o) if o.status.success() => {
                    let line = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                    eprintln!("bench {} {}: {line}", sc.name, c.name);
                    if let Some((lost, expected)) = loss(&line) {
                        eprintln!(
                            "bench {} {}: LOST {lost} of {expected} events",
                            sc.name, c.name
                        );
                        if c.name.starts_with("subscope") {
                            failed = true;
                        }
                    }
                    results.push((c.name, line));
                }
                Ok(o) => {
                    eprintln!(
                        "bench {} {} failed: {}",
                        sc.name,
                        c.name,
                        String::from_utf8_lossy(&o.stderr)
                    );
                    failed = true;
                }
                Err(e) => {
                    eprintln!("bench: loadgen did not run: {e}");
                    failed = true;
                }
            }
        }
        let base = results
            .iter()
            .find(|r| r.0 == "subscope-tokio")
            .map(|r| r.1.clone());
        markdown.push_str(&format!("\n## {}\n\n| contender |", sc.title));
        for (_, label, _) in sc.metrics {
            markdown.push_str(&format!(" {label} | ratio |"));
        }
        markdown.push_str("\n| --- |");
        for _ in sc.metrics {
            markdown.push_str(" ---: | ---: |");
        }
        markdown.push('\n');
        for (name, line) in &results {
            markdown.push_str(&format!("| {name} |"));
            for (key, _, _) in sc.metrics {
                if *key == "events_per_s"
                    && let Some((lost, expected)) = loss(line)
                {
                    markdown.push_str(&format!(" lost {lost} of {expected} | n/a |"));
                    continue;
                }
                let v = json_number(line, key);
                let b = base.as_deref().and_then(|b| json_number(b, key));
                let ratio = match (v, b) {
                    (Some(v), Some(b)) if b != 0.0 => format!("{:.2}x", v / b),
                    _ => "n/a".to_owned(),
                };
                markdown.push_str(&format!(" {} | {ratio} |", fmt_value(v)));
            }
            markdown.push('\n');
        }
        let (key, label, _) = sc.metrics[0];
        let rows: Vec<(&str, Option<f64>)> = results
            .iter()
            .map(|(n, l)| (*n, json_number(l, key)))
            .collect();
        let _ = std::fs::write(
            format!("{out_dir}/{}.svg", sc.name),
            bar_chart(sc.title, label, &rows),
        );
        let get = |n: &str, key: &str| {
            results
                .iter()
                .find(|r| r.0 == n)
                .and_then(|r| json_number(&r.1, key))
        };
        if sc.name.starts_with("fanout") {
            // Shared execution's targets: at most half the CPU per event of subscope without
            // it, and within 1.5x of the raw-frame contender's (checked on the full run).
            let cpu = |n: &str| get(n, "cpu_ms_per_1000_events");
            if let (Some(share), Some(plain), Some(limit)) = (
                cpu("subscope-tokio-share"),
                cpu("subscope-tokio"),
                cpu("limit"),
            ) {
                summary.push(format!(
                    "{}: server CPU per 1,000 events: share {share:.2} ms, no share {plain:.2} ms ({:.2}x), raw-frame limit {limit:.2} ms (share at {:.2}x the limit)",
                    sc.name,
                    share / plain,
                    share / limit
                ));
            }
        }
        if sc.name.starts_with("fanout-deflate") {
            let bytes = |n: &str| get(n, "wire_bytes_per_event");
            let cpu = |n: &str| get(n, "cpu_ms_per_1000_events");
            for n in ["subscope-tokio-deflate", "deflate-no-takeover"] {
                if let (Some(plain), Some(deflated), Some(pc), Some(dc)) = (
                    bytes("subscope-tokio"),
                    bytes(n),
                    cpu("subscope-tokio"),
                    cpu(n),
                ) {
                    summary.push(format!(
                        "{}: {n}: {deflated:.1} bytes on the wire per event against {plain:.1} uncompressed ({:.2}x fewer) at {:.2}x the server CPU per event",
                        sc.name,
                        plain / deflated,
                        dc / pc
                    ));
                }
            }
        }
        if sc.name == "idle-deflate"
            && let (Some(plain), Some(deflated)) = (
                get("subscope-tokio", "kib_per_connection"),
                get("subscope-tokio-deflate", "kib_per_connection"),
            )
        {
            summary.push(format!(
                "{}: an idle compressed connection costs {:+.2} KiB against an uncompressed one ({deflated:.2} vs {plain:.2} KiB); active: {} KiB vs {} KiB",
                sc.name,
                deflated - plain,
                fmt_value(get("subscope-tokio-deflate", "kib_per_active_connection")),
                fmt_value(get("subscope-tokio", "kib_per_active_connection")),
            ));
        }
        if sc.name == "fanout" {
            let s = get("subscope-tokio", "events_per_s");
            if let (Some(s), Some(a)) = (s, get("async-graphql", "events_per_s")) {
                fanout_ratio = Some(s / a);
            }
            if let (Some(s), Some(l)) = (s, get("limit", "events_per_s")) {
                summary.push(format!(
                    "wide fan-out events/s subscope-tokio / raw-frame limit = {:.2}x",
                    s / l
                ));
            }
            if let (Some(sh), Some(s), Some(a)) = (
                get("subscope-tokio-share", "events_per_s"),
                s,
                get("async-graphql", "events_per_s"),
            ) {
                summary.push(format!(
                    "wide fan-out events/s subscope-tokio-share / subscope-tokio = {:.2}x, / async-graphql = {:.2}x",
                    sh / s,
                    sh / a
                ));
            }
        }
        if sc.name == "deep" {
            let p50s: Vec<(&str, f64)> = ["subscope-tokio", "subscope-smol", "subscope-async-std"]
                .into_iter()
                .filter_map(|n| Some((n, get(n, "p50_ms")?)))
                .collect();
            let best = p50s.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            for (n, p50) in &p50s {
                summary.push(format!(
                    "deep p50/p99 {n}: {p50:.2} / {:.2} ms ({:.2}x the best runtime's p50)",
                    get(n, "p99_ms").unwrap_or(f64::NAN),
                    p50 / best
                ));
            }
        }
        json.push_str(&format!(
            "{}\"{}\":{{",
            if first { "" } else { "," },
            sc.name
        ));
        first = false;
        for (i, (name, line)) in results.iter().enumerate() {
            json.push_str(&format!(
                "{}\"{name}\":{line}",
                if i > 0 { "," } else { "" }
            ));
        }
        json.push('}');
    }
    let redis = if only.is_none_or(|names| names.contains(&"fanout")) {
        redis_fanout(&bin, quick, window, &[])
    } else {
        None
    };
    match redis {
        Some(line) => {
            if loss(&line).is_some() {
                eprintln!("bench redis fan-out: LOST events: {line}");
                failed = true;
            }
            let base = json_number(&memory_fanout_line(&json), "events_per_s");
            let v = json_number(&line, "events_per_s");
            markdown.push_str(&format!(
                "\n## Cross-process fan-out through Redis (subscope-tokio, subscribers on one process, publisher on another)\n\n\
                 | setup | events/s | ratio to in-memory | p50 (ms) | p99 (ms) | delivered |\n| --- | ---: | ---: | ---: | ---: | ---: |\n\
                 | one process, in memory | {} | 1.00x | {} | {} | {} |\n| two processes, Redis | {} | {} | {} | {} | {} |\n",
                fmt_value(base),
                fmt_value(json_number(&memory_fanout_line(&json), "p50_ms")),
                fmt_value(json_number(&memory_fanout_line(&json), "p99_ms")),
                fmt_value(json_number(&memory_fanout_line(&json), "delivered")),
                fmt_value(v),
                match (v, base) {
                    (Some(v), Some(b)) if b > 0.0 => format!("{:.2}x", v / b),
                    _ => "n/a".to_owned(),
                },
                fmt_value(json_number(&line, "p50_ms")),
                fmt_value(json_number(&line, "p99_ms")),
                fmt_value(json_number(&line, "delivered")),
            ));
            json.push_str(&format!(",\"redis_fanout\":{{\"subscope-tokio\":{line}}}"));
        }
        None if only.is_some() => {}
        None => {
            markdown.push_str(
                "\n## Cross-process fan-out through Redis\n\nskipped: redis-server not available\n",
            );
        }
    }
    if only.is_none_or(|names| names.contains(&"resume")) {
        let resume = crate::bench_resume::run(&bin, quick, window);
        markdown.push_str(&resume.markdown);
        let sep = if json.len() > 1 { "," } else { "" };
        json.push_str(&format!("{sep}\"resume\":{}", resume.json));
        summary.extend(resume.summary);
        failed |= resume.failed;
    }
    json.push_str("}\n");
    let _ = std::fs::write(format!("{out_dir}/results.md"), &markdown);
    let _ = std::fs::write(format!("{out_dir}/results.json"), &json);
    println!("{markdown}");
    println!(
        "wrote {out_dir}/results.{{md,json}} and one SVG per scenario ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    match fanout_ratio {
        Some(r) => println!("fan-out events/s subscope-tokio / async-graphql = {r:.2}x"),
        None => println!("fan-out events/s subscope-tokio / async-graphql = n/a"),
    }
    for line in summary {
        println!("{line}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
