//! The soak tool behind `cargo xtask soak`: churns against the demo server in its own
//! process for a while, sampling the server's RSS and gauges, then prints a table and
//! writes a CSV and an SVG plot.
//!
//! `soak --demo PATH [--runtime NAME] [--minutes F] [--clients N] [--out DIR]`

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use subscope_tests::Client;
use subscope_tests::churn::{Ending, end, open};

/// Connections each churn thread keeps open before ending the oldest.
const HELD_PER_CLIENT: usize = 25;

struct Args {
    demo: PathBuf,
    runtime: String,
    minutes: f64,
    clients: usize,
    out: PathBuf,
}

fn parse() -> Args {
    let mut a = Args {
        demo: PathBuf::from("target/release/demo"),
        runtime: "tokio".into(),
        minutes: 1.0,
        clients: 4,
        out: PathBuf::from("target/soak"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--demo" => a.demo = value.into(),
            "--runtime" => a.runtime = value,
            "--minutes" => a.minutes = value.parse().expect("--minutes F"),
            "--clients" => a.clients = value.parse().expect("--clients N"),
            "--out" => a.out = value.into(),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    rss_kib: u64,
    live_streams: u64,
    subscriptions: u64,
    connections: u64,
    connections_total: u64,
    cycles: usize,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Reads `liveStreams` and `serverStats` over a modern connection.
fn stats(addr: SocketAddr) -> (u64, u64, u64, u64) {
    let mut c = Client::modern(addr);
    c.init(None);
    c.subscribe(
        "s",
        "{ liveStreams serverStats { connections subscriptions connectionsTotal } }",
    );
    let m = c.recv_json();
    let d = &m["payload"]["data"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let out = (
        n(&d["liveStreams"]),
        // Minus this sampling connection and its query.
        n(&d["serverStats"]["subscriptions"]).saturating_sub(1),
        n(&d["serverStats"]["connections"]).saturating_sub(1),
        n(&d["serverStats"]["connectionsTotal"]),
    );
    c.send(json!({"id": "s", "type": "complete"}));
    let _ = c.close(1000);
    out
}

/// One plot: title, colour, and the value it draws.
type Panel = (&'static str, &'static str, fn(&Sample) -> f64);

fn svg(samples: &[Sample], runtime: &str) -> String {
    let (w, h, pad) = (760.0, 200.0, 50.0);
    let t_max = samples.last().map_or(1.0, |s| s.secs).max(1.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="12">"#,
        2.0 * h + 3.0 * pad
    );
    let panels: [Panel; 2] = [
        ("server RSS (MiB)", "#1f77b4", |s| s.rss_kib as f64 / 1024.0),
        ("live subscriptions (churn load)", "#d62728", |s| {
            s.subscriptions as f64
        }),
    ];
    for (i, (title, color, value)) in panels.iter().enumerate() {
        let top = pad + i as f64 * (h + pad);
        let v_max = samples.iter().map(value).fold(1.0, f64::max) * 1.1;
        let _ = write!(
            out,
            r#"<text x="{pad}" y="{}">{title} — {runtime}, max {:.1}</text><rect x="{pad}" y="{top}" width="{}" height="{h}" fill="none" stroke="gray"/>"#,
            top - 8.0,
            v_max / 1.1,
            w - 2.0 * pad
        );
        let points: Vec<String> = samples
            .iter()
            .map(|s| {
                let x = pad + (w - 2.0 * pad) * s.secs / t_max;
                let y = top + h - h * value(s) / v_max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{t_max:.0} s</text><text x="{pad}" y="{}">0</text>"#,
            w - pad,
            top + h + 14.0,
            top + h + 14.0
        );
    }
    out.push_str("</svg>\n");
    out
}

fn main() {
    let args = parse();
    let mut demo = Command::new(&args.demo)
        .args(["--addr", "127.0.0.1:0", "--runtime", &args.runtime])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo server");
    let mut line = String::new();
    BufReader::new(demo.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("announcement");
    let addr: SocketAddr = line
        .trim()
        .trim_start_matches("listening on ws://")
        .trim_end_matches("/graphql")
        .parse()
        .expect("address");
    let pid = demo.id();
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let every = Duration::from_secs_f64((duration.as_secs_f64() / 60.0).max(1.0));
    eprintln!(
        "soak: demo on {addr} ({}), {} clients churning for {duration:?}, sampling every {every:?}",
        args.runtime, args.clients
    );

    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..args.clients)
        .map(|w| {
            let (stop, cycles) = (Arc::clone(&stop), Arc::clone(&cycles));
            std::thread::spawn(move || {
                // A ring of open clients: each cycle opens one and ends the oldest, so
                // subscriptions stay live for a while before they vanish.
                let mut ring = std::collections::VecDeque::new();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let ending = Ending::ALL[i % Ending::ALL.len()];
                    ring.push_back((open(addr, ending), ending));
                    if ring.len() > HELD_PER_CLIENT
                        && let Some((c, ending)) = ring.pop_front()
                    {
                        end(c, ending);
                        cycles.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
                for (c, ending) in ring {
                    end(c, ending);
                    cycles.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut samples = Vec::new();
    let sample = |cycles: usize| {
        let (live_streams, subscriptions, connections, connections_total) = stats(addr);
        Sample {
            secs: started.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid),
            live_streams,
            subscriptions,
            connections,
            connections_total,
            cycles,
        }
    };
    while started.elapsed() < duration {
        samples.push(sample(cycles.load(Ordering::Relaxed)));
        std::thread::sleep(every.min(duration.saturating_sub(started.elapsed())));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    // Quiet period: every subscription of the churn must be gone.
    let quiet_until = Instant::now() + Duration::from_secs(10);
    let mut last = sample(cycles.load(Ordering::Relaxed));
    while (last.subscriptions > 0 || last.live_streams > 0) && Instant::now() < quiet_until {
        std::thread::sleep(Duration::from_millis(200));
        last = sample(cycles.load(Ordering::Relaxed));
    }
    samples.push(last);
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let _ = demo.wait();

    let mut table = String::from(
        "| t (s) | RSS (MiB) | live subscriptions | liveStreams | connections | connections total | cycles |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut csv = String::from(
        "secs,rss_kib,subscriptions,live_streams,connections,connections_total,cycles\n",
    );
    for s in &samples {
        let _ = writeln!(
            table,
            "| {:.0} | {:.1} | {} | {} | {} | {} | {} |",
            s.secs,
            s.rss_kib as f64 / 1024.0,
            s.subscriptions,
            s.live_streams,
            s.connections,
            s.connections_total,
            s.cycles
        );
        let _ = writeln!(
            csv,
            "{:.1},{},{},{},{},{},{}",
            s.secs,
            s.rss_kib,
            s.subscriptions,
            s.live_streams,
            s.connections,
            s.connections_total,
            s.cycles
        );
    }
    println!("{table}");
    let first = samples
        .iter()
        .find(|s| s.secs >= 5.0)
        .or(samples.first())
        .copied();
    let verdict = if last.subscriptions == 0 && last.live_streams == 0 {
        "ok: every subscription dropped after the churn"
    } else {
        "LEAK: subscriptions alive after the churn"
    };
    if let Some(first) = first {
        println!(
            "soak {}: {} cycles in {:.0} s; RSS {:.1} MiB at {:.0} s -> {:.1} MiB at the end; {verdict}",
            args.runtime,
            last.cycles,
            last.secs,
            first.rss_kib as f64 / 1024.0,
            first.secs,
            last.rss_kib as f64 / 1024.0
        );
    }
    std::fs::create_dir_all(&args.out).expect("out dir");
    let base = args.out.join(format!("soak-{}", args.runtime));
    std::fs::write(base.with_extension("md"), &table).expect("write md");
    std::fs::write(base.with_extension("csv"), csv).expect("write csv");
    std::fs::write(base.with_extension("svg"), svg(&samples, &args.runtime)).expect("write svg");
    println!("wrote {}.{{md,csv,svg}}", base.display());
    if last.subscriptions != 0 || last.live_streams != 0 {
        std::process::exit(1);
    }
}
