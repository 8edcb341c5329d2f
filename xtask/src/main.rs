//! Project automation. `cargo xtask ci` runs the whole CI matrix; see `usage()`.
//!
//! Only `std`: xtask must build in seconds on a fresh machine. One module per command.

mod bench;
mod bench_fleet;
mod bench_resume;
mod bench_scale;
mod fuzz;
mod interop;
mod setup;
mod soak;
mod steps;

use std::env;
use std::process::ExitCode;

use bench::bench;
use fuzz::fuzz;
use interop::interop;
use setup::redis_setup;
use soak::soak;
use steps::{RUNTIMES, ci_steps, doc_step, lint_steps, package_step, run, suite_steps};

fn usage() -> &'static str {
    "usage: cargo xtask <command>

commands:
  ci                 everything CI runs: fmt, clippy, unit tests, socket suite per runtime,
                     demo tests, examples per runtime, docs, packaging
  test [RUNTIME]     the socket suite, on one runtime or all of them
  lint               fmt --check and clippy -D warnings
  doc                rustdoc with -D warnings (broken intra-doc links denied)
  package            cargo package for every published crate
  bench [--quick] [--window N] [--only SCENARIO,...]
                     contenders (subscope per runtime, async-graphql's handler, a raw-frame
                     limit) under one load generator whose publishers keep N mutations in
                     flight (default 64); a run that loses events shows as lost, and the
                     command fails if a subscope contender lost one; `resume` (also a
                     scenario name for --only) adds history's cost, replay vs live rate,
                     Redis Streams vs pub/sub and a rolling restart; writes target/bench/
  bench --scale [--only SECTION,...]
                     the demo at the scale this machine's open-file limit allows, in a few
                     minutes: idle RSS per connection from 2k to ~19k connections (every
                     runtime), per subscription at 100k, one event to 100k subscribers
                     (shared or not), reconnect storms over WebSocket and SSE, and 4 demo
                     processes behind one Redis against one process (100k subscribers, a
                     pipelined publisher); sections idle, broadcast, storm, fleet; writes
                     target/bench/scale.md and scale-*.svg
  interop            npm graphql-ws, subscriptions-transport-ws, Python gql and headless
                     Chromium against the demo server on every runtime (installs them),
                     over TLS and HTTP/2 too, and GraphiQL in Chromium
  fuzz [--seconds N]  every fuzz target for N seconds each (default 20; needs cargo-fuzz),
                     reporting executions; crashes land in fuzz/artifacts
  soak [--minutes F] [--runtime NAME] [--clients N]
                     churn against the release demo server in its own process, sampling
                     its RSS and gauges; writes target/soak/soak-RUNTIME.{md,csv,svg}"
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
        ["package"] => {
            steps::clear_package_overlays();
            run(vec![package_step()])
        }
        ["soak", rest @ ..] => soak(rest),
        ["interop"] => interop(),
        ["setup-redis"] => {
            if redis_setup() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        ["bench", "--scale"] => bench_scale::scale(None),
        ["bench", "--scale", "--only", names] => {
            let only: Vec<&str> = names.split(',').collect();
            if only.iter().all(|n| bench_scale::SECTIONS.contains(n)) {
                bench_scale::scale(Some(&only))
            } else {
                eprintln!("{}", usage());
                ExitCode::from(2)
            }
        }
        ["bench", rest @ ..] => {
            let quick = rest.contains(&"--quick");
            let window = rest
                .iter()
                .position(|a| *a == "--window")
                .and_then(|i| rest.get(i + 1)?.parse().ok());
            let only: Option<Vec<&str>> = rest
                .iter()
                .position(|a| *a == "--only")
                .and_then(|i| rest.get(i + 1))
                .map(|names| names.split(',').collect());
            let known = rest.iter().enumerate().all(|(i, a)| {
                matches!(*a, "--quick" | "--window" | "--only")
                    || (i > 0 && matches!(rest[i - 1], "--window" | "--only"))
            });
            match (
                known,
                window.or((!rest.contains(&"--window")).then_some(64)),
            ) {
                (true, Some(w)) if w > 0 => bench(quick, w, only.as_deref()),
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
