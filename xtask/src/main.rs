//! Project automation. `cargo xtask ci` runs the whole CI matrix; see `usage()`.
//!
//! Only `std`: xtask must build in seconds on a fresh machine.

use std::env;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The runtimes the socket suite runs on, each as a feature of `subscope-tests`.
const RUNTIMES: &[&str] = &["tokio", "smol", "async-std"];

/// Library crates, each linted alone so a missing feature or dependency shows up.
const CRATES: &[&str] = &[
    "subscope-core",
    "subscope-tokio",
    "subscope-smol",
    "subscope-async-std",
    "subscope-axum",
];

fn usage() -> &'static str {
    "usage: cargo xtask <command>

commands:
  ci                 everything CI runs: fmt, clippy, unit tests, socket suite per runtime,
                     demo tests, examples per runtime, docs
  test [RUNTIME]     the socket suite, on one runtime or all of them
  lint               fmt --check and clippy -D warnings
  doc                rustdoc with -D warnings
  bench [--quick] [--window N]
                     contenders (subscope per runtime, async-graphql's handler, a raw-frame
                     limit) under one load generator whose publishers keep N mutations in
                     flight (default 64); a run that loses events shows as lost, and the
                     command fails if a subscope contender lost one; writes target/bench/
  interop            npm graphql-ws, subscriptions-transport-ws, Python gql and headless
                     Chromium against the demo server on every runtime (installs them)
  fuzz [--seconds N]  every fuzz target for N seconds each (default 20; needs cargo-fuzz),
                     reporting executions; crashes land in fuzz/artifacts
  soak [--minutes F] [--runtime NAME] [--clients N]
                     churn against the release demo server in its own process, sampling
                     its RSS and gauges; writes target/soak/soak-RUNTIME.{md,csv,svg}"
}

struct Step {
    name: String,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
}

