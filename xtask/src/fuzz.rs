//! `cargo xtask fuzz`: every fuzz target for a bounded time.

use std::env;
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::setup::sh;

/// The fuzz targets (see `fuzz/fuzz_targets`).
pub(crate) const FUZZ_TARGETS: &[&str] = &["machine", "frames", "deflate", "accept"];

/// Runs each fuzz target for `seconds`. cargo-fuzz passes `-Z` flags; the stable
/// toolchain accepts them with `RUSTC_BOOTSTRAP=1`, so no nightly is needed.
pub(crate) fn fuzz(seconds: u64) -> ExitCode {
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
