//! Authorization that lives as long as it is valid (docs/PROTOCOL.md 4.11), through the
//! demo binary on every runtime: expiry on both WebSocket subprotocols and on HTTP streams,
//! renewal by `ping`, and revocation by `revokeToken`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

mod common;

use common::{DEADLINE, Demo, connect, recv, send};

type Ws = WebSocket<TcpStream>;

/// A connection acknowledged with `token`.
fn authorized(demo: &Demo, protocol: &str, token: &str) -> Ws {
    let mut ws = connect(&demo.url, protocol);
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"token": token}}),
    );
    loop {
        let m = recv(&mut ws);
        match m["type"].as_str() {
            Some("connection_ack") => return ws,
            Some("ka") => {}
            _ => panic!("expected the ack, got {m}"),
        }
    }
}

/// The next message that is not a legacy keep-alive.
fn data(ws: &mut Ws) -> Value {
    loop {
        let m = recv(ws);
        if m["type"] != "ka" {
            return m;
        }
    }
}

fn subscribe(ws: &mut Ws, protocol: &str, id: &str, query: &str) {
    let ty = if protocol == "graphql-ws" {
        "start"
    } else {
        "subscribe"
    };
    send(
        ws,
        json!({"id": id, "type": ty, "payload": {"query": query}}),
    );
}

/// Reads until the close frame; the data messages seen before it, and the close.
fn until_close(ws: &mut Ws) -> (Vec<Value>, u16, String) {
    let mut seen = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let m: Value = serde_json::from_str(t.as_str()).expect("json");
                if m["type"] != "ka" && m["type"] != "pong" {
                    seen.push(m);
                }
            }
            Ok(Message::Close(Some(f))) => return (seen, f.code.into(), f.reason.to_string()),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

