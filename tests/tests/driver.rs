//! The driver fixes of the test-bench issue, at the socket on every runtime: inbound
//! backpressure, the close echo, panicking drop-time hooks, oversized responses, `None`
//! timeouts, and missing required variables. The hand-polled bench
//! (`subscope-testbench`) covers the same in virtual time; these prove it over real TCP.

use std::time::{Duration, Instant};

use serde_json::json;
use subscope::{CloseReason, Config, EndReason};
use subscope_tests::{Client, DEADLINE, Frame, TestRuntime, per_runtime, wait_until};
use tungstenite::Message;

/// An acknowledged client on the legacy or the modern subprotocol.
fn acked(addr: std::net::SocketAddr, legacy: bool) -> Client {
    let mut c = if legacy {
        Client::legacy(addr)
    } else {
        Client::modern(addr)
    };
    c.init(None);
    c
}

/// Writes `ping` until the socket pushes back (a write blocks past `stall`), at most
/// `limit` times; returns how many went out, counting the one left in the client's
/// buffer.
fn write_until_pushed_back(c: &mut Client, ping: &str, limit: usize) -> usize {
    c.stream()
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("write timeout");
    for sent in 0..limit {
        if c.try_send_text(ping).is_err() {
            return sent + 1;
        }
    }
    limit
}

fn a_flood_without_reading_is_pushed_back_and_every_reply_arrives<R: TestRuntime>() {
    let s = R::start(subscope_tests::server::volume_config(
        Config::default().inbound_rate(None),
    ));
    let mut c = Client::modern(s.addr);
    c.init(None);
    let ping = json!({"type": "ping", "payload": {"pad": "p".repeat(200)}}).to_string();
    // 2 million pings are ~450 MB: far beyond what loopback buffers and a bounded server
    // hold, so only a server that stops reading makes the write block.
    let limit = 2_000_000;
    let sent = write_until_pushed_back(&mut c, &ping, limit);
    assert!(sent < limit, "the server kept reading all {limit} pings");
    // Reading again: every ping gets its pong.
    // Flushing what the client still holds must not block it: the server only reads
    // again once the client has read.
    c.stream()
        .set_write_timeout(Some(Duration::from_millis(5)))
        .expect("write timeout");
    let mut pongs = 0;
    let end = Instant::now() + 6 * DEADLINE;
    while pongs < sent {
        assert!(Instant::now() < end, "{pongs} of {sent} pongs");
        if pongs % 512 == 0 {
            let _ = c.try_flush();
        }
        match c.next_frame() {
            Frame::Json(m) => {
                assert_eq!(m["type"], "pong", "{m}");
                pongs += 1;
            }
            other => panic!(
                "after {pongs} pongs: {other:?}; server: {:?}",
                s.recorder.events().closes
            ),
        }
    }
    assert_eq!(pongs, sent);
    // And the connection is still in service.
    c.subscribe("1", "{ hello }");
    assert_eq!(c.recv_json()["payload"]["data"]["hello"], "world");
}

fn stop_and_close_in_one_write(legacy: bool, s: &subscope_tests::TestServer) {
    let mut c = acked(s.addr, legacy);
    let (start, stop) = if legacy {
        ("start", "stop")
    } else {
        ("subscribe", "complete")
    };
    c.send(json!({"type": start, "id": "t", "payload": {"query": "subscription { ticks(everyMs: 100000) }"}}));
    assert_eq!(c.recv_json_skip_ka()["id"], "t");
    c.queue(Message::text(json!({"type": stop, "id": "t"}).to_string()));
    // The close frame is echoed (tungstenite echoes code and reason), never plain EOF.
    assert_eq!(c.close(1000), Frame::Close(1000, "bye".into()));
    let e = s.recorder.wait_closes(1, DEADLINE);
    assert_eq!(
        e.closes[0].1,
        CloseReason::ClientClosed {
            code: 1000,
            reason: "bye".into()
        }
    );
    s.wait_idle();
}

fn stop_and_close_in_one_write_get_the_close_echoed<R: TestRuntime>() {
    stop_and_close_in_one_write(true, &R::start(Config::default()));
    stop_and_close_in_one_write(false, &R::start(Config::default()));
}

fn panicking_drop_time_hooks_are_caught_and_others_unaffected<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut bystander = Client::modern(s.addr);
    bystander.init(None);
    bystander.subscribe("b", "subscription { ticks(everyMs: 20) }");
    assert_eq!(bystander.recv_json()["type"], "next");

    let mut c = Client::modern(s.addr);
    c.init(Some(json!({"panicInDropHooks": true})));
    c.subscribe("t", "subscription { ticks(everyMs: 100000) }");
    assert_eq!(c.recv_json()["id"], "t");
    c.reset();
    // on_complete, on_disconnect and on_close each panicked, were caught and counted.
    wait_until("3 caught hook panics", DEADLINE, || {
        s.gauges.snapshot().hook_panics == 3
    });
    wait_until("the panicky connection gone", DEADLINE, || {
        s.gauges.connections() == 1
    });
    for _ in 0..3 {
        assert_eq!(bystander.recv_json()["type"], "next");
    }
    let mut next = Client::legacy(s.addr);
    next.init(None);
    next.start("1", "{ hello }");
    assert_eq!(
        next.recv_json_skip_ka()["payload"]["data"]["hello"],
        "world"
    );
}

