//! `cargo xtask interop`: third-party clients and a browser against the demo server.

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::OnceLock;
use std::time::Instant;

use crate::bench::start_redis;
use crate::setup::{interop_setup, redis_setup};
use crate::steps::RUNTIMES;

/// In a client's demo flags: the URL of a redis-server xtask starts for that client. Such
/// a client also gets what it needs to kill and restart the demo itself:
/// `SUBSCOPE_DEMO_PID`, `SUBSCOPE_DEMO` (the binary), `SUBSCOPE_DEMO_ARGS` (one a line)
/// and `SUBSCOPE_REDIS_URL`.
const REDIS_URL: &str = "{redis-url}";

/// In a client's demo flags: `--tls-cert CERT --tls-key KEY` of a self-signed certificate
/// for `localhost` and `127.0.0.1` (see [`tls_cert`]), so the demo serves `wss://` and
/// `https://` with HTTP/2 by ALPN. Such a client gets the certificate's path as
/// `SUBSCOPE_TLS_CERT` and as `NODE_EXTRA_CA_CERTS`, so Node trusts it like a real one
/// (no `rejectUnauthorized: false` in the scripts: they check the certificate as clients
/// in production do).
const TLS: &str = "{tls}";

/// The interop clients: (name, program, script, extra demo flags).
pub(crate) const CLIENTS: &[(&str, &str, &str, &[&str])] = &[
    ("npm graphql-ws", "node", "graphql-ws.mjs", &[]),
    (
        "npm subscriptions-transport-ws",
        "node",
        "subscriptions-transport-ws.mjs",
        &[],
    ),
    (
        "python gql (both subprotocols)",
        "python3",
        "gql_client.py",
        &[],
    ),
    ("chromium + graphql-ws", "node", "browser.mjs", &[]),
    (
        "npm graphql-sse (both modes)",
        "node",
        "graphql-sse.mjs",
        &[],
    ),
    (
        "@apollo/client multipart",
        "node",
        "apollo-multipart.mjs",
        &[],
    ),
    ("chromium EventSource (SSE)", "node", "browser-sse.mjs", &[]),
    (
        "chromium EventSource resumes across SIGKILL + restart (Redis Streams)",
        "node",
        "browser-sse-resume.mjs",
        &["--redis", REDIS_URL, "--history", "1000"],
    ),
    (
        "npm ws, perMessageDeflate",
        "node",
        "deflate-ws.mjs",
        &["--deflate"],
    ),
    (
        "python websockets, permessage-deflate",
        "python3",
        "deflate_client.py",
        &["--deflate"],
    ),
    (
        "chromium WebSocket, permessage-deflate",
        "node",
        "browser-deflate.mjs",
        &["--deflate"],
    ),
    (
        "npm graphql-ws over wss:// (TLS)",
        "node",
        "graphql-ws.mjs",
        &[TLS],
    ),
    (
        "npm graphql-sse over https:// (TLS, both modes)",
        "node",
        "graphql-sse.mjs",
        &[TLS],
    ),
    (
        "chromium: 8 EventSources at once over HTTP/2 (TLS)",
        "node",
        "browser-sse-h2.mjs",
        &[TLS],
    ),
    (
        "chromium GraphiQL runs a subscription",
        "node",
        "browser-graphiql.mjs",
        &[],
    ),
];

/// The (certificate, key) PEM files of [`TLS`]: an EC P-256 certificate for
/// `DNS:localhost` and `IP:127.0.0.1`, made once per run with the `openssl` CLI in
/// `target/interop-tls/` (absolute paths: clients run in `interop/`). Fresh each run, so
/// no key is checked in and none expires between runs. `None` if openssl failed.
fn tls_cert() -> Option<&'static (String, String)> {
    static CERT: OnceLock<Option<(String, String)>> = OnceLock::new();
    CERT.get_or_init(|| {
        let dir = target_dir().join("interop-tls");
        std::fs::create_dir_all(&dir).ok()?;
        let [cert, key] =
            ["cert.pem", "key.pem"].map(|f| dir.join(f).to_string_lossy().into_owned());
        let made = Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "2"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            // An end-entity certificate: rustls-based clients refuse a CA as a server's.
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .args(["-keyout", &key, "-out", &cert])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        made.then_some((cert, key))
    })
    .as_ref()
}

