//! Installers: npm and Python interop clients, Chromium, redis-server.

use std::process::Command;

/// Runs `program args` in `dir`, returning whether it succeeded.
pub(crate) fn sh(dir: &str, program: &str, args: &[&str]) -> bool {
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
pub(crate) fn interop_setup() -> bool {
    let npm_ok = npm_up_to_date() || sh("interop", "npm", &["ci", "--no-audit", "--no-fund"]);
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

/// Whether `interop/node_modules` was installed from the current `package-lock.json`: npm
/// writes `node_modules/.package-lock.json` last in every install, so a lock file changed
/// since (a package added or bumped) is newer than it and calls for `npm ci` again.
fn npm_up_to_date() -> bool {
    let modified = |path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (
        modified("interop/node_modules/.package-lock.json"),
        modified("interop/package-lock.json"),
    ) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    }
}

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's redis-server, for the multi-process tests and the cross-process bench.
pub(crate) fn redis_setup() -> bool {
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
