//! `cargo xtask interop`: third-party clients and a browser against the demo server.

use std::env;
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::setup::{interop_setup, sh};
use crate::steps::RUNTIMES;

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
];

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

/// Starts the demo server on `runtime` with the interop settings and `extra` flags;
/// returns it and its URL.
pub(crate) fn start_demo(runtime: &str, extra: &[&str]) -> Option<(std::process::Child, String)> {
    let target = env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    let mut args = vec![
        "--addr",
        "127.0.0.1:0",
        "--runtime",
        runtime,
        "--auth-token",
        "interop",
        "--keepalive-ms",
        "300",
    ];
    args.extend_from_slice(extra);
    spawn_server(&format!("{target}/debug/demo"), &args)
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
            let ok = match start_demo(runtime, extra) {
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
