//! `cargo xtask soak`: churn against the release demo server, sampling RSS and gauges.

use std::env;
use std::process::{Command, ExitCode};

use crate::steps::{run, step};

pub(crate) fn soak(options: &[&str]) -> ExitCode {
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
