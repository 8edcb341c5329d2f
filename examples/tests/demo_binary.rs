//! The `demo` binary as a user runs it: its CLI, its announcement line, both subprotocols,
//! and Ctrl-C (SIGINT) as a graceful shutdown that closes sockets 1001.

use std::process::Command;

mod common;

use common::{DEADLINE, Demo, close_code, connect, init, recv, send};

#[test]
fn help_and_bad_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--keepalive-ms", "--allowed-origin", "--max-connections"] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
    assert!(help.contains("[default: 3000]"), "{help}");
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--runtime", "tokyo"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--runtime"));
}

fn serves_both_subprotocols_and_shuts_down_on_sigint(runtime: &str) {
    let mut demo = Demo::start(&["--runtime", runtime, "--init-timeout-ms", "5000"]);
    let mut modern = connect(&demo.url, "graphql-transport-ws");
    init(&mut modern);
    send(
        &mut modern,
        serde_json::json!({"id": "1", "type": "subscribe",
        "payload": {"query": "{ hello serverStats { connections subscriptions connectionsTotal subscriptionsTotal } }"}}),
    );
    let m = recv(&mut modern);
    assert_eq!(m["payload"]["data"]["hello"], "world");
    assert_eq!(m["payload"]["data"]["serverStats"]["connections"], 1);
    assert_eq!(recv(&mut modern)["type"], "complete");
    send(
        &mut modern,
        serde_json::json!({"id": "2", "type": "subscribe",
        "payload": {"query": "subscription { ticks(everyMs: 60000) }"}}),
    );
    assert_eq!(recv(&mut modern)["payload"]["data"]["ticks"], 0);

    let mut legacy = connect(&demo.url, "graphql-ws");
    init(&mut legacy);
    assert_eq!(recv(&mut legacy)["type"], "ka");
    send(
        &mut legacy,
        serde_json::json!({"id": "1", "type": "start",
        "payload": {"query": "{ liveStreams }"}}),
    );
    assert_eq!(recv(&mut legacy)["payload"]["data"]["liveStreams"], 1);

    demo.interrupt();
    assert_eq!(close_code(&mut modern), 1001);
    assert_eq!(close_code(&mut legacy), 1001);
    demo.wait_success();
}

fn cli_timeouts_and_limits_apply(runtime: &str) {
    let demo = Demo::start(&[
        "--runtime",
        runtime,
        "--init-timeout-ms",
        "100",
        "--max-subscriptions",
        "1",
    ]);
    let mut ws = connect(&demo.url, "graphql-transport-ws");
    assert_eq!(close_code(&mut ws), 4408);
    let mut ws = connect(&demo.url, "graphql-ws");
    init(&mut ws);
    assert_eq!(recv(&mut ws)["type"], "ka");
    for id in ["a", "b"] {
        send(
            &mut ws,
            serde_json::json!({"id": id, "type": "start",
            "payload": {"query": "subscription { delayed(ms: 60000) }"}}),
        );
    }
    let m = recv(&mut ws);
    assert_eq!(
        m,
        serde_json::json!({"id": "b", "type": "error", "payload": {"message": "Subscription limit reached"}})
    );
}

/// Upgrades with an `Origin` header; the HTTP status the demo answered.
fn upgrade_status(url: &str, origin: &str) -> u16 {
    use tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("request");
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    headers.insert("origin", origin.parse().expect("header"));
    let addr = url.trim_start_matches("ws://").trim_end_matches("/graphql");
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    match tungstenite::client(request, stream) {
        Ok((_ws, response)) => response.status().as_u16(),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            response.status().as_u16()
        }
        Err(other) => panic!("upgrade failed without a status: {other}"),
    }
}

fn allowed_origin_flag_refuses_foreign_browsers(runtime: &str) {
    let demo = Demo::start(&[
        "--runtime",
        runtime,
        "--allowed-origin",
        "https://app.example",
        "--allowed-origin=http://localhost:3000",
    ]);
    assert_eq!(upgrade_status(&demo.url, "https://evil.example"), 403);
    assert_eq!(upgrade_status(&demo.url, "https://app.example"), 101);
    assert_eq!(upgrade_status(&demo.url, "http://localhost:3000"), 101);
    // No Origin (not a browser): allowed.
    let mut ws = connect(&demo.url, "graphql-transport-ws");
    init(&mut ws);
}

macro_rules! per_runtime {
    ($($rt:ident => $name:literal, $feature:literal;)*) => {
        $(
            #[cfg(feature = $feature)]
            mod $rt {
                #[test]
                fn serves_both_subprotocols_and_shuts_down_on_sigint() {
                    super::serves_both_subprotocols_and_shuts_down_on_sigint($name);
                }

                #[test]
                fn cli_timeouts_and_limits_apply() {
                    super::cli_timeouts_and_limits_apply($name);
                }

                #[test]
                fn allowed_origin_flag_refuses_foreign_browsers() {
                    super::allowed_origin_flag_refuses_foreign_browsers($name);
                }
            }
        )*
    };
}

per_runtime! {
    tokio => "tokio", "tokio";
    smol => "smol", "smol";
    async_std => "async-std", "async-std";
}
