//! CI steps: fmt, clippy, tests per runtime, docs, packaging, and the runner that prints
//! the summary CI reads.

use std::env;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The runtimes the socket suite runs on, each as a feature of `subscope-tests`.
pub(crate) const RUNTIMES: &[&str] = &["tokio", "smol", "async-std"];

/// Library crates, each linted alone so a missing feature or dependency shows up.
pub(crate) const CRATES: &[&str] = &[
    "subscope-protocol",
    "subscope-deflate",
    "subscope-core",
    "subscope-tokio",
    "subscope-async-io",
    "subscope-smol",
    "subscope-async-std",
    "subscope-axum",
];

pub(crate) struct Step {
    name: String,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
}

pub(crate) fn step(name: impl Into<String>, args: &[&str]) -> Step {
    Step {
        name: name.into(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: Vec::new(),
    }
}

pub(crate) fn lint_steps() -> Vec<Step> {
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
    // The engine's optional parts: without hyper (serve_websocket only) and without
    // compression, each build must stand alone.
    for features in [
        &[][..],
        &["--features", "deflate"][..],
        &["--features", "http"][..],
    ] {
        let mut args = vec!["clippy", "-p", "subscope-core", "--no-default-features"];
        args.extend_from_slice(features);
        args.extend_from_slice(&["--all-targets", "--", "-D", "warnings"]);
        let label = features.get(1).copied().unwrap_or("none");
        steps.push(step(
            format!("clippy subscope-core (default features off, on: {label})"),
            &args,
        ));
    }
    steps.push(step(
        "clippy the runtime adapters without http and deflate",
        &[
            "clippy",
            "-p",
            "subscope-tokio",
            "-p",
            "subscope-smol",
            "-p",
            "subscope-async-std",
            "--no-default-features",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ));
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

/// `name` run as it is, then again over compressed connections (`SUBSCOPE_TEST_DEFLATE=1`:
/// every test client offers permessage-deflate and the demo servers accept it); the second
/// run reuses the first one's binaries.
fn plain_and_compressed(name: &str, args: &[&str]) -> [Step; 2] {
    let mut plain = step(name, args);
    let mut compressed = step(format!("{name}, compressed (permessage-deflate)"), args);
    compressed.env.push(("SUBSCOPE_TEST_DEFLATE", "1"));
    // async-std sizes its pool by the CPU count; the suite gives every runtime two worker
    // threads (tests that block one in user code need the other), whatever the machine.
    for s in [&mut plain, &mut compressed] {
        s.env.push(("ASYNC_STD_THREAD_COUNT", "2"));
    }
    [plain, compressed]
}

/// The socket suite per runtime, plain and compressed.
pub(crate) fn suite_steps(runtimes: &[&str]) -> Vec<Step> {
    runtimes
        .iter()
        .flat_map(|rt| {
            let features = format!("rt-{rt}");
            plain_and_compressed(
                &format!("socket suite on {rt}"),
                &[
                    "test",
                    "-p",
                    "subscope-tests",
                    "--no-default-features",
                    "--features",
                    &features,
                ],
            )
        })
        .collect()
}

pub(crate) fn doc_step() -> Step {
    let mut s = step(
        "rustdoc -D warnings",
        &["doc", "--workspace", "--no-deps", "--all-features"],
    );
    s.env.push(("RUSTDOCFLAGS", "-D warnings"));
    s
}

/// The crates published to crates.io.
pub(crate) const PUBLISHED: &[&str] = &[
    "subscope-protocol",
    "subscope-deflate",
    "subscope-core",
    "subscope-tokio",
    "subscope-async-io",
    "subscope-smol",
    "subscope-async-std",
    "subscope-axum",
    "subscope-redis",
    "subscope",
];

/// Where `cargo package` verifies: its own target directory, so stale builds of our crates
/// can be removed without touching the workspace's.
fn verify_dir() -> String {
    let target = env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    format!("{target}/package-verify")
}

/// Removes what earlier `cargo package` runs left of our own crates. Verification resolves
/// path dependencies through a local overlay registry, unpacked under
/// `$CARGO_HOME/registry/src/-<hash of the package dir>/NAME-VERSION`, and cargo treats a
/// registry crate of a given name and version as immutable: it reuses both the unpacked
/// sources and their compiled artifacts. With an unchanged version a second run would verify
/// against the first run's code, so both are removed first (third-party builds stay cached).
pub(crate) fn clear_package_overlays() {
    for dir in ["debug/.fingerprint", "debug/deps", "debug/build"] {
        let Ok(entries) = std::fs::read_dir(format!("{}/{dir}", verify_dir())) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("subscope") {
                let path = entry.path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
    }
    let home = env::var("CARGO_HOME")
        .ok()
        .or_else(|| env::var("HOME").ok().map(|h| format!("{h}/.cargo")));
    let Some(src) = home.map(|h| std::path::PathBuf::from(h).join("registry/src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return;
    };
    for registry in registries.flatten() {
        // Local overlays are named `-<hash>`; crates.io's is `index.crates.io-...`.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(crates) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for krate in crates.flatten() {
            let name = krate.file_name().to_string_lossy().into_owned();
            if PUBLISHED.iter().any(|p| name.starts_with(&format!("{p}-"))) {
                let _ = std::fs::remove_dir_all(krate.path());
            }
        }
    }
}

/// `cargo package` for every published crate: the archive builds on its own, path
/// dependencies resolved against each other as cargo's local overlay does for a workspace.
pub(crate) fn package_step() -> Step {
    let target = verify_dir();
    let mut args = vec!["package", "--allow-dirty", "--target-dir", target.as_str()];
    for krate in PUBLISHED {
        args.extend(["-p", krate]);
    }
    step("cargo package (every published crate, verified)", &args)
}

pub(crate) fn ci_steps() -> Vec<Step> {
    let mut steps = lint_steps();
    steps.push(step(
        "protocol, deflate and core unit tests (no runtime)",
        &[
            "test",
            "-p",
            "subscope-protocol",
            "-p",
            "subscope-deflate",
            "-p",
            "subscope-core",
            "-p",
            "subscope",
        ],
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
    steps.push(step(
        "test bench: an idle connection's heap by stage, and what deflate adds (dhat)",
        &[
            "test",
            "-p",
            "subscope-testbench",
            "--features",
            "dhat-heap",
            "--test",
            "idle_heap",
            "--test",
            "deflate_heap",
            "--",
            "--nocapture",
        ],
    ));
    steps.extend(suite_steps(RUNTIMES));
    steps.extend(plain_and_compressed(
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
        "demo binary and runnable example tests, incl. two processes behind Redis (every runtime)",
        &["test", "-p", "subscope-examples"],
    ));
    for rt in RUNTIMES {
        let mut s = step(
            format!("demo binaries and examples built for {rt} alone"),
            &[
                "build",
                "-p",
                "subscope-examples",
                "--bins",
                "--examples",
                "--no-default-features",
                "--features",
            ],
        );
        s.args.push((*rt).to_owned());
        steps.push(s);
    }
    steps.push(doc_step());
    // Through xtask, which clears stale overlay sources first.
    steps.push(step(
        "cargo package (every published crate, verified)",
        &["xtask", "package"],
    ));
    steps.push(step(
        "interop: third-party clients and a browser, every runtime",
        &["xtask", "interop"],
    ));
    steps.push(step(
        "fuzz every target: machine, frames, deflate, accept (bounded: 15 s each)",
        &["xtask", "fuzz", "--seconds", "15"],
    ));
    // A one-shot build gains nothing from incremental state, which was a third of the
    // target directory (a CI machine once ran out of disk while linking).
    for s in &mut steps {
        s.env.push(("CARGO_INCREMENTAL", "0"));
    }
    steps
}

/// Prints the target directory's size and the disk space left, so a run that fails for
/// want of disk says so.
fn report_disk() {
    let target = env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    if let Ok(out) = Command::new("du").args(["-sh", &target]).output() {
        let size = String::from_utf8_lossy(&out.stdout);
        if let Some(size) = size.split_whitespace().next() {
            println!("target directory {size}");
        }
    }
    if let Ok(out) = Command::new("df").args(["-h", &target]).output() {
        let table = String::from_utf8_lossy(&out.stdout);
        if let Some(free) = table
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(3))
        {
            println!("disk free {free}");
        }
    }
}

pub(crate) fn run(steps: Vec<Step>) -> ExitCode {
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
    report_disk();
    // Alone on its line, so CI's log reader can count steps.
    println!("xtask: {passed} passed, {failed} failed");
    if failed == 0 && results.len() == steps.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