fn an_oversized_response_ends_only_its_operation<R: TestRuntime>() {
    let s = R::start(Config::default().max_response_size(4096));
    let mut open = Vec::new();
    for legacy in [false, true] {
        let mut c = acked(s.addr, legacy);
        let ty = if legacy { "start" } else { "subscribe" };
        let op = |id: &str, q: &str| json!({"type": ty, "id": id, "payload": {"query": q}});
        c.send(op("small", "subscription { ticks(everyMs: 20) }"));
        c.send(op("big", "subscription { payload(bytes: 10000) }"));
        let (mut error, mut ticks) = (None, 0);
        while error.is_none() || ticks < 5 {
            let m = c.recv_json_skip_ka();
            match m["id"].as_str() {
                Some("big") => {
                    assert!(error.is_none(), "one message for big: {m}");
                    error = Some(m);
                }
                Some("small") => ticks += 1,
                _ => panic!("unexpected {m}"),
            }
        }
        let error = error.expect("big's error");
        assert_eq!(error["type"], "error");
        let payload = if legacy {
            json!({"message": "Response too large"})
        } else {
            json!([{"message": "Response too large"}])
        };
        assert_eq!(error["payload"], payload);
        let e = s.recorder.wait("big's on_complete", DEADLINE, |e| {
            e.completes
                .iter()
                .any(|(_, id, r)| id == "big" && *r == EndReason::ResponseTooLarge)
        });
        assert!(e.closes.is_empty(), "the socket goes on");
        open.push(c);
    }
    assert_eq!(s.gauges.snapshot().responses_too_large, 2);
}

fn keepalive_timeout_none_keeps_a_silent_peer<R: TestRuntime>() {
    let config = Config::default()
        .keepalive_interval(Duration::from_millis(20))
        .keepalive_timeout(None);
    let s = R::start(config);
    let mut c = Client::modern(s.addr);
    c.init(None);
    // Silent (not reading, so not answering pings) for 50 ping intervals: with a timeout
    // of that interval it would have been dropped after two.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        s.recorder.events().closes.is_empty(),
        "dropped a silent peer"
    );
    c.subscribe("1", "{ hello }");
    assert_eq!(c.recv_json()["payload"]["data"]["hello"], "world");
}

fn a_zero_init_timeout_fires_at_once<R: TestRuntime>() {
    let s = R::start(Config::default().init_timeout(Duration::ZERO));
    let mut c = Client::modern(s.addr);
    assert_eq!(
        c.expect_close(),
        (4408, "Connection initialisation timeout".into())
    );
}

fn a_missing_required_variable_is_a_request_error<R: TestRuntime>() {
    let s = R::start(Config::default());
    for legacy in [false, true] {
        let mut c = acked(s.addr, legacy);
        let ty = if legacy { "start" } else { "subscribe" };
        let query = "subscription S($n: Int!) { ticks(count: $n, everyMs: 0) }";
        c.send(json!({"type": ty, "id": "v", "payload": {"query": query}}));
        let m = c.recv_json_skip_ka();
        assert_eq!(m["type"], "error", "{m}");
        let error = if legacy {
            &m["payload"]
        } else {
            &m["payload"][0]
        };
        assert_eq!(
            error["message"],
            r#"Variable "$n" of required type "Int!" was not provided."#
        );
        // No complete follows, and the id is free: reusing it works.
        c.send(json!({"type": ty, "id": "v", "payload": {"query": query, "variables": {"n": 1}}}));
        let m = c.recv_json_skip_ka();
        assert_eq!(m["payload"]["data"]["ticks"], 0, "{m}");
        assert_eq!(c.recv_json_skip_ka()["type"], "complete");
    }
    let e = s.recorder.events();
    let request_errors = e
        .completes
        .iter()
        .filter(|c| c.2 == EndReason::RequestError)
        .count();
    assert_eq!(request_errors, 2);
}

per_runtime!(
    a_flood_without_reading_is_pushed_back_and_every_reply_arrives,
    stop_and_close_in_one_write_get_the_close_echoed,
    panicking_drop_time_hooks_are_caught_and_others_unaffected,
    an_oversized_response_ends_only_its_operation,
    keepalive_timeout_none_keeps_a_silent_peer,
    a_zero_init_timeout_fires_at_once,
    a_missing_required_variable_is_a_request_error,
);
