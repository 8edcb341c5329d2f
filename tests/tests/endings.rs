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
    assert_cleaned_up_as(
        s,
        k,
        expected,
        &EndReason::ConnectionClosed(expected.clone()),
        started,
    );
}

/// Like [`assert_cleaned_up`], with the end reason every operation must report.
fn assert_cleaned_up_as(
    s: &TestServer,
    k: usize,
    expected: &CloseReason,
    op_reason: &EndReason,
    started: Instant,
) {
    let e = s.recorder.wait_closes(1, CLEANUP);
    assert_eq!(&e.closes[0].1, expected);
    // on_close runs after every child was dropped: the counts are final here.
    assert_eq!(
        s.live.get(),
        0,
        "a demo stream is still alive after on_close"
    );
    let g = s.gauges.snapshot();
    assert_eq!((g.operations, g.connections), (0, 0), "{g:?}");
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
        assert_eq!(reason, op_reason);
    }
    assert_eq!(
        s.recorder.hanging_hooks(),
        0,
        "a pending on_subscribe outlived its connection"
    );
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
    subscope_tests::server::volume_config(
        Config::default()
            .keepalive_interval(None)
            .write_timeout(Duration::from_millis(300)),
    )
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
    assert_eq!((g.operations, g.connections), (0, 0));
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

fn proto_client(s: &TestServer, proto: Proto) -> Client {
    match proto {
        Proto::Modern => Client::modern(s.addr),
        Proto::Legacy => Client::legacy(s.addr),
    }
}

fn stop_message(proto: Proto, id: &str) -> serde_json::Value {
    match proto {
        Proto::Modern => json!({"id": id, "type": "complete"}),
        Proto::Legacy => json!({"id": id, "type": "stop"}),
    }
}

fn client_stops_each(proto: Proto, s: &TestServer) {
    let mut c = with_live_subscriptions(s, proto, 4, 60_000);
    for i in 0..4 {
        c.send(stop_message(proto, &i.to_string()));
    }
    s.wait_live(0);
    let e = s
        .recorder
        .wait("4 completes", CLEANUP, |e| e.completes.len() == 4);
    assert!(
        e.completes
            .iter()
            .all(|(_, _, r)| *r == EndReason::ClientStopped)
    );
    assert_eq!(s.gauges.snapshot().operations, 0);
    assert!(e.closes.is_empty(), "the connection stays open");
}

fn client_stops_modern<R: TestRuntime>() {
    client_stops_each(Proto::Modern, &R::start(Config::default()));
}

fn client_stops_legacy<R: TestRuntime>() {
    client_stops_each(Proto::Legacy, &R::start(Config::default()));
}

fn streams_end_by_themselves(proto: Proto, s: &TestServer) {
    let mut c = proto_client(s, proto);
    c.init(None);
    for i in 0..4 {
        let id = i.to_string();
        let q = "subscription { ticks(everyMs: 10, count: 3) }";
        match proto {
            Proto::Modern => c.subscribe(&id, q),
            Proto::Legacy => c.start(&id, q),
        }
    }
    let mut completes = 0;
    while completes < 4 {
        if c.recv_json_skip_ka()["type"] == "complete" {
            completes += 1;
        }
    }
    s.wait_live(0);
    let e = s
        .recorder
        .wait("4 completes", CLEANUP, |e| e.completes.len() == 4);
    assert!(
        e.completes
            .iter()
            .all(|(_, _, r)| *r == EndReason::Completed)
    );
    assert_eq!(s.gauges.snapshot().operations, 0);
}

fn streams_end_modern<R: TestRuntime>() {
    streams_end_by_themselves(Proto::Modern, &R::start(Config::default()));
}

fn streams_end_legacy<R: TestRuntime>() {
    streams_end_by_themselves(Proto::Legacy, &R::start(Config::default()));
}

fn reset_while_the_server_is_sending(proto: Proto, s: &TestServer) {
    let mut c = with_live_subscriptions(s, proto, 2, 60_000);
    let q = "subscription { payload(bytes: 65536) }";
    match proto {
        Proto::Modern => c.subscribe("flood", q),
        Proto::Legacy => c.start("flood", q),
    }
    s.wait_live(3);
    // Let the flood fill the socket buffers, so the server is mid-write.
    let first = c.recv_json_skip_ka();
    assert!(
        first["type"] == "next" || first["type"] == "data",
        "{first}"
    );
    let started = Instant::now();
    c.reset();
    assert_cleaned_up(s, 3, &CloseReason::PeerGone, started);
}

fn reset_mid_send_modern<R: TestRuntime>() {
    reset_while_the_server_is_sending(Proto::Modern, &R::start(Config::default()));
}

fn reset_mid_send_legacy<R: TestRuntime>() {
    reset_while_the_server_is_sending(Proto::Legacy, &R::start(Config::default()));
}

