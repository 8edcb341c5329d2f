//! `cargo xtask bench --scale`: the demo server at the scale this machine allows, in a few
//! minutes: the idle RSS curve per connection (every runtime), RSS per subscription at
//! 100,000, one event broadcast to 100,000 subscribers (with and without shared execution),
//! a reconnect storm over WebSocket and over SSE, and a Redis fleet (4 processes, one
//! Redis, a pipelined publisher) against one process ([`crate::bench_fleet`]). Writes
//! `target/bench/scale.md` and `target/bench/scale-*.svg`. `--only idle,broadcast,storm,fleet`
//! runs just those sections.
//!
//! Every connection count stays below the open-file limit this process (and so the demo
//! and the load generator it starts) runs under, less a margin: the limit is read, not
//! assumed.

use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::bench::{bar_chart, build_release, fmt_value, json_number};
use crate::interop::spawn_server;

/// Descriptors left free below the open-file limit in each process (the listener, the
/// observer, metrics requests, the runtime's own).
const FD_MARGIN: u64 = 1000;

/// The most connections a storm or idle point uses even where the limit would allow more
/// (the run must fit in a few minutes).
const MOST: u64 = 19_000;

/// Demo flags for every scale run: the load generator never reads an idle connection, so it
/// never answers a ping; keepalive off keeps the server from closing those connections
/// (everything else at its default: `--max-connections` unlimited, `--max-subscriptions`
/// 100, `--init-timeout-ms` 3000).
const DEMO_FLAGS: &[&str] = &["--keepalive-ms", "0"];

/// Handshakes in flight in the storms.
const STORM_PARALLEL: &str = "1000";

/// Connections opened at a time for the idle points and the broadcast.
const OPEN_PARALLEL: &str = "128";

/// Storms per transport on one server (the leak check compares them).
const STORM_ROUNDS: u64 = 8;

/// The storm's JSON keys for round `k` (round 1 has none, round k `_k`).
fn suffix(k: u64) -> String {
    if k == 1 {
        String::new()
    } else {
        format!("_{k}")
    }
}

/// The runtimes of the idle curve (tokio first: it carries every other figure).
const RUNTIMES: &[&str] = &["tokio", "smol", "async-std"];

/// The first line of `path` whose first field is `key`, its `n`th field.
fn proc_field(path: &str, key: &str, n: usize) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.starts_with(key)
            .then(|| l[key.len()..].split_whitespace().nth(n).map(str::to_owned))
            .flatten()
    })
}

/// One line of a file under `/proc/sys`, trimmed and tabs made spaces.
fn sysctl(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned())
}

/// This process's open-file limit: (soft, hard).
fn open_files() -> (u64, String) {
    let soft = proc_field("/proc/self/limits", "Max open files", 0)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let hard = proc_field("/proc/self/limits", "Max open files", 1).unwrap_or_default();
    (soft, hard)
}

/// `/proc/loadavg`'s first three fields (other work on the machine shows here).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|_| "n/a".to_owned())
}

/// The commit measured, and whether the working tree differed from it.
fn code_measured() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("`{head}` plus uncommitted changes in the working tree")
            } else {
                format!("`{head}`")
            }
        }
        None => "n/a".to_owned(),
    }
}

/// A started demo server: the process and its URL (killed when dropped).
pub(crate) struct Demo {
    pub(crate) child: std::process::Child,
    pub(crate) url: String,
}

impl Demo {
    /// Starts `bin/demo` on `runtime` with the scale flags and `extra`.
    pub(crate) fn start(bin: &str, runtime: &str, extra: &[&str]) -> Option<Self> {
        let mut args = vec!["--addr", "127.0.0.1:0", "--runtime", runtime];
        args.extend_from_slice(DEMO_FLAGS);
        args.extend_from_slice(extra);
        let (child, url) = spawn_server(&format!("{bin}/demo"), &args)?;
        Some(Self { child, url })
    }

    /// Runs the load generator against this server; its JSON line, or why it failed.
    fn loadgen(&self, bin: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(format!("{bin}/loadgen"))
            .args(["--url", &self.url, "--pid", &self.child.id().to_string()])
            .args(["--spread", "true", "--small-buffers", "true"])
            .args(args)
            .output();
        loadgen_line(out)
    }
}

