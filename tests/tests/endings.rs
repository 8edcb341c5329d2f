//! Every way a connection ends drops every subscription and completes it exactly once
//! (PROTOCOL.md 4.4), on both subprotocols.

use std::time::{Duration, Instant};

use serde_json::json;
use subscope::{CloseReason, Config, EndReason};
use subscope_tests::{Client, DEADLINE, TestRuntime, TestServer, per_runtime};

/// Generous bound from the ending to full cleanup: CI machines are noisy.
const CLEANUP: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
enum Proto {
    Modern,
    Legacy,
}

/// A client past the ack with `k` live subscriptions: half still waiting for their first
/// item (`delayed`), half streaming (`ticks`, first item already received).
fn with_live_subscriptions(s: &TestServer, proto: Proto, k: usize, delay_ms: u64) -> Client {
    let mut c = match proto {
        Proto::Modern => Client::modern(s.addr),
        Proto::Legacy => Client::legacy(s.addr),
    };
    c.init(None);
    let before = s.live.get();
    for i in 0..k {
        let query = if i % 2 == 0 {
            format!("subscription {{ delayed(ms: {delay_ms}) }}")
        } else {
            "subscription { ticks(everyMs: 100) }".to_owned()
        };
        let id = i.to_string();
        match proto {
            Proto::Modern => c.subscribe(&id, &query),
            Proto::Legacy => c.start(&id, &query),
        }
    }
    s.wait_live(before + k);
    c
}

/// Waits for the one connection's `on_close`, then asserts the cleanup: no live stream,
/// gauges at zero, one `on_complete` per operation with the connection's end reason.
fn assert_cleaned_up(s: &TestServer, k: usize, expected: &CloseReason, started: Instant) {
    let e = s.recorder.wait_closes(1, CLEANUP);
    assert_eq!(&e.closes[0].1, expected);
    // on_close runs after every child was dropped: the counts are final here.
    assert_eq!(
        s.live.get(),
        0,
        "a demo stream is still alive after on_close"
    );
    let g = s.gauges.snapshot();
    assert_eq!((g.subscriptions, g.connections), (0, 0), "{g:?}");
    assert_eq!(e.completes.len(), k, "{:?}", e.completes);
    let mut ids: Vec<_> = e.completes.iter().map(|(_, id, _)| id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        k,
        "on_complete ran twice for an id: {:?}",
        e.completes
    );
    for (_, _, reason) in &e.completes {
        assert_eq!(reason, &EndReason::ConnectionClosed(expected.clone()));
    }
    assert!(
        started.elapsed() < CLEANUP,
        "cleanup took {:?}",
        started.elapsed()
    );
}

fn tcp_reset_while_waiting_for_the_first_item(proto: Proto, s: &TestServer) {
    // The delayed subscriptions sleep 5 s; the client vanishes at 2 s.
    let c = with_live_subscriptions(s, proto, 4, 5000);
    let connected = Instant::now();
    while connected.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    c.reset();
    assert_cleaned_up(s, 4, &CloseReason::PeerGone, started);
    assert!(
        connected.elapsed() < Duration::from_secs(5),
        "cleanup waited for the stream"
    );
}

fn tcp_reset_modern<R: TestRuntime>() {
    tcp_reset_while_waiting_for_the_first_item(Proto::Modern, &R::start(Config::default()));
}

fn tcp_reset_legacy<R: TestRuntime>() {
    tcp_reset_while_waiting_for_the_first_item(Proto::Legacy, &R::start(Config::default()));
}

fn eof_without_close_frame(proto: Proto, s: &TestServer) {
    let c = with_live_subscriptions(s, proto, 4, 60_000);
    let started = Instant::now();
    c.drop_tcp();
    assert_cleaned_up(s, 4, &CloseReason::PeerGone, started);
}

fn eof_modern<R: TestRuntime>() {
    eof_without_close_frame(Proto::Modern, &R::start(Config::default()));
}

fn eof_legacy<R: TestRuntime>() {
    eof_without_close_frame(Proto::Legacy, &R::start(Config::default()));
}

fn close_frame(proto: Proto, s: &TestServer) {
    let c = with_live_subscriptions(s, proto, 4, 60_000);
    let started = Instant::now();
    // The server answers our close frame with its own.
    match c.close(4000) {
        subscope_tests::Frame::Close(code, _) => assert_eq!(code, 4000),
        other => panic!("expected the close answer, got {other:?}"),
    }
    let expected = CloseReason::ClientClosed {
        code: 4000,
        reason: "bye".into(),
    };
    assert_cleaned_up(s, 4, &expected, started);
    assert_eq!(s.recorder.events().disconnects.len(), 1);
}

fn close_frame_modern<R: TestRuntime>() {
    close_frame(Proto::Modern, &R::start(Config::default()));
}

fn close_frame_legacy<R: TestRuntime>() {
    close_frame(Proto::Legacy, &R::start(Config::default()));
}

fn half_open_peer(proto: Proto, s: &TestServer) {
    // The client never reads again, so it never answers the server's pings.
    let c = with_live_subscriptions(s, proto, 4, 60_000);
    let started = Instant::now();
    assert_cleaned_up(s, 4, &CloseReason::KeepaliveTimeout, started);
    drop(c);
}

