//! The runnable examples (`examples/examples/*.rs`) as a user runs them: each serves a
//! query and a subscription on `/graphql` (WebSocket and plain HTTP on the same path), and
//! Ctrl-C (SIGINT) closes open sockets 1001 and exits 0.
//!
//! `cargo test` builds a package's examples before running its tests; the binaries are
//! found next to this test's.

#![cfg(unix)] // SIGINT through `kill`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

mod common;

use common::{DEADLINE, Demo, close_code, connect, init, recv, send};

/// `target/<profile>/examples/NAME`, built by `cargo test` with this test.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p subscope-examples` (which builds the examples) \
         or `cargo build -p subscope-examples --examples` first",
        path.display()
    );
    path
}

/// A plain GraphQL-over-HTTP POST to `/graphql`; the response body.
fn post(addr: &str, query: &str) -> String {
    let body = serde_json::json!({ "query": query }).to_string();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(
        stream,
        "POST /graphql HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         accept: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

fn serves_and_shuts_down_on_sigint(name: &str) {
    let mut example = Demo::spawn(binary(name), &["127.0.0.1:0"]);
    assert!(post(example.addr(), "{ hello }").contains(r#"{"data":{"hello":"world"}}"#));

    let mut ws = connect(&example.url, "graphql-transport-ws");
    init(&mut ws);
    send(
        &mut ws,
        serde_json::json!({"id": "1", "type": "subscribe",
            "payload": {"query": "subscription { ticks(everyMs: 10) }"}}),
    );
    for n in 0..3 {
        let m = recv(&mut ws);
        assert_eq!(m["type"], "next", "{m}");
        assert_eq!(m["payload"]["data"]["ticks"], n, "{m}");
    }

    example.interrupt();
    assert_eq!(close_code(&mut ws), 1001);
    example.wait_success();
}

#[cfg(feature = "tokio")]
#[test]
fn serve_tokio() {
    serves_and_shuts_down_on_sigint("serve_tokio");
}

#[cfg(feature = "smol")]
#[test]
fn serve_smol() {
    serves_and_shuts_down_on_sigint("serve_smol");
}

#[cfg(feature = "async-std")]
#[test]
fn serve_async_std() {
    serves_and_shuts_down_on_sigint("serve_async_std");
}

#[cfg(feature = "axum")]
#[test]
fn axum_route() {
    serves_and_shuts_down_on_sigint("axum_route");
}

/// The resume example: a client that reconnects with the last `eventId` it saw gets every
/// bid it missed exactly once, then live ones; a resume from before history says the gap.
#[cfg(feature = "tokio")]
#[test]
fn resume() {
    let mut example = Demo::spawn(binary("resume"), &["127.0.0.1:0"]);
    let subscribe = |ws: &mut _, last: Option<&str>| {
        let mut payload =
            serde_json::json!({"query": "subscription { bids(item: \"lamp\") { cents } }"});
        if let Some(last) = last {
            payload["extensions"] = serde_json::json!({ "lastEventId": last });
        }
        send(
            ws,
            serde_json::json!({"id": "b", "type": "subscribe", "payload": payload}),
        );
    };
    let bid = |cents: u64| {
        let body = post(
            example.addr(),
            &format!("mutation {{ bid(item: \"lamp\", cents: {cents}) }}"),
        );
        assert!(body.contains("\"data\""), "{body}");
    };
    let next = |ws: &mut _| -> (u64, String) {
        let m = recv(ws);
        assert_eq!(m["type"], "next", "{m}");
        let cents = m["payload"]["data"]["bids"]["cents"]
            .as_u64()
            .expect("cents");
        let id = m["payload"]["extensions"]["eventId"]
            .as_str()
            .expect("eventId");
        (cents, id.to_owned())
    };

    let gap_code = |m: &serde_json::Value| m["payload"]["errors"][0]["extensions"].clone();
    bid(100);
    // Resuming after an id from no process (`0-0`) replays everything kept, so the bid
    // published before the subscription existed arrives too, after the gap is said.
    let mut ws = connect(&example.url, "graphql-transport-ws");
    init(&mut ws);
    subscribe(&mut ws, Some("0-0"));
    let gap = recv(&mut ws);
    assert_eq!(gap_code(&gap)["code"], "RESUME_GAP", "{gap}");
    let first = next(&mut ws);
    assert_eq!(first.0, 100);
    assert_eq!(gap_code(&gap)["oldestEventId"], first.1.as_str(), "{gap}");
    bid(101);
    let (_, seen) = next(&mut ws);
    drop(ws); // gone without a word
    bid(102);
    bid(103);

    let mut ws = connect(&example.url, "graphql-transport-ws");
    init(&mut ws);
    subscribe(&mut ws, Some(&seen));
    assert_eq!(next(&mut ws).0, 102);
    assert_eq!(next(&mut ws).0, 103);
    bid(104);
    let (cents, last) = next(&mut ws);
    assert_eq!(cents, 104);
    assert!(last > seen, "ids increase: {seen} then {last}");

    // An id from another process: the gap is said first, then everything kept.
    let mut again = connect(&example.url, "graphql-transport-ws");
    init(&mut again);
    subscribe(&mut again, Some("1-1"));
    let gap = recv(&mut again);
    assert_eq!(gap_code(&gap)["code"], "RESUME_GAP", "{gap}");
    assert_eq!(gap_code(&gap)["oldestEventId"], first.1.as_str(), "{gap}");
    assert_eq!(next(&mut again).0, 100);

    example.interrupt();
    assert_eq!(close_code(&mut ws), 1001);
    example.wait_success();
}