fn client_process_killed(proto: Proto, s: &TestServer) {
    use std::io::{BufRead, BufReader};
    let token = match proto {
        Proto::Modern => "graphql-transport-ws",
        Proto::Legacy => "graphql-ws",
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vanishing_client"))
        .args([s.addr.to_string(), token.to_owned(), "4".to_owned()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn client process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    assert_eq!(line.trim(), "ready");
    s.wait_live(4);
    let started = Instant::now();
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_cleaned_up(s, 4, &CloseReason::PeerGone, started);
}

fn process_killed_modern<R: TestRuntime>() {
    client_process_killed(Proto::Modern, &R::start(Config::default()));
}

fn process_killed_legacy<R: TestRuntime>() {
    client_process_killed(Proto::Legacy, &R::start(Config::default()));
}

/// A protocol violation (or legacy terminate) with live subscriptions: the peer sees `code`,
/// every operation is dropped and completed with the connection's end as its reason.
fn violation_with_live_subscriptions<R: TestRuntime>(
    proto: Proto,
    send: impl FnOnce(&mut Client),
    code: u16,
    expected: CloseReason,
) {
    let s = R::start(Config::default());
    let mut c = with_live_subscriptions(&s, proto, 4, 60_000);
    let started = Instant::now();
    send(&mut c);
    assert_eq!(c.expect_close_skipping_data().0, code);
    assert_cleaned_up(&s, 4, &expected, started);
}

fn violation_4400_invalid_message<R: TestRuntime>() {
    violation_with_live_subscriptions::<R>(
        Proto::Modern,
        |c| c.send_text("{not json"),
        4400,
        CloseReason::InvalidMessage(subscope::InvalidMessage::NotJson),
    );
}

fn violation_4409_duplicate_id<R: TestRuntime>() {
    violation_with_live_subscriptions::<R>(
        Proto::Modern,
        |c| c.subscribe("0", "{ hello }"),
        4409,
        CloseReason::DuplicateOperationId("0".into()),
    );
}

fn violation_4429_second_init_modern<R: TestRuntime>() {
    violation_with_live_subscriptions::<R>(
        Proto::Modern,
        |c| c.send(json!({"type": "connection_init"})),
        4429,
        CloseReason::TooManyInitRequests,
    );
}

fn violation_4429_second_init_legacy<R: TestRuntime>() {
    violation_with_live_subscriptions::<R>(
        Proto::Legacy,
        |c| c.send(json!({"type": "connection_init"})),
        4429,
        CloseReason::TooManyInitRequests,
    );
}

fn violation_1002_binary_legacy<R: TestRuntime>() {
    violation_with_live_subscriptions::<R>(
        Proto::Legacy,
        |c| c.send_message(tungstenite::Message::binary(vec![1, 2, 3])),
        1002,
        CloseReason::BinaryFrame,
    );
}

fn terminate_legacy<R: TestRuntime>() {
    violation_with_live_subscriptions::<R>(
        Proto::Legacy,
        |c| c.send(json!({"type": "connection_terminate"})),
        1000,
        CloseReason::Terminated,
    );
}

fn violations_before_the_ack_report_their_code<R: TestRuntime>() {
    let s = R::start(Config::default().init_timeout(Duration::from_millis(100)));
    for proto in [Proto::Modern, Proto::Legacy] {
        let mut c = proto_client(&s, proto);
        assert_eq!(c.expect_close().0, 4408);
        let mut c = proto_client(&s, proto);
        match proto {
            Proto::Modern => c.subscribe("1", "{ hello }"),
            Proto::Legacy => c.start("1", "{ hello }"),
        }
        assert_eq!(c.expect_close().0, 4401);
    }
    let e = s.recorder.wait_closes(4, CLEANUP);
    let mut codes: Vec<u16> = e.closes.iter().map(|(_, r)| r.code()).collect();
    codes.sort_unstable();
    assert_eq!(codes, [4401, 4401, 4408, 4408]);
    assert!(e.completes.is_empty());
    assert_eq!(s.gauges.snapshot().connections, 0);
}

fn pending_on_subscribe(proto: Proto, s: &TestServer) {
    // Operation "Hang" never gets past on_subscribe; the socket dies meanwhile.
    let mut c = with_live_subscriptions(s, proto, 2, 60_000);
    let hang = json!({"query": "subscription Hang { ticks }", "operationName": "Hang"});
    match proto {
        Proto::Modern => c.send(json!({"id": "h", "type": "subscribe", "payload": hang})),
        Proto::Legacy => c.send(json!({"id": "h", "type": "start", "payload": hang})),
    }
    subscope_tests::wait_until("the hook to be pending", DEADLINE, || {
        s.recorder.hanging_hooks() == 1
    });
    let started = Instant::now();
    c.reset();
    // The late hook result is dropped with the connection: nothing is sent, nothing leaks.
    assert_cleaned_up(s, 3, &CloseReason::PeerGone, started);
}

fn pending_hook_modern<R: TestRuntime>() {
    pending_on_subscribe(Proto::Modern, &R::start(Config::default()));
}

fn pending_hook_legacy<R: TestRuntime>() {
    pending_on_subscribe(Proto::Legacy, &R::start(Config::default()));
}

fn client_complete_cancels_a_pending_hook<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::modern(s.addr);
    c.init(None);
    c.send(json!({"id": "h", "type": "subscribe",
        "payload": {"query": "subscription Hang { ticks }", "operationName": "Hang"}}));
    subscope_tests::wait_until("the hook to be pending", DEADLINE, || {
        s.recorder.hanging_hooks() == 1
    });
    c.send(json!({"id": "h", "type": "complete"}));
    let e = s
        .recorder
        .wait("complete", CLEANUP, |e| e.completes.len() == 1);
    assert_eq!(e.completes[0].2, EndReason::ClientStopped);
    assert_eq!(s.recorder.hanging_hooks(), 0);
    c.expect_silence(Duration::from_millis(200));
}

per_runtime!(
    client_stops_modern,
    client_stops_legacy,
    streams_end_modern,
    streams_end_legacy,
    reset_mid_send_modern,
    reset_mid_send_legacy,
    process_killed_modern,
    process_killed_legacy,
    violation_4400_invalid_message,
    violation_4409_duplicate_id,
    violation_4429_second_init_modern,
    violation_4429_second_init_legacy,
    violation_1002_binary_legacy,
    terminate_legacy,
    violations_before_the_ack_report_their_code,
    pending_hook_modern,
    pending_hook_legacy,
    client_complete_cancels_a_pending_hook,
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