fn step(name: impl Into<String>, args: &[&str]) -> Step {
    Step {
        name: name.into(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: Vec::new(),
    }
}

fn lint_steps() -> Vec<Step> {
    let mut steps = vec![
        step("fmt --check", &["fmt", "--all", "--", "--check"]),
        step(
            "clippy (workspace, all features)",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    for krate in CRATES {
        steps.push(step(
            format!("clippy {krate} (alone)"),
            &[
                "clippy",
                "-p",
                krate,
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ));
    }
    steps.push(step(
        "clippy subscope (no runtime feature)",
        &[
            "clippy",
            "-p",
            "subscope",
            "--no-default-features",
            "--",
            "-D",
            "warnings",
        ],
    ));
    steps
}

fn suite_steps(runtimes: &[&str]) -> Vec<Step> {
    runtimes
        .iter()
        .map(|rt| {
            let features = format!("rt-{rt}");
            Step {
                name: format!("socket suite on {rt}"),
                args: [
                    "test",
                    "-p",
                    "subscope-tests",
                    "--no-default-features",
                    "--features",
                    &features,
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
                env: Vec::new(),
            }
        })
        .collect()
}

fn doc_step() -> Step {
    let mut s = step(
        "rustdoc -D warnings",
        &["doc", "--workspace", "--no-deps", "--all-features"],
    );
    s.env.push(("RUSTDOCFLAGS", "-D warnings"));
    s
}

fn ci_steps() -> Vec<Step> {
    let mut steps = lint_steps();
    steps.push(step(
        "core unit tests (no runtime)",
        &["test", "-p", "subscope-core", "-p", "subscope"],
    ));
    steps.push(step(
        "test bench: the driver hand-polled in virtual time",
        &["test", "-p", "subscope-testbench"],
    ));
    steps.push(step(
        "test bench: per-connection memory under floods (dhat)",
        &[
            "test",
            "-p",
            "subscope-testbench",
            "--features",
            "dhat-heap",
            "--test",
            "memory",
        ],
    ));
    steps.extend(suite_steps(RUNTIMES));
    steps.push(step(
        "heap growth under churn (dhat, every runtime)",
        &[
            "test",
            "-p",
            "subscope-tests",
            "--features",
            "dhat-heap",
            "--test",
            "heap",
        ],
    ));
    steps.push(step("axum mount tests", &["test", "-p", "subscope-axum"]));
    steps.push(step(
        "install redis-server if missing",
        &["xtask", "setup-redis"],
    ));
    steps.push(step(
        "demo binary tests, incl. two processes behind Redis (every runtime)",
        &["test", "-p", "subscope-examples"],
    ));
    for rt in RUNTIMES {
        let mut s = step(
            format!("examples built for {rt}"),
            &[
                "build",
                "-p",
                "subscope-examples",
                "--bins",
                "--no-default-features",
                "--features",
            ],
        );
        s.args.push((*rt).to_owned());
        steps.push(s);
    }
    steps.push(doc_step());
    steps.push(step(
        "interop: third-party clients and a browser, every runtime",
        &["xtask", "interop"],
    ));
    steps.push(step(
        "fuzz both targets (bounded: 15 s each)",
        &["xtask", "fuzz", "--seconds", "15"],
    ));
    steps
}

fn run(steps: Vec<Step>) -> ExitCode {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let started = Instant::now();
    let mut results = Vec::new();
    for s in &steps {
        eprintln!("\n==> {}: cargo {}", s.name, s.args.join(" "));
        let t = Instant::now();
        let ok = Command::new(&cargo)
            .args(&s.args)
            .envs(s.env.iter().copied())
            .status()
            .map(|st| st.success())
            .unwrap_or(false);
        results.push((s.name.clone(), ok, t.elapsed()));
        if !ok {
            break;
        }
    }
    println!("\nsummary:");
    for (name, ok, took) in &results {
        let verdict = if *ok { "ok    " } else { "FAILED" };
        println!("  {verdict} {:>7.1}s  {name}", took.as_secs_f64());
    }
    for s in steps.iter().skip(results.len()) {
        println!("  skipped          {}", s.name);
    }
    let failed = results.iter().filter(|(_, ok, _)| !ok).count();
    let passed = results.len() - failed;
    println!("total time {:.1}s", started.elapsed().as_secs_f64());
    // Alone on its line, so CI's log reader can count steps.
    println!("xtask: {passed} passed, {failed} failed");
    if failed == 0 && results.len() == steps.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The fuzz targets (see `fuzz/fuzz_targets`).
const FUZZ_TARGETS: &[&str] = &["machine", "frames"];

/// Runs each fuzz target for `seconds`. cargo-fuzz passes `-Z` flags; the stable
/// toolchain accepts them with `RUSTC_BOOTSTRAP=1`, so no nightly is needed.
fn fuzz(seconds: u64) -> ExitCode {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let have_fuzz = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_fuzz && !sh(".", &cargo, &["install", "cargo-fuzz", "--locked"]) {
        eprintln!("fuzz: could not install cargo-fuzz");
        return ExitCode::FAILURE;
    }
    let mut failed = 0;
    let mut results = Vec::new();
    for target in FUZZ_TARGETS {
        let scratch = format!("target/fuzz-corpus/{target}");
        let _ = std::fs::create_dir_all(&scratch);
        let t = Instant::now();
        let out = Command::new(&cargo)
            .args(["fuzz", "run", "--fuzz-dir", "fuzz", "-s", "none", target])
            .args([scratch.as_str(), &format!("fuzz/corpus/{target}")])
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=2048",
            ])
            .env("RUSTC_BOOTSTRAP", "1")
            .output();
        let (ok, runs) = match out {
            Ok(out) => {
                let log = String::from_utf8_lossy(&out.stderr);
                let runs = log
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("Done ").and_then(|r| r.split(' ').next()))
                    .unwrap_or("?")
                    .to_owned();
                if !out.status.success() {
                    eprintln!("{log}");
                }
                (out.status.success(), runs)
            }
            Err(err) => {
                eprintln!(
                    "cargo fuzz could not start ({err}); install it with `cargo install cargo-fuzz`"
                );
                (false, "0".to_owned())
            }
        };
        if !ok {
            failed += 1;
        }
        results.push((*target, ok, runs, t.elapsed()));
    }
    println!("\nfuzz summary:");
    for (target, ok, runs, took) in &results {
        let verdict = if *ok { "ok    " } else { "FAILED" };
        println!(
            "  {verdict} {:>7.1}s  {target}: {runs} executions",
            took.as_secs_f64()
        );
    }
    println!("fuzz: {} passed, {failed} failed", results.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `program args` in `dir`, returning whether it succeeded.
fn sh(dir: &str, program: &str, args: &[&str]) -> bool {
    eprintln!("==> ({dir}) {program} {}", args.join(" "));
    Command::new(program)
        .args(args)
        .current_dir(dir)
        // apt-get must never wait for an answer (CI has no standard input).
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Installs what the interop tests need, each only when missing: the pinned npm packages,
/// the pinned Python packages and Debian's Chromium.
fn interop_setup() -> bool {
    let npm_ok = std::path::Path::new("interop/node_modules/.package-lock.json").exists()
        || sh("interop", "npm", &["ci", "--no-audit", "--no-fund"]);
    let py_ok = sh("interop", "python3", &["-c", "import gql, websockets"])
        || sh(
            "interop",
            "python3",
            &["-m", "pip", "install", "--quiet", "-r", "requirements.txt"],
        );
    let chromium_ok = std::path::Path::new(CHROMIUM).exists()
        || (sh(".", "apt-get", &["update", "-qq"])
            && sh(
                ".",
                "apt-get",
                &[
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "chromium",
                ],
            ));
    npm_ok && py_ok && chromium_ok
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's redis-server, for the multi-process tests and the cross-process bench.
fn redis_setup() -> bool {
    let have = Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    have || (sh(".", "apt-get", &["update", "-qq"])
        && sh(
            ".",
            "apt-get",
            &[
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "redis-server",
            ],
        ))
}

/// The interop clients: (name, program, script).
const CLIENTS: &[(&str, &str, &str)] = &[
    ("npm graphql-ws", "node", "graphql-ws.mjs"),
    (
        "npm subscriptions-transport-ws",
        "node",
        "subscriptions-transport-ws.mjs",
    ),
    ("python gql (both subprotocols)", "python3", "gql_client.py"),
    ("chromium + graphql-ws", "node", "browser.mjs"),
];

/// Starts `program args` (a server that prints `listening on URL` first); returns the
/// process and the URL.
fn spawn_server(program: &str, args: &[&str]) -> Option<(std::process::Child, String)> {
    use std::io::BufRead;
    let mut child = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    match line.trim().strip_prefix("listening on ") {
        Some(url) => Some((child, url.to_owned())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

/// Starts the demo server on `runtime` with the interop settings; returns it and its URL.
fn start_demo(runtime: &str) -> Option<(std::process::Child, String)> {
    let target = env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    spawn_server(
        &format!("{target}/debug/demo"),
        &[
            "--addr",
            "127.0.0.1:0",
            "--runtime",
            runtime,
            "--auth-token",
            "interop",
            "--keepalive-ms",
            "300",
        ],
    )
}

/// Every interop client against the demo server on every runtime.
fn interop() -> ExitCode {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    if !interop_setup() {
        eprintln!("interop: could not install the clients");
        return ExitCode::FAILURE;
    }
    let built = Command::new(&cargo)
        .args(["build", "-p", "subscope-examples", "--bin", "demo"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !built {
        return ExitCode::FAILURE;
    }
    let mut results = Vec::new();
    for runtime in RUNTIMES {
        for (name, program, script) in CLIENTS {
            let t = Instant::now();
            let ok = match start_demo(runtime) {
                Some((mut demo, url)) => {
                    let ok = sh("interop", program, &[script, &url]);
                    let _ = demo.kill();
                    let _ = demo.wait();
                    ok
                }
                None => false,
            };
            results.push((format!("{name} on {runtime}"), ok, t.elapsed()));
        }
    }
    println!("\ninterop summary:");
    for (name, ok, took) in &results {
        let verdict = if *ok { "ok    " } else { "FAILED" };
        println!("  {verdict} {:>7.1}s  {name}", took.as_secs_f64());
    }
    let failed = results.iter().filter(|r| !r.1).count();
    println!(
        "interop: {} passed, {failed} failed",
        results.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A benchmark contender: name, binary, arguments, whether it runs the GraphQL schema.
struct Contender {
    name: &'static str,
    binary: &'static str,
    args: &'static [&'static str],
    graphql: bool,
}

const CONTENDERS: &[Contender] = &[
    Contender {
        name: "subscope-tokio",
        binary: "demo",
        args: &["--runtime", "tokio"],
        graphql: true,
    },
    Contender {
        name: "subscope-smol",
        binary: "demo",
        args: &["--runtime", "smol"],
        graphql: true,
    },
    Contender {
        name: "subscope-async-std",
        binary: "demo",
        args: &["--runtime", "async-std"],
        graphql: true,
    },
    Contender {
        name: "async-graphql",
        binary: "bench-server",
        args: &["--kind", "async-graphql"],
        graphql: true,
    },
    Contender {
        name: "limit",
        binary: "bench-server",
        args: &["--kind", "limit"],
        graphql: false,
    },
];

/// (scenario, loadgen arguments quick, full, metrics shown: (json key, label, higher is better)).
type Metric = (&'static str, &'static str, bool);
struct Scenario {
    name: &'static str,
    title: &'static str,
    quick: &'static [&'static str],
    full: &'static [&'static str],
    metrics: &'static [Metric],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "fanout",
        title: "Wide fan-out: C connections x S subscriptions to messages(topic), P messages published with W mutations in flight",
        quick: &["--connections", "10", "--subs", "10", "--messages", "300"],
        full: &["--connections", "100", "--subs", "10", "--messages", "200"],
        metrics: &[
            ("events_per_s", "events/s", true),
            ("p50_ms", "p50 latency (ms)", false),
            ("p99_ms", "p99 latency (ms)", false),
            ("delivered", "delivered", true),
            ("expected", "expected", true),
        ],
    },
    Scenario {
        name: "deep",
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
        title: "Many idle subscriptions: N connections, 1 then 5 quiet subscriptions each",
        quick: &["--connections", "200"],
        full: &["--connections", "1000"],
        metrics: &[
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
        ],
    },
    Scenario {
        name: "churn",
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
        title: "Cleanup latency: client TCP reset to the stream dropped on the server",
        quick: &["--samples", "20"],
        full: &["--samples", "100"],
        metrics: &[("p50_ms", "p50 (ms)", false), ("p99_ms", "p99 (ms)", false)],
    },
];

/// A number from a flat JSON object line (`None` for null or missing).
fn json_number(line: &str, key: &str) -> Option<f64> {
    let rest = line.split(&format!("\"{key}\":")).nth(1)?;
    let value: String = rest
        .chars()
        .take_while(|c| !matches!(c, ',' | '}'))
        .collect();
    value.trim().parse().ok()
}

/// Starts a contender (with `extra` arguments) and returns it with its URL.
fn start_contender(
    dir: &str,
    c: &Contender,
    extra: &[&str],
) -> Option<(std::process::Child, String)> {
    let mut args = vec!["--addr", "127.0.0.1:0"];
    args.extend_from_slice(c.args);
    args.extend_from_slice(extra);
    spawn_server(&format!("{dir}/{}", c.binary), &args)
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_owned(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// A horizontal bar chart of one metric across contenders.
fn bar_chart(title: &str, label: &str, rows: &[(&str, Option<f64>)]) -> String {
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
fn memory_fanout_line(json: &str) -> String {
    json.split("\"fanout\":{\"subscope-tokio\":")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .map(|r| format!("{r}}}"))
        .unwrap_or_default()
}

/// Two demo processes (tokio) behind one redis-server: subscribers on one, the publisher on
/// the other. Returns the load generator's JSON line.
fn redis_fanout(bin: &str, quick: bool, window: u64) -> Option<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let url = format!("redis://127.0.0.1:{port}");
    let demo = |name| Contender {
        name,
        binary: "demo",
        args: &["--runtime", "tokio"],
        graphql: true,
    };
    let result = (|| {
        let with_redis = |c: &Contender| start_contender(bin, c, &["--redis", &url]);
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

/// A load-generator result that lost events: `Some((lost, expected))`.
fn loss(line: &str) -> Option<(f64, f64)> {
    let lost = json_number(line, "lost")?;
    (lost > 0.0).then(|| (lost, json_number(line, "expected").unwrap_or(f64::NAN)))
}

/// Runs every scenario against every contender; writes target/bench/*.{md,json,svg}.
/// `window` is how many `publish` mutations the fan-out publishers keep in flight.
fn bench(quick: bool, window: u64) -> ExitCode {
    let window_arg = window.to_string();
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
        return ExitCode::FAILURE;
    }
    let target = env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    let bin = format!("{target}/release");
    let out_dir = format!("{target}/bench");
    let _ = std::fs::create_dir_all(&out_dir);
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
    for (si, sc) in SCENARIOS.iter().enumerate() {
        let mut results: Vec<(&str, String)> = Vec::new();
        for c in CONTENDERS {
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
            if si > 0 { "," } else { "" },
            sc.name
        ));
        for (i, (name, line)) in results.iter().enumerate() {
            json.push_str(&format!(
                "{}\"{name}\":{line}",
                if i > 0 { "," } else { "" }
            ));
        }
        json.push('}');
    }
    match redis_fanout(&bin, quick, window) {
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
        None => {
            markdown.push_str(
                "\n## Cross-process fan-out through Redis\n\nskipped: redis-server not available\n",
            );
        }
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

fn soak(options: &[&str]) -> ExitCode {
    let build = run(vec![
        step(
            "build release demo",
            &[
                "build",
                "--release",
                "-p",
                "subscope-examples",
                "--bin",
                "demo",
            ],
        ),
        step(
            "build release soak tool",
            &[
                "build",
                "--release",
                "-p",
                "subscope-tests",
                "--bin",
                "soak",
            ],
        ),
    ]);
    if build != ExitCode::SUCCESS {
        return build;
    }
    let target = env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    let ok = Command::new(format!("{target}/release/soak"))
        .args(["--demo", &format!("{target}/release/demo")])
        .args(["--out", &format!("{target}/soak")])
        .args(options)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["ci"] => run(ci_steps()),
        ["test"] => run(suite_steps(RUNTIMES)),
        ["test", rt] if RUNTIMES.contains(rt) => run(suite_steps(&[rt])),
        ["lint"] => run(lint_steps()),
        ["doc"] => run(vec![doc_step()]),
        ["soak", rest @ ..] => soak(rest),
        ["interop"] => interop(),
        ["setup-redis"] => {
            if redis_setup() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        ["bench", rest @ ..] => {
            let quick = rest.contains(&"--quick");
            let window = rest
                .iter()
                .position(|a| *a == "--window")
                .and_then(|i| rest.get(i + 1)?.parse().ok());
            let known = rest.iter().enumerate().all(|(i, a)| {
                *a == "--quick" || *a == "--window" || (i > 0 && rest[i - 1] == "--window")
            });
            match (
                known,
                window.or((!rest.contains(&"--window")).then_some(64)),
            ) {
                (true, Some(w)) if w > 0 => bench(quick, w),
                _ => {
                    eprintln!("{}", usage());
                    ExitCode::from(2)
                }
            }
        }
        ["fuzz"] => fuzz(20),
        ["fuzz", "--seconds", n] => match n.parse() {
            Ok(n) => fuzz(n),
            Err(_) => {
                eprintln!("{}", usage());
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("{}", usage());
            ExitCode::from(2)
        }
    }
}