/// A load-generator run's JSON line, or why it failed (its first lines of stderr).
pub(crate) fn loadgen_line(out: std::io::Result<std::process::Output>) -> Result<String, String> {
    let out = out.map_err(|e| format!("loadgen did not run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err.lines().take(6).collect::<Vec<_>>().join(" / "))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A round tick step for an axis from 0 to `max` (about 5 ticks), and the axis end.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = max.max(1e-9);
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    (step, (max / step).ceil() * step)
}

/// A tick value: whole numbers with thousands separators, else up to two decimals.
fn tick_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        count(v)
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// A whole number with thousands separators (`19,000`).
pub(crate) fn count(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// [`count`] of an optional figure.
pub(crate) fn count_of(v: Option<f64>) -> String {
    v.map_or("n/a".to_owned(), count)
}

/// A line chart: one polyline per series, axes from 0 to a round value above the largest.
pub(crate) fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    const COLORS: &[&str] = &["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
    let points = series.iter().flat_map(|s| s.1.iter());
    let (x_step, x_max) = nice_axis(points.clone().map(|p| p.0).fold(0.0_f64, f64::max));
    let (y_step, y_max) = nice_axis(points.map(|p| p.1).fold(0.0_f64, f64::max));
    let (w, h, left, top, right, bottom) = (720.0, 400.0, 70.0, 50.0, 170.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let x = |v: f64| left + pw * v / x_max;
    let y = |v: f64| top + ph * (1.0 - v / y_max);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <text x=\"10\" y=\"20\" font-size=\"14\">{title}</text>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#333\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>\
         <text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{y_label}</text>",
        top + ph,
        left + pw,
        top + ph,
        top + ph,
        left + pw / 2.0,
        h - 10.0,
        top + ph / 2.0,
        top + ph / 2.0,
    );
    let ticks =
        |step: f64, max: f64| (0..=((max / step).round() as usize)).map(move |i| step * i as f64);
    for xv in ticks(x_step, x_max) {
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(xv),
            top + ph + 16.0,
            tick_label(xv),
        ));
    }
    for yv in ticks(y_step, y_max) {
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            left - 6.0,
            y(yv) + 4.0,
            tick_label(yv),
            y(yv),
            left + pw,
            y(yv),
        ));
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        out.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        ));
        if pts.len() <= 12 {
            for (a, b) in pts {
                out.push_str(&format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                    x(*a),
                    y(*b)
                ));
            }
        }
        let ly = top + 16.0 * i as f64;
        out.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{name}</text>",
            left + pw + 14.0,
            ly,
            left + pw + 32.0,
            ly + 11.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// `round,ms,phase,live,rss_kib` rows of a storm timeline, round 1 only:
/// `(seconds, live, rss_kib)`.
fn timeline(path: &str) -> Vec<(f64, f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.first() == Some(&"1")).then_some(())?;
            Some((
                f.get(1)?.parse::<f64>().ok()? / 1e3,
                f.get(3)?.parse().ok()?,
                f.get(4)?.parse().ok()?,
            ))
        })
        .collect()
}

/// KiB as MiB with one decimal.
pub(crate) fn kib(v: Option<f64>) -> String {
    v.map_or("n/a".to_owned(), |v| format!("{:.1} MiB", v / 1024.0))
}

fn secs(v: Option<f64>) -> String {
    v.map_or("n/a".to_owned(), |v| format!("{v:.2} s"))
}

/// The sections of `cargo xtask bench --scale`, in order (names for `--only`).
pub(crate) const SECTIONS: &[&str] = &["idle", "broadcast", "storm", "fleet"];