/// A raw HTTP request whose response is read as it streams, until `done` holds for what
/// arrived or the connection ends.
fn stream(addr: &str, head: &str, body: &str, done: impl Fn(&str) -> bool) -> String {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(tcp, "{head}content-length: {}\r\n\r\n{body}", body.len()).expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
        if done(&String::from_utf8_lossy(&got)) {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn sse_head(demo: &Demo, token: &str) -> String {
    format!(
        "POST /graphql?access_token={token} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: text/event-stream\r\n",
        demo.addr()
    )
}

const TICKS: &str = "subscription { ticks(everyMs: 50) }";

fn expiry_closes_websockets_4403_token_expired(runtime: &str) {
    let demo = Demo::start(&[
        "--runtime",
        runtime,
        "--auth-token",
        "a",
        "--auth-ttl-ms",
        "600",
    ]);
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        // Taken before `connection_init` is sent, so the server's grant comes after it.
        let before_grant = Instant::now();
        let mut ws = authorized(&demo, protocol, "a");
        subscribe(&mut ws, protocol, "t", TICKS);
        let (seen, code, reason) = until_close(&mut ws);
        assert_eq!(
            (code, reason.as_str()),
            (4403, "Token expired"),
            "{protocol}"
        );
        assert!(
            before_grant.elapsed() >= Duration::from_millis(600),
            "{protocol}: not before the TTL"
        );
        assert!(
            !seen.is_empty(),
            "{protocol}: the stream ran until the expiry"
        );
    }
    // Every stream of the expired connections is gone.
    let mut ws = authorized(&demo, "graphql-transport-ws", "a");
    send(
        &mut ws,
        json!({"id": "q", "type": "subscribe", "payload": {"query": "{ liveStreams }"}}),
    );
    assert_eq!(recv(&mut ws)["payload"]["data"]["liveStreams"], 0);
}

fn a_ping_with_a_valid_token_renews_and_an_invalid_one_closes(runtime: &str) {
    let demo = Demo::start(&[
        "--runtime",
        runtime,
        "--auth-token",
        "a",
        "--auth-token",
        "b",
        "--auth-ttl-ms",
        "1000",
    ]);
    let protocol = "graphql-transport-ws";
    let mut ws = authorized(&demo, protocol, "a");
    let granted = Instant::now();
    subscribe(&mut ws, protocol, "t", TICKS);
    // Renew with either valid token until well past the first TTL.
    let mut renewals = 0;
    // Past twice the TTL, renewing every ~100 ms: far inside it even on a loaded machine.
    while granted.elapsed() < Duration::from_millis(2200) {
        let token = if renewals % 2 == 0 { "a" } else { "b" };
        send(
            &mut ws,
            json!({"type": "ping", "payload": {"token": token}}),
        );
        renewals += 1;
        // Read the pong (ticks in between).
        loop {
            let m = recv(&mut ws);
            if m["type"] == "pong" {
                assert_eq!(m["payload"]["token"], token, "the pong echoes the payload");
                break;
            }
            assert_eq!(m["type"], "next", "{m}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Renewed: still open past the first TTL. Then a wrong token closes it at once.
    send(
        &mut ws,
        json!({"type": "ping", "payload": {"token": "forged"}}),
    );
    let (_, code, reason) = until_close(&mut ws);
    assert_eq!((code, reason.as_str()), (4403, "Forbidden"));
}

fn sse_and_multipart_streams_end_with_token_expired(runtime: &str) {
    let demo = Demo::start(&[
        "--runtime",
        runtime,
        "--auth-token",
        "a",
        "--auth-ttl-ms",
        "500",
    ]);
    let body = json!({ "query": TICKS }).to_string();
    let sse = stream(demo.addr(), &sse_head(&demo, "a"), &body, |s| {
        s.contains("event: complete")
    });
    assert!(sse.contains("\"code\":\"TOKEN_EXPIRED\""), "{sse}");
    let expired = sse.find("TOKEN_EXPIRED").expect("the error");
    assert!(
        sse[..expired].contains("\"ticks\":"),
        "events flowed first: {sse}"
    );
    assert!(
        sse[expired..].contains("event: complete"),
        "then complete: {sse}"
    );
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer a\r\ncontent-type: application/json\r\naccept: multipart/mixed;subscriptionSpec=\"1.0\", application/json\r\n",
        demo.addr()
    );
    let multipart = stream(demo.addr(), &head, &body, |s| s.contains("--graphql--"));
    assert!(
        multipart.contains("\"payload\":null") && multipart.contains("TOKEN_EXPIRED"),
        "{multipart}"
    );
}

fn revoke_token_ends_every_session_of_the_token_and_counts_them(runtime: &str) {
    let demo = Demo::start(&[
        "--runtime",
        runtime,
        "--auth-token",
        "a",
        "--auth-token",
        "b",
    ]);
    let mut modern = authorized(&demo, "graphql-transport-ws", "a");
    subscribe(&mut modern, "graphql-transport-ws", "t", TICKS);
    let mut legacy = authorized(&demo, "graphql-ws", "a");
    subscribe(&mut legacy, "graphql-ws", "t", TICKS);
    let mut other = authorized(&demo, "graphql-transport-ws", "b");
    subscribe(&mut other, "graphql-transport-ws", "t", TICKS);
    // An SSE stream authorized by the token, started before the revocation.
    let sse_demo_addr = demo.addr().to_owned();
    let body = json!({ "query": TICKS }).to_string();
    let head = sse_head(&demo, "a");
    let sse = std::thread::spawn(move || {
        stream(&sse_demo_addr, &head, &body, |s| {
            s.contains("event: complete")
        })
    });
    // Every session is live: each has produced a tick.
    for (ws, protocol) in [
        (&mut modern, "modern"),
        (&mut legacy, "legacy"),
        (&mut other, "b"),
    ] {
        let m = data(ws);
        assert!(m["payload"]["data"]["ticks"].is_number(), "{protocol}: {m}");
    }
    let deadline = Instant::now() + DEADLINE;
    let caller_count = loop {
        // The caller's own connection is authorized by the token too.
        let mut caller = authorized(&demo, "graphql-transport-ws", "a");
        send(
            &mut caller,
            json!({"id": "r", "type": "subscribe", "payload": {"query": "{ liveStreams }"}}),
        );
        // Wait until the SSE stream is live too (4 ticks streams: modern, legacy, b, sse).
        if recv(&mut caller)["payload"]["data"]["liveStreams"] == 4 {
            send(
                &mut caller,
                json!({"id": "m", "type": "subscribe",
                       "payload": {"query": "mutation { revokeToken(token: \"a\") }"}}),
            );
            let (seen, code, _) = until_close(&mut caller);
            let result = seen
                .iter()
                .find(|m| m["id"] == "m" && m["type"] == "next")
                .unwrap_or_else(|| panic!("the result comes before the close: {seen:?}"));
            assert_eq!(code, 4403);
            break result["payload"]["data"]["revokeToken"].clone();
        }
        assert!(Instant::now() < deadline, "the SSE stream never went live");
        std::thread::sleep(Duration::from_millis(20));
    };
    // modern, legacy, the SSE stream and the caller; not the other token's.
    assert_eq!(caller_count, 4);
    for (ws, name) in [(&mut modern, "modern"), (&mut legacy, "legacy")] {
        let (_, code, reason) = until_close(ws);
        assert_eq!((code, reason.as_str()), (4403, "Forbidden"), "{name}");
    }
    let sse = sse.join().expect("sse reader");
    assert!(sse.contains("\"code\":\"TOKEN_REVOKED\""), "{sse}");
    // The other token's connection goes on.
    let m = data(&mut other);
    assert!(m["payload"]["data"]["ticks"].is_number(), "{m}");
    // The token is invalid from now on: a WebSocket closes 4403, HTTP answers 403.
    let mut ws = connect(&demo.url, "graphql-transport-ws");
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"token": "a"}}),
    );
    let (_, code, _) = until_close(&mut ws);
    assert_eq!(code, 4403);
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer a\r\ncontent-type: application/json\r\nconnection: close\r\n",
        demo.addr()
    );
    let answer = stream(demo.addr(), &head, r#"{"query":"{ hello }"}"#, |_| false);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

macro_rules! per_runtime {
    ($($rt:ident => $name:literal, $feature:literal;)*) => {
        $(
            #[cfg(feature = $feature)]
            mod $rt {
                #[test]
                fn expiry_closes_websockets_4403_token_expired() {
                    super::expiry_closes_websockets_4403_token_expired($name);
                }

                #[test]
                fn a_ping_with_a_valid_token_renews_and_an_invalid_one_closes() {
                    super::a_ping_with_a_valid_token_renews_and_an_invalid_one_closes($name);
                }

                #[test]
                fn sse_and_multipart_streams_end_with_token_expired() {
                    super::sse_and_multipart_streams_end_with_token_expired($name);
                }

                #[test]
                fn revoke_token_ends_every_session_of_the_token_and_counts_them() {
                    super::revoke_token_ends_every_session_of_the_token_and_counts_them($name);
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