fn keepalive() -> Config {
    Config::default()
        .keepalive_interval(Duration::from_millis(200))
        .keepalive_timeout(Duration::from_millis(200))
}

fn half_open_modern<R: TestRuntime>() {
    half_open_peer(Proto::Modern, &R::start(keepalive()));
}

fn half_open_legacy<R: TestRuntime>() {
    half_open_peer(Proto::Legacy, &R::start(keepalive()));
}

fn answering_peer_survives_the_keepalive<R: TestRuntime>() {
    // Pings every 100 ms; a peer that answers is never dropped. The timeout is generous so
    // a stalled CI thread cannot fake a dead peer.
    let s = R::start(
        Config::default()
            .keepalive_interval(Duration::from_millis(100))
            .keepalive_timeout(Duration::from_millis(800)),
    );
    let mut c = Client::modern(s.addr);
    c.init(None);
    c.subscribe("t", "subscription { ticks(everyMs: 100) }");
    // Reading answers pings (tungstenite pongs automatically): well past several timeouts.
    let until = Instant::now() + Duration::from_millis(2000);
    let mut ticks = 0;
    while Instant::now() < until {
        assert_eq!(c.recv_json()["type"], "next");
        ticks += 1;
    }
    assert!(ticks >= 10);
    assert!(s.recorder.events().closes.is_empty());
}

fn slow_reader_hits_the_write_timeout(proto: Proto, s: &TestServer) {
    let mut c = match proto {
        Proto::Modern => Client::modern(s.addr),
        Proto::Legacy => Client::legacy(s.addr),
    };
    c.init(None);
    let query = "subscription { payload(bytes: 65536) }";
    match proto {
        Proto::Modern => c.subscribe("p", query),
        Proto::Legacy => c.start("p", query),
    }
    // Never read: the socket buffers fill, the server's write blocks.
    let started = Instant::now();
    let e = s.recorder.wait_closes(1, CLEANUP);
    assert_eq!(e.closes[0].1, CloseReason::WriteTimeout);
    assert_eq!(s.live.get(), 0);
    assert_eq!(e.completes.len(), 1);
    assert!(started.elapsed() < CLEANUP);
    drop(c);
}

fn write_timeout() -> Config {
    // Liveness off, so only the write timeout can end it.
    Config::default()
        .keepalive_interval(Duration::ZERO)
        .write_timeout(Duration::from_millis(300))
}

fn slow_reader_modern<R: TestRuntime>() {
    slow_reader_hits_the_write_timeout(Proto::Modern, &R::start(write_timeout()));
}

fn slow_reader_legacy<R: TestRuntime>() {
    slow_reader_hits_the_write_timeout(Proto::Legacy, &R::start(write_timeout()));
}

fn protocol_violation_drops_every_stream<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = with_live_subscriptions(&s, Proto::Modern, 4, 60_000);
    let started = Instant::now();
    c.send(json!({"type": "connection_init"}));
    assert_cleaned_up(&s, 4, &CloseReason::TooManyInitRequests, started);
}

fn shutdown_with_many_connections<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut clients = Vec::new();
    for i in 0..6 {
        let proto = if i % 2 == 0 {
            Proto::Modern
        } else {
            Proto::Legacy
        };
        let c = with_live_subscriptions(&s, proto, 3, 60_000);
        clients.push(c);
    }
    s.wait_live(18);
    s.shutdown(Duration::from_secs(5));
    // Returned only after every connection future is gone.
    assert_eq!(s.live.get(), 0);
    let g = s.gauges.snapshot();
    assert_eq!((g.subscriptions, g.connections), (0, 0));
    let e = s.recorder.events();
    assert_eq!(e.closes.len(), 6);
    assert_eq!(e.completes.len(), 18);
    assert!(
        e.closes
            .iter()
            .all(|(_, r)| *r == CloseReason::ServerShutdown)
    );
    for mut c in clients {
        assert_eq!(c.expect_close_skipping_data(), (1001, "Going away".into()));
    }
}

fn shutdown_grace_zero_still_waits_for_every_drop<R: TestRuntime>() {
    let s = R::start(Config::default());
    let _clients: Vec<_> = (0..3)
        .map(|_| with_live_subscriptions(&s, Proto::Modern, 2, 60_000))
        .collect();
    s.shutdown(Duration::ZERO);
    assert_eq!(s.live.get(), 0);
    assert_eq!(s.gauges.snapshot().connections, 0);
    assert_eq!(s.recorder.events().completes.len(), 6);
}

per_runtime!(
    tcp_reset_modern,
    tcp_reset_legacy,
    eof_modern,
    eof_legacy,
    close_frame_modern,
    close_frame_legacy,
    half_open_modern,
    half_open_legacy,
    answering_peer_survives_the_keepalive,
    slow_reader_modern,
    slow_reader_legacy,
    protocol_violation_drops_every_stream,
    shutdown_with_many_connections,
    shutdown_grace_zero_still_waits_for_every_drop,
);

#[test]
fn deadline_is_sane() {
    assert!(CLEANUP <= DEADLINE);
}