/// `cargo xtask bench --scale [--only SECTION,...]`: `only` runs just those of
/// [`SECTIONS`] (the machine table always; the report then holds only them).
pub(crate) fn scale(only: Option<&[&str]>) -> ExitCode {
    let want = |name: &str| only.is_none_or(|o| o.contains(&name));
    let Some((bin, out_dir)) = build_release() else {
        return ExitCode::FAILURE;
    };
    let started = Instant::now();
    let mut failed = false;
    let (limit, hard) = open_files();
    let top = (limit.saturating_sub(FD_MARGIN) / 1000 * 1000).min(MOST);
    let mut points: Vec<u64> = [2_000, 5_000, 10_000, top]
        .into_iter()
        .filter(|p| *p <= top)
        .collect();
    points.dedup();
    let big = 10_000.min(top);
    let mem = proc_field("/proc/meminfo", "MemTotal:", 0)
        .and_then(|v| v.parse::<f64>().ok())
        .map_or("n/a".to_owned(), |k| {
            format!("{:.1} GiB", k / 1024.0 / 1024.0)
        });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = format!(
        "# subscope at scale (`cargo xtask bench --scale`)\n\n\
         One machine, everything on 127.0.0.1: the release `demo` server in its own process \
         (a fresh one per figure), one Rust load generator (`bench/src/bin/loadgen.rs`, its own \
         process, one thread) measuring from outside. Server RSS is VmRSS of the demo process \
         from `/proc`.\n\n\
         ## The machine and its limits\n\n\
         | | |\n| --- | --- |\n\
         | cores | {cores} |\n| memory | {mem} (no swap) |\n\
         | open files per process (RLIMIT_NOFILE soft / hard) | {limit} / {hard} |\n\
         | `net.ipv4.ip_local_port_range` | {} |\n| `net.core.somaxconn` | {} |\n\
         | `net.ipv4.tcp_max_syn_backlog` | {} |\n\
         | load average (1, 5, 15 min) at the start | {} |\n\
         | code measured | {} |\n\n\
         **The cap.** Each process (the server, the load generator) must hold every connection \
         as a descriptor, so the largest point is min({}, RLIMIT_NOFILE − {}) \
         rounded down to a thousand = **{}** connections (the load generator refuses to \
         open more client sockets than its limit − 500). The ephemeral port range \
         ({}) would allow ~28,000 connections from one source address; every client socket \
         is bound to its own 127.0.0.X (X cycling through 2–250) before connecting, so ports \
         never run out.\n\n\
         **Demo flags.** `{}` (the load generator never reads an idle connection, so it never \
         answers a ping); everything else at its default: `--max-connections` unlimited, \
         `--max-subscriptions` 100, `--init-timeout-ms` 3000, no `--share` unless stated.\n",
        sysctl("/proc/sys/net/ipv4/ip_local_port_range"),
        sysctl("/proc/sys/net/core/somaxconn"),
        sysctl("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
        load_average(),
        code_measured(),
        count(MOST as f64),
        count(FD_MARGIN as f64),
        count(top as f64),
        sysctl("/proc/sys/net/ipv4/ip_local_port_range").replace(' ', "–"),
        DEMO_FLAGS.join(" "),
    );
    let mut loadgen_rows: Vec<(String, String)> = Vec::new();

    if let Some(only) = only {
        md.push_str(&format!(
            "\n**Sections run:** {} only (`--only`).\n",
            only.join(", ")
        ));
    }

    // 1. The idle curve, a fresh demo process per point and runtime.
    let mut top_tokio = None;
    if want("idle") {
        let mut curve: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        let mut idle_rows: Vec<(u64, Vec<String>)> =
            points.iter().map(|p| (*p, Vec::new())).collect();
        let mut per_sub: Option<String> = None;
        for rt in RUNTIMES {
            let mut pts = Vec::new();
            for (i, &n) in points.iter().enumerate() {
                let n_arg = n.to_string();
                // At 10,000 connections on tokio, 9 more subscriptions each: 100,000 in all.
                let extra = if *rt == "tokio" && n == big { "9" } else { "0" };
                let result = Demo::start(&bin, rt, &[])
                    .ok_or_else(|| "demo did not start".to_owned())
                    .and_then(|demo| {
                        demo.loadgen(
                            &bin,
                            &[
                                "--scenario",
                                "idle",
                                "--connections",
                                &n_arg,
                                "--extra",
                                extra,
                                "--parallel",
                                OPEN_PARALLEL,
                            ],
                        )
                    });
                let cell = match result {
                    Ok(line) => {
                        eprintln!("scale idle {rt} {n}: {line}");
                        let per = json_number(&line, "kib_per_connection");
                        let errors = json_number(&line, "errors").unwrap_or(f64::NAN);
                        if errors != 0.0 {
                            failed = true;
                        }
                        if let Some(per) = per {
                            pts.push((n as f64, per));
                        }
                        if *rt == "tokio" && n == top {
                            top_tokio = per;
                        }
                        if extra == "9" {
                            let sub = json_number(&line, "kib_per_subscription");
                            per_sub = Some(format!(
                                "At {} connections × 10 subscriptions = {} live subscriptions \
                             (tokio): RSS {} with 1 subscription each, {} with 10 each: \
                             ({} − {}) / {} extra subscriptions = **{} KiB per subscription** \
                             ({} connections open, {} errors).\n",
                                count(big as f64),
                                count((big * 10) as f64),
                                kib(json_number(&line, "rss_one_kib")),
                                kib(json_number(&line, "rss_after_kib")),
                                kib(json_number(&line, "rss_after_kib")),
                                kib(json_number(&line, "rss_one_kib")),
                                count_of(json_number(&line, "extra_subscriptions")),
                                fmt_value(sub),
                                count_of(json_number(&line, "connections")),
                                errors,
                            ));
                        }
                        loadgen_rows.push((
                            format!("idle, {rt}, {} connections", count(n as f64)),
                            line.clone(),
                        ));
                        format!(
                            "{} KiB ({} s, {} err)",
                            fmt_value(per),
                            fmt_value(json_number(&line, "setup_s")),
                            errors
                        )
                    }
                    Err(e) => {
                        eprintln!("scale idle {rt} {n} failed: {e}");
                        failed = true;
                        "failed".to_owned()
                    }
                };
                idle_rows[i].1.push(cell);
            }
            curve.push((format!("subscope-{rt}"), pts));
        }
        md.push_str(
            "\n## Idle: server RSS per connection, each with one idle subscription\n\n\
         A fresh demo process per point and runtime: N WebSocket connections \
         (`graphql-transport-ws`, initialised, one `subscription { messages(topic: \"idle\") }` \
         each, opened 128 at a time), then (RSS with them − RSS before them) / N, after \
         300 ms of quiet. In parentheses: seconds to open them all, errors.\n\n| connections |",
        );
        for rt in RUNTIMES {
            md.push_str(&format!(" subscope-{rt} |"));
        }
        md.push_str("\n| ---: |");
        for _ in RUNTIMES {
            md.push_str(" ---: |");
        }
        md.push('\n');
        for (n, cells) in &idle_rows {
            md.push_str(&format!(
                "| {} | {} |\n",
                count(*n as f64),
                cells.join(" | ")
            ));
        }
        md.push_str("\n![RSS per idle connection against connections](scale-idle.svg)\n\n");
        md.push_str(
            per_sub
                .as_deref()
                .unwrap_or("Per subscription: not measured.\n"),
        );
        let _ = std::fs::write(
            format!("{out_dir}/scale-idle.svg"),
            line_chart(
                "Server RSS per idle connection (1 subscription each), fresh process per point",
                "connections",
                "KiB per connection",
                &curve,
            ),
        );
    }

    // 2. Broadcast to 100,000 subscribers of one topic.
    if want("broadcast") {
        let (c, s, events) = (big.to_string(), "10", "20");
        let mut bars = Vec::new();
        md.push_str(&format!(
        "\n## Broadcast: one event to {} subscribers of one topic\n\n\
         {} WebSocket connections × {s} subscriptions to `messages(topic: \"broadcast\")` on a \
         fresh tokio demo; {events} events published one at a time (after one warm-up event \
         not counted), each awaited until every subscriber had it (or 30 s, or 3 s without a \
         delivery). Time: from sending the `publish` mutation until the last subscriber's \
         frame was read by the load generator, which reads all {} sockets on one thread (so \
         this includes its own reading; the first subscriber's p50 is beside it). Server CPU \
         per event: the demo's CPU time (user + system) over the 21 events, divided by 21. A \
         run with any loss shows no latency.\n\n\
         | execution | p50 | p99 | max | first subscriber p50 | delivered / expected | server CPU per event | setup (connect + subscribe) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        count((big * 10) as f64),
        count(big as f64),
        count(big as f64),
    ));
        for (label, extra) in [
            ("not shared (default)", &[][..]),
            ("shared (`--share`)", &["--share"][..]),
        ] {
            let result = Demo::start(&bin, "tokio", extra)
                .ok_or_else(|| "demo did not start".to_owned())
                .and_then(|demo| {
                    demo.loadgen(
                        &bin,
                        &[
                            "--scenario",
                            "broadcast",
                            "--connections",
                            &c,
                            "--subs",
                            s,
                            "--events",
                            events,
                            "--parallel",
                            OPEN_PARALLEL,
                        ],
                    )
                });
            match result {
                Ok(line) => {
                    eprintln!("scale broadcast {label}: {line}");
                    let (delivered, expected) = (
                        json_number(&line, "delivered").unwrap_or(0.0),
                        json_number(&line, "expected").unwrap_or(f64::NAN),
                    );
                    if delivered != expected || json_number(&line, "errors") != Some(0.0) {
                        failed = true;
                    }
                    let (p50, p99) = (json_number(&line, "p50_ms"), json_number(&line, "p99_ms"));
                    let short = if extra.is_empty() {
                        "no share"
                    } else {
                        "share"
                    };
                    bars.push((format!("subscope-tokio {short} p50"), p50));
                    bars.push((format!("subscope-tokio {short} p99"), p99));
                    md.push_str(&format!(
                    "| {label} | {} ms | {} ms | {} ms | {} ms | {} / {} = {:.4} | {} ms | {} s |\n",
                    fmt_value(p50),
                    fmt_value(p99),
                    fmt_value(json_number(&line, "max_ms")),
                    fmt_value(json_number(&line, "first_p50_ms")),
                    count(delivered),
                    count(expected),
                    delivered / expected,
                    // The warm-up event is in the CPU time too.
                    fmt_value(json_number(&line, "server_cpu_ms").map(|ms| ms / 21.0)),
                    fmt_value(json_number(&line, "setup_s")),
                ));
                    loadgen_rows.push((format!("broadcast, {label}"), line));
                }
                Err(e) => {
                    eprintln!("scale broadcast {label} failed: {e}");
                    md.push_str(&format!("| {label} | failed: {e} | | | | | | |\n"));
                    failed = true;
                }
            }
        }
        let rows: Vec<(&str, Option<f64>)> = bars.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let _ = std::fs::write(
            format!("{out_dir}/scale-broadcast.svg"),
            bar_chart(
                &format!(
                    "One event to {} subscribers: publish to the last delivery",
                    count((big * 10) as f64)
                ),
                "ms (p50 and p99 over 20 events)",
                &rows,
            ),
        );
        md.push_str("\n![broadcast latency](scale-broadcast.svg)\n");
    }

    // 3 and 4. Reconnect storms.
    if want("storm") {
        let n = top.to_string();
        let rounds = STORM_ROUNDS.to_string();
        let mut storms = Vec::new();
        for (transport, subs) in [("ws", "5"), ("sse", "1")] {
            let csv = format!("{out_dir}/scale-storm-{transport}.csv");
            let result = Demo::start(&bin, "tokio", &[])
                .ok_or_else(|| "demo did not start".to_owned())
                .and_then(|demo| {
                    demo.loadgen(
                        &bin,
                        &[
                            "--scenario",
                            "storm",
                            "--transport",
                            transport,
                            "--connections",
                            &n,
                            "--subs",
                            subs,
                            "--parallel",
                            STORM_PARALLEL,
                            "--rounds",
                            &rounds,
                            "--timeline",
                            &csv,
                        ],
                    )
                });
            match result {
                Ok(line) => {
                    eprintln!("scale storm {transport}: {line}");
                    let mut keys = vec!["live_after".to_owned()];
                    keys.extend((1..=STORM_ROUNDS).map(|k| format!("errors{}", suffix(k))));
                    for key in keys {
                        if json_number(&line, &key) != Some(0.0) {
                            failed = true;
                        }
                    }
                    loadgen_rows.push((format!("storm, {transport}"), line.clone()));
                    storms.push((transport, Some(line), csv));
                }
                Err(e) => {
                    eprintln!("scale storm {transport} failed: {e}");
                    failed = true;
                    storms.push((transport, None, csv));
                }
            }
        }
        md.push_str(&format!(
        "\n## Reconnect storm: {} clients at once, then all reset\n\n\
         A fresh tokio demo per transport. **WebSocket:** {} clients connect, upgrade, send \
         `connection_init`, wait for `connection_ack` and subscribe 5 times each \
         (`messages(topic: \"idle\")`): {} subscriptions. **SSE:** {} distinct-connection \
         graphql-sse streams (HTTP/1.1 `POST /graphql`, `accept: text/event-stream`, one \
         subscription each, as `EventSource` does). Both: {} handshakes in \
         flight, the next client starting as soon as one is done (as fast as the load \
         generator goes). \"Live\" is the demo's `liveStreams` (polled every 50 ms over a \
         separate WebSocket) reaching the target; \"acknowledged\" is when the last client had \
         its `connection_ack` / response head. Then every connection is closed with \
         SO_LINGER 0 (a TCP reset) in one loop, and `liveStreams` is polled every 20 ms until \
         it is 0.\n\n\
         **The leak check.** RSS does not return to the fresh process's baseline: glibc's \
         allocator keeps freed memory for reuse. So the storm runs {STORM_ROUNDS} times on the \
         same server, and the check is the RSS 1 s after each storm: memory that leaks grows \
         it by the same amount every storm, memory the allocator keeps grows it less and less \
         (it is reused), so the figure is the mean growth per storm over the second half of \
         the storms; and at the end the live-stream count and the library's gauges must \
         be 0 (the observer's own connection is the 1).\n\n\
         | storm 1 | WebSocket (5 subscriptions each) | SSE (1 stream each) |\n| --- | ---: | ---: |\n",
        count(top as f64),
        count(top as f64),
        count((top * 5) as f64),
        count(top as f64),
        count(STORM_PARALLEL.parse().unwrap_or(f64::NAN)),
    ));
        let get = |t: &str, key: &str| {
            storms
                .iter()
                .find(|s| s.0 == t)
                .and_then(|s| s.1.as_deref())
                .and_then(|l| json_number(l, key))
        };
        let row = |label: &str, f: &dyn Fn(&str) -> String| {
            format!("| {label} | {} | {} |\n", f("ws"), f("sse"))
        };
        md.push_str(&row("live streams when all are live", &|t| {
            count_of(get(t, "target_live"))
        }));
        md.push_str(&row("time until all live (`liveStreams`)", &|t| {
            secs(get(t, "live_s"))
        }));
        md.push_str(&row("time until every client acknowledged", &|t| {
            secs(get(t, "acked_s"))
        }));
        md.push_str(&row("clients per second (until all live)", &|t| match (
            get(t, "connections"),
            get(t, "live_s"),
        ) {
            (Some(n), Some(s)) if s > 0.0 => count(n / s),
            _ => "n/a".to_owned(),
        }));
        md.push_str(&row("errors", &|t| count_of(get(t, "errors"))));
        md.push_str(&row("server RSS before (fresh process)", &|t| {
            kib(get(t, "rss_baseline_kib"))
        }));
        md.push_str(&row("server RSS, all live", &|t| {
            kib(get(t, "rss_live_kib"))
        }));
        md.push_str(&row(
            "server RSS per client, all live ((all live − before) / clients)",
            &|t| match (
                get(t, "rss_live_kib"),
                get(t, "rss_baseline_kib"),
                get(t, "connections"),
            ) {
                (Some(l), Some(b), Some(n)) if n > 0.0 => format!("{:.1} KiB", (l - b) / n),
                _ => "n/a".to_owned(),
            },
        ));
        md.push_str(&row("server peak RSS (VmHWM)", &|t| {
            kib(get(t, "peak_rss_kib"))
        }));
        md.push_str(&row("reset loop (closing every socket)", &|t| {
            secs(get(t, "reset_loop_s"))
        }));
        md.push_str(&row("time from the resets until `liveStreams` = 0", &|t| {
            secs(get(t, "drain_s"))
        }));
        md.push_str(
        "\n| storm k: all live / back to 0 / errors / RSS 1 s after (change) | WebSocket | SSE |\n| --- | ---: | ---: |\n",
    );
        for k in 1..=STORM_ROUNDS {
            let sfx = suffix(k);
            md.push_str(&row(&format!("storm {k}"), &|t| {
                let after = get(t, &format!("rss_after_kib{sfx}"));
                let before = if k == 1 {
                    get(t, "rss_baseline_kib")
                } else {
                    get(t, &format!("rss_after_kib{}", suffix(k - 1)))
                };
                format!(
                    "{} / {} / {} / {} ({})",
                    secs(get(t, &format!("live_s{sfx}"))),
                    secs(get(t, &format!("drain_s{sfx}"))),
                    count_of(get(t, &format!("errors{sfx}"))),
                    kib(after),
                    match (after, before) {
                        (Some(a), Some(b)) => format!("{:+.1} MiB", (a - b) / 1024.0),
                        _ => "n/a".to_owned(),
                    }
                )
            }));
        }
        md.push_str(&row(
            "at the end: `liveStreams` / gauges connections, operations, subscriptions",
            &|t| {
                format!(
                    "{} / {}, {}, {}",
                    count_of(get(t, "live_after")),
                    count_of(get(t, "metrics_connections_after")),
                    count_of(get(t, "metrics_operations_after")),
                    count_of(get(t, "metrics_subscriptions_after")),
                )
            },
        ));
        md.push_str(&row(
            &format!("server CPU over the {STORM_ROUNDS} storms"),
            &|t| {
                get(t, "server_cpu_ms").map_or("n/a".to_owned(), |ms| format!("{:.1} s", ms / 1e3))
            },
        ));
        md.push_str(&row(
        &format!("load generator CPU over the {STORM_ROUNDS} storms (one thread; against the sum of the times until all live)"),
        &|t| {
            let up: Option<f64> = (1..=STORM_ROUNDS)
                .map(|k| get(t, &format!("live_s{}", suffix(k))))
                .sum();
            match (get(t, "loadgen_cpu_ms"), up) {
                (Some(ms), Some(up)) => format!("{:.1} s / {up:.1} s", ms / 1e3),
                _ => "n/a".to_owned(),
            }
        },
    ));
        md.push_str(
            "\nThe load generator shares the 2 cores with the server and drives every client from \
         one thread: where its CPU time comes close to the time the storms took, the rate \
         above is the generator's limit as much as the server's.\n",
        );
        // Leak check in numbers: the mean growth per storm over the second half of the storms
        // (the allocator has settled by then), against what one storm holds.
        let half = STORM_ROUNDS / 2;
        let mut leak_series = Vec::new();
        for (transport, name) in [("ws", "WebSocket"), ("sse", "SSE")] {
            let after = |k: u64| get(transport, &format!("rss_after_kib{}", suffix(k)));
            leak_series.push((
                name.to_owned(),
                (1..=STORM_ROUNDS)
                    .filter_map(|k| Some((k as f64, after(k)? / 1024.0)))
                    .collect::<Vec<_>>(),
            ));
            if let (Some(a), Some(b), Some(live), Some(base)) = (
                after(STORM_ROUNDS),
                after(half),
                get(transport, "rss_live_kib"),
                get(transport, "rss_baseline_kib"),
            ) {
                let per_storm = (a - b) / (STORM_ROUNDS - half) as f64;
                md.push_str(&format!(
                    "\n{name}: from storm {half} to storm {STORM_ROUNDS}, RSS after a storm grew \
                 {:+.1} MiB per storm on average: {:.2}% of the {:.1} MiB one storm holds live \
                 ({:.0} bytes per client and storm).\n",
                    per_storm / 1024.0,
                    100.0 * per_storm / (live - base).max(1.0),
                    (live - base) / 1024.0,
                    per_storm * 1024.0 / get(transport, "connections").unwrap_or(f64::NAN),
                ));
            }
        }
        md.push_str("\n![server RSS after each storm](scale-storm-leak.svg)\n");
        let _ = std::fs::write(
            format!("{out_dir}/scale-storm-leak.svg"),
            line_chart(
                &format!(
                    "Server RSS 1 s after each storm of {} clients (one server per transport)",
                    count(top as f64)
                ),
                "storm",
                "server RSS (MiB)",
                &leak_series,
            ),
        );
        let mut live_series = Vec::new();
        let mut rss_series = Vec::new();
        for (transport, line, csv) in &storms {
            let target = line
                .as_deref()
                .and_then(|l| json_number(l, "target_live"))
                .unwrap_or(1.0)
                .max(1.0);
            let rows = timeline(csv);
            let name = if *transport == "ws" {
                "WebSocket"
            } else {
                "SSE"
            };
            live_series.push((
                name.to_owned(),
                rows.iter().map(|r| (r.0, 100.0 * r.1 / target)).collect(),
            ));
            rss_series.push((
                name.to_owned(),
                rows.iter().map(|r| (r.0, r.2 / 1024.0)).collect(),
            ));
        }
        let _ = std::fs::write(
            format!("{out_dir}/scale-storm-live.svg"),
            line_chart(
                &format!(
                    "Reconnect storm, {} clients, then all reset: live streams (storm 1)",
                    count(top as f64)
                ),
                "seconds since the storm began",
                "% of target live",
                &live_series,
            ),
        );
        let _ = std::fs::write(
            format!("{out_dir}/scale-storm-rss.svg"),
            line_chart(
                &format!(
                    "Reconnect storm, {} clients, then all reset: server RSS (storm 1)",
                    count(top as f64)
                ),
                "seconds since the storm began",
                "server RSS (MiB)",
                &rss_series,
            ),
        );
        md.push_str(
            "\n![live streams during the storms](scale-storm-live.svg)\n\n\
         ![server RSS during the storms](scale-storm-rss.svg)\n",
        );
    }

    // 5. A Redis fleet against one process.
    if want("fleet") {
        let (section, rows, fleet_failed) = crate::bench_fleet::fleet(&bin);
        md.push_str(&section);
        loadgen_rows.extend(rows);
        failed |= fleet_failed;
    }

    // What the load generator used.
    md.push_str(
        "\n## What the load generator used\n\n\
         Its own peak RSS (VmHWM) and CPU time (user + system) over each run, one process \
         per row.\n\n| run | load generator peak RSS | load generator CPU |\n| --- | ---: | ---: |\n",
    );
    for (run, line) in &loadgen_rows {
        md.push_str(&format!(
            "| {run} | {} | {} |\n",
            kib(json_number(line, "loadgen_peak_rss_kib")),
            json_number(line, "loadgen_cpu_ms")
                .map_or("n/a".to_owned(), |ms| format!("{:.1} s", ms / 1e3)),
        ));
    }

    // The arithmetic for a machine without the cap (from the idle curve).
    if want("idle") {
        let per_conn = top_tokio;
        let per_sub_kib = loadgen_rows
            .iter()
            .find(|r| r.0 == format!("idle, tokio, {} connections", count(big as f64)))
            .and_then(|r| json_number(&r.1, "kib_per_subscription"));
        md.push_str("\n## Without the descriptor cap: the arithmetic\n\n");
        match per_conn {
            Some(k) => {
                let gib = |conns: f64, kib: f64| conns * kib / 1024.0 / 1024.0;
                let sub = per_sub_kib.unwrap_or(f64::NAN);
                md.push_str(&format!(
                    "Measured here (tokio, {} connections): **{k:.1} KiB per idle connection with \
                 one subscription**, {sub:.1} KiB per further subscription. Linear \
                 extrapolation (the curve above is what says whether it holds):\n\n\
                 | | 1 subscription each | 5 subscriptions each |\n| --- | ---: | ---: |\n\
                 | 1,000,000 connections need | {:.1} GiB | {:.1} GiB |\n\
                 | connections in 16 GiB | {} | {} |\n\
                 | connections in 64 GiB | {} | {} |\n\n\
                 (Server RSS only: the process's own baseline, and the kernel's memory for each \
                 socket, which is not in RSS and not measured here, come on top.) \
                 To get there a machine needs: `ulimit -n` (RLIMIT_NOFILE, and `fs.nr_open` / \
                 `fs.file-max`) above the connection count; `net.core.somaxconn` and \
                 `net.ipv4.tcp_max_syn_backlog` raised for storms of reconnects; and, on the \
                 client side (load generators, proxies), enough source addresses × \
                 `ip_local_port_range` (~28,000 ports per source address and destination at \
                 the default range: 1,000,000 connections to one server port need at least 36 \
                 source addresses, or a wider range).\n",
                    count(top as f64),
                    gib(1e6, k),
                    gib(1e6, k + 4.0 * sub),
                    count(16.0 * 1024.0 * 1024.0 / k),
                    count(16.0 * 1024.0 * 1024.0 / (k + 4.0 * sub)),
                    count(64.0 * 1024.0 * 1024.0 / k),
                    count(64.0 * 1024.0 * 1024.0 / (k + 4.0 * sub)),
                ));
            }
            None => md.push_str("n/a: the largest idle point did not run.\n"),
        }
    }
    md.push_str(&format!(
        "\nWhole run: {:.0} s (after the build); load average at the end: {}.\n",
        started.elapsed().as_secs_f64(),
        load_average(),
    ));
    let _ = std::fs::write(format!("{out_dir}/scale.md"), &md);
    println!("{md}");
    println!(
        "wrote {out_dir}/scale.md and scale-*.svg ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    if failed {
        eprintln!("bench --scale: a run failed, lost events or had errors (see above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