/// A free loopback port below the kernel's ephemeral range (`ip_local_port_range`), so no
/// outgoing connection can take it; `None` if none binds.
fn port_below_ephemeral_range() -> Option<u16> {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    // Start at a point that differs per run (the process id), so parallel runs spread out.
    let span = low.saturating_sub(20_000).max(1);
    let start = 20_000 + (std::process::id() % u32::from(span)) as u16;
    (0..span)
        .map(|i| 20_000 + (start - 20_000 + i) % span)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// The absolute target directory (`CARGO_TARGET_DIR` or `target`).
fn target_dir() -> PathBuf {
    let target = env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    env::current_dir().unwrap_or_default().join(target)
}

/// Starts `program args` (a server that prints `listening on URL` first); returns the
/// process and the URL.
pub(crate) fn spawn_server(program: &str, args: &[&str]) -> Option<(std::process::Child, String)> {
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

/// The demo binary (an absolute path: clients run in `interop/`) and its arguments on
/// `runtime` with the interop settings and `extra` flags.
fn demo_command(runtime: &str, extra: &[String]) -> (String, Vec<String>) {
    let bin = target_dir().join("debug/demo");
    let mut args: Vec<String> = [
        "--addr",
        "127.0.0.1:0",
        "--runtime",
        runtime,
        "--auth-token",
        "interop",
        "--keepalive-ms",
        "300",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend_from_slice(extra);
    (bin.to_string_lossy().into_owned(), args)
}

/// Runs one client against a fresh demo server (and redis-server, if its flags name one;
/// over TLS, if they hold [`TLS`]).
fn run_client(runtime: &str, program: &str, script: &str, extra: &[&str]) -> bool {
    let tls = if extra.contains(&TLS) {
        let Some(pair) = tls_cert() else {
            eprintln!("interop: {script} needs the openssl CLI for its certificate");
            return false;
        };
        Some(pair)
    } else {
        None
    };
    let mut extra: Vec<String> = extra
        .iter()
        .flat_map(|&a| match (a, tls) {
            (TLS, Some((cert, key))) => {
                vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()]
            }
            _ => vec![a],
        })
        .map(str::to_owned)
        .collect();
    let mut redis = None;
    if extra.iter().any(|a| a == REDIS_URL) {
        let Some((child, url)) = redis_setup().then(start_redis).flatten() else {
            eprintln!("interop: {script} needs redis-server");
            return false;
        };
        for a in &mut extra {
            if a == REDIS_URL {
                a.clone_from(&url);
            }
        }
        redis = Some((child, url));
    }
    let (bin, mut args) = demo_command(runtime, &extra);
    if redis.is_some() {
        // Such a client restarts the demo on the same port after killing it. A port the
        // kernel picked (port 0) may meanwhile be the source port of an outgoing
        // connection (to Redis, say), and the restart could not bind it: take one below
        // the ephemeral range, which the kernel never hands out.
        if let Some(port) = port_below_ephemeral_range()
            && let Some(addr) = args.iter_mut().find(|a| *a == "127.0.0.1:0")
        {
            *addr = format!("127.0.0.1:{port}");
        }
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let ok = match spawn_server(&bin, &argv) {
        Some((mut demo, url)) => {
            eprintln!("==> (interop) {program} {script} {url}");
            let mut client = Command::new(program);
            client
                .args([script, &url])
                .current_dir("interop")
                .stdin(std::process::Stdio::null());
            if let Some((_, redis_url)) = &redis {
                client
                    .env("SUBSCOPE_REDIS_URL", redis_url)
                    .env("SUBSCOPE_DEMO_PID", demo.id().to_string())
                    .env("SUBSCOPE_DEMO", &bin)
                    .env("SUBSCOPE_DEMO_ARGS", args.join("\n"));
            }
            if let Some((cert, _)) = tls {
                client
                    .env("SUBSCOPE_TLS_CERT", cert)
                    .env("NODE_EXTRA_CA_CERTS", cert);
            }
            let ok = client.status().map(|s| s.success()).unwrap_or(false);
            let _ = demo.kill();
            let _ = demo.wait();
            ok
        }
        None => false,
    };
    if let Some((mut child, _)) = redis {
        let _ = child.kill();
        let _ = child.wait();
    }
    ok
}

/// Every interop client against the demo server on every runtime.
pub(crate) fn interop() -> ExitCode {
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
        for (name, program, script, extra) in CLIENTS {
            let t = Instant::now();
            let ok = run_client(runtime, program, script, extra);
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
