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
    for flag in [
        "--keepalive-ms",
        "--allowed-origin",
        "--max-connections",
        "--tls-cert",
        "--tls-key",
    ] {
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

/// One HTTP/1.1 request on a fresh connection: the status, the head and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    tcp.write_all(request.as_bytes()).expect("write");
    // To the end of the response; a 101 stops at its head (a WebSocket follows).
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
        if bytes.starts_with(b"HTTP/1.1 101") && bytes.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let response = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// The port: GraphQL on `/graphql` only (404 elsewhere, upgrades included), the probes
/// and `/metrics` beside it; any of several `--auth-token`s is valid, a missing one is 401
/// with a challenge, a wrong one 403.
fn the_port_routes_by_path_and_refuses_by_credentials(runtime: &str) {
    let demo = Demo::start(&[
        "--runtime",
        runtime,
        "--auth-token",
        "one",
        "--auth-token",
        "two",
    ]);
    let addr = demo.addr();
    let query = r#"{"query":"{ hello }"}"#;
    let json = "content-type: application/json";
    for (token, status) in [
        (None, 401),
        (Some("three"), 403),
        (Some("one"), 200),
        (Some("two"), 200),
    ] {
        let auth = token.map(|t| format!("authorization: Bearer {t}"));
        let mut headers = vec![json];
        headers.extend(auth.as_deref());
        let (got, head, body) = http(addr, "POST", "/graphql", &headers, query);
        assert_eq!(got, status, "token {token:?}: {head}\n{body}");
        if status == 401 {
            assert!(head.contains("www-authenticate: bearer"), "{head}");
        }
        if status == 200 {
            assert!(body.contains(r#""hello":"world""#), "{body}");
        }
    }
    let bearer = "authorization: Bearer one";
    let (status, _, body) = http(addr, "POST", "/elsewhere", &[json, bearer], query);
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = http(addr, "GET", "/", &[], "");
    assert_eq!(status, 404);
    let upgrade = [
        "upgrade: websocket",
        "connection: upgrade",
        "sec-websocket-version: 13",
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-protocol: graphql-transport-ws",
    ];
    let (status, _, _) = http(addr, "GET", "/elsewhere", &upgrade, "");
    assert_eq!(status, 404, "an upgrade elsewhere is not a WebSocket");
    let (status, _, _) = http(addr, "GET", "/graphql", &upgrade, "");
    assert_eq!(status, 101, "the GraphQL path upgrades");
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let (status, _, got) = http(addr, "GET", path, &[], "");
        assert_eq!((status, got.as_str()), (200, body), "{path}");
    }
    let (status, head, metrics) = http(addr, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        metrics.contains("subscope_http_requests_total"),
        "{metrics}"
    );
    // The WebSocket side takes either token, and refuses a wrong one with 4403.
    let mut ws = connect(&demo.url, "graphql-transport-ws");
    send(
        &mut ws,
        serde_json::json!({"type": "connection_init", "payload": {"token": "two"}}),
    );
    assert_eq!(recv(&mut ws)["type"], "connection_ack");
    let mut ws = connect(&demo.url, "graphql-transport-ws");
    send(
        &mut ws,
        serde_json::json!({"type": "connection_init", "payload": {"token": "no"}}),
    );
    assert_eq!(close_code(&mut ws), 4403);
}

/// The test certificate (localhost and 127.0.0.1, self-signed) and its key.
const CERT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/certs/localhost-cert.pem"
);
const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/certs/localhost-key.pem"
);

/// Runs curl with `args`, then `-w '\n%{http_version}'`: its output and the HTTP version
/// it spoke. curl is a real HTTP/2 and TLS client (nghttp2, OpenSSL).
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_version}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, version) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_owned(), version.to_owned())
}

/// Three SSE ticks then `complete`, as curl printed them.
fn assert_three_ticks(body: &str) {
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(
        data,
        [
            r#"{"data":{"ticks":0}}"#,
            r#"{"data":{"ticks":1}}"#,
            r#"{"data":{"ticks":2}}"#,
            ""
        ],
        "{body}"
    );
    assert!(body.contains("event: complete"), "{body}");
}

/// `--tls-cert`/`--tls-key`: the demo announces `wss://`, and curl gets HTTP/2 by ALPN
/// (SSE, a query, GraphiQL), HTTP/1.1 over TLS when it asks for it, and a TLS alert
/// answers a client that speaks cleartext HTTP to the TLS port. Without TLS the same port
/// speaks cleartext HTTP/2 to a client with prior knowledge.
fn tls_and_http2_with_curl(runtime: &str) {
    let demo = Demo::start(&["--runtime", runtime, "--tls-cert", CERT, "--tls-key", KEY]);
    assert!(demo.url.starts_with("wss://127.0.0.1:"), "{}", demo.url);
    let base = format!(
        "https://localhost:{}/graphql",
        demo.addr().rsplit(':').next().unwrap_or_default()
    );
    let resolve = format!(
        "localhost:{}:127.0.0.1",
        demo.addr().rsplit(':').next().unwrap_or_default()
    );
    let tls = ["--cacert", CERT, "--resolve", resolve.as_str()];
    let sse = format!("{base}?query=subscription%7Bticks(everyMs:20,count:3)%7D");
    let (body, version) = curl(
        &[
            &tls[..],
            &["--http2", "-N", "-H", "accept: text/event-stream", &sse],
        ]
        .concat(),
    );
    assert_eq!(version, "2", "ALPN chose HTTP/2");
    assert_three_ticks(&body);
    let query = r#"{"query":"{ hello }"}"#;
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (body, version) = curl(
            &[
                &tls[..],
                &[
                    flag,
                    "-H",
                    "content-type: application/json",
                    "-d",
                    query,
                    &base,
                ],
            ]
            .concat(),
        );
        assert_eq!(version, want);
        assert!(body.contains(r#""hello":"world""#), "{body}");
    }
    let (page, _) = curl(&[&tls[..], &["--http2", "-H", "accept: text/html", &base]].concat());
    assert!(page.contains("GraphiQL"), "{page}");
    // Cleartext HTTP to the TLS port: not TLS, answered with an alert record (or a close),
    // and the port goes on serving.
    let (status, _, _) = http(demo.addr(), "GET", "/healthz", &[], "");
    assert_ne!(status, 200, "no cleartext answer on a TLS port");
    let (body, _) = curl(&[&tls[..], &[&base.replace("/graphql", "/healthz")]].concat());
    assert_eq!(body, "ok");
    drop(demo);

    let plain = Demo::start(&["--runtime", runtime]);
    let url = format!(
        "http://{}/graphql?query=subscription%7Bticks(everyMs:20,count:3)%7D",
        plain.addr()
    );
    let (body, version) = curl(&[
        "--http2-prior-knowledge",
        "-N",
        "-H",
        "accept: text/event-stream",
        &url,
    ]);
    assert_eq!(version, "2", "cleartext HTTP/2 by prior knowledge");
    assert_three_ticks(&body);
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

                #[test]
                fn tls_and_http2_with_curl() {
                    super::tls_and_http2_with_curl($name);
                }

                #[test]
                fn the_port_routes_by_path_and_refuses_by_credentials() {
                    super::the_port_routes_by_path_and_refuses_by_credentials($name);
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
