//! The driver under the hand-polled bench: every path in virtual time, no runtime, no
//! socket, no wall clock. Each test asserts the one outcome `docs/PROTOCOL.md` section 4
//! specifies.

use std::time::Duration;

use serde_json::json;
use subscope::{CloseReason, Config, EndReason, Subprotocol};
use subscope_testbench::{Bench, Frame, PanicIn, wire};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn both() -> [Subprotocol; 2] {
    Subprotocol::ALL
}

fn bench(protocol: Subprotocol, config: Config) -> Bench {
    Bench::builder(protocol).config(config).build()
}

fn close_frames(frames: &[Frame]) -> Vec<(u16, String)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Close(Some(c)) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

// ---- existing paths -----------------------------------------------------------------

#[test]
fn init_timeout_closes_4408_at_exactly_its_deadline() {
    for p in both() {
        let mut b = bench(p, Config::default());
        b.advance(2999 * MS);
        assert!(b.is_running(), "{p}: closed before 3 s");
        assert!(b.frames().is_empty());
        b.advance(MS);
        assert_eq!(
            close_frames(&b.frames()),
            [(4408, "Connection initialisation timeout".to_owned())],
            "{p}"
        );
        b.send_bytes(&wire::close(4408, ""));
        assert_eq!(b.close_reason(), &CloseReason::InitTimeout, "{p}");
        assert_eq!(b.record.closes(), [CloseReason::InitTimeout]);
        assert!(
            b.record.disconnects().is_empty(),
            "no ack, no on_disconnect"
        );
    }
}

#[test]
fn init_timeout_none_never_fires() {
    for p in both() {
        let mut b = bench(
            p,
            Config::default()
                .init_timeout(None)
                .keepalive_interval(None),
        );
        b.advance_by_steps(Duration::from_secs(3600), Duration::from_secs(60));
        assert!(b.is_running(), "{p}");
        b.init();
    }
}

#[test]
fn keepalive_pings_then_drops_a_silent_peer_without_a_close_frame() {
    for p in both() {
        let mut b = bench(p, Config::default());
        b.init();
        b.subscribe("t", "subscription { ticks(everyMs: 100000) }");
        assert_eq!(b.next_json().expect("first tick")["id"], "t");
        b.advance(12 * SEC);
        assert_eq!(
            b.frames()
                .iter()
                .filter(|f| matches!(f, Frame::Ping(_)))
                .count(),
            1
        );
        b.advance(12 * SEC - MS);
        assert!(b.is_running(), "{p}: dropped before 24 s");
        b.advance(MS);
        assert_eq!(b.close_reason(), &CloseReason::KeepaliveTimeout, "{p}");
        assert!(
            close_frames(&b.frames()).is_empty(),
            "no close frame: the peer is gone"
        );
        assert_eq!(b.live_children(), (0, 0));
        assert_eq!(
            b.record.completes(),
            [(
                "t".to_owned(),
                EndReason::ConnectionClosed(CloseReason::KeepaliveTimeout)
            )]
        );
    }
}

#[test]
fn any_inbound_frame_is_a_sign_of_life() {
    let mut b = bench(Subprotocol::GraphqlTransportWs, Config::default());
    b.init();
    for round in 0..10 {
        b.advance(12 * SEC);
        assert!(
            b.frames().contains(&Frame::Ping(Vec::new())),
            "round {round}"
        );
        b.advance(11 * SEC);
        // Not a pong: any frame will do.
        b.send(json!({"type": "pong"}));
        assert!(b.is_running(), "round {round}");
    }
}

#[test]
fn keepalive_timeout_none_keeps_pinging_a_silent_peer() {
    let config = Config::default().keepalive_timeout(None);
    let mut b = bench(Subprotocol::GraphqlTransportWs, config);
    b.init();
    b.advance_by_steps(Duration::from_secs(600), SEC);
    assert!(b.is_running());
    let pings = b
        .frames()
        .iter()
        .filter(|f| matches!(f, Frame::Ping(_)))
        .count();
    assert_eq!(pings, 50);
}

#[test]
fn write_timeout_fires_while_a_write_is_pending() {
    for p in both() {
        let config = Config::default().keepalive_interval(None);
        let mut b = bench(p, config);
        b.init();
        b.pipe.stall_writes(true);
        b.subscribe("flood", "subscription { payload(bytes: 1000) }");
        b.advance(10 * SEC - MS);
        assert!(b.is_running(), "{p}: dropped before the write timeout");
        assert_eq!(b.live_children(), (1, 1));
        b.advance(MS);
        assert_eq!(b.close_reason(), &CloseReason::WriteTimeout, "{p}");
        assert_eq!(b.live_children(), (0, 0));
    }
}

#[test]
fn the_liveness_timer_runs_while_a_write_is_pending() {
    let config = Config::default()
        .keepalive_interval(2 * SEC)
        .keepalive_timeout(2 * SEC)
        .write_timeout(None);
    let mut b = bench(Subprotocol::GraphqlTransportWs, config);
    b.init();
    b.pipe.stall_writes(true);
    b.subscribe("flood", "subscription { payload(bytes: 1000) }");
    b.advance_by_steps(4 * SEC - MS, 100 * MS);
    assert!(b.is_running());
    b.advance(MS);
    assert_eq!(b.close_reason(), &CloseReason::KeepaliveTimeout);
    assert_eq!(b.live_children(), (0, 0));
}

#[test]
fn shutdown_closes_1001_after_dropping_children_and_returns_when_gone() {
    for p in both() {
        let mut b = bench(p, Config::default());
        b.init();
        for id in ["a", "b", "c"] {
            b.subscribe(id, "subscription { ticks(everyMs: 100000) }");
        }
        b.messages();
        assert_eq!(b.live_children(), (3, 3));
        b.start_shutdown(5 * SEC);
        // Children are gone before the client has even read the close frame.
        assert_eq!(b.live_children(), (0, 0));
        assert!(!b.shutdown_done(), "waits for the closing handshake");
        assert_eq!(close_frames(&b.frames()), [(1001, "Going away".to_owned())]);
        b.send_bytes(&wire::close(1001, ""));
        assert!(b.shutdown_done(), "{p}");
        assert_eq!(b.close_reason(), &CloseReason::ServerShutdown);
        let reasons: Vec<EndReason> = b.record.completes().into_iter().map(|c| c.1).collect();
        assert_eq!(
            reasons,
            vec![EndReason::ConnectionClosed(CloseReason::ServerShutdown); 3]
        );
    }
}

#[test]
fn shutdown_of_a_peer_that_never_answers_ends_within_the_close_timeout() {
    let mut b = bench(Subprotocol::GraphqlTransportWs, Config::default());
    b.init();
    b.start_shutdown(5 * SEC);
    b.advance(SEC - MS);
    assert!(!b.shutdown_done());
    b.advance(MS);
    assert!(
        b.shutdown_done(),
        "close timeout (1 s) bounds the closing handshake"
    );
    assert_eq!(b.close_reason(), &CloseReason::ServerShutdown);
}

#[test]
fn a_dropped_connection_future_drops_every_child_on_the_next_line() {
    for p in both() {
        let mut b = bench(p, Config::default());
        b.init();
        for i in 0..5 {
            b.subscribe(&i.to_string(), "subscription { ticks(everyMs: 100000) }");
        }
        assert_eq!(b.live_children(), (5, 5));
        b.drop_connection();
        assert_eq!(b.live_children(), (0, 0));
        assert_eq!(b.record.completes().len(), 5);
        assert!(
            b.record
                .completes()
                .iter()
                .all(|c| c.1 == EndReason::Dropped)
        );
        assert_eq!(b.record.disconnects(), [CloseReason::Dropped]);
        assert_eq!(b.record.closes(), [CloseReason::Dropped]);
    }
}

#[test]
fn an_always_ready_stream_does_not_starve_a_slow_one_or_the_inbound_side() {
    let config = Config::default().keepalive_interval(None);
    let mut b = bench(Subprotocol::GraphqlTransportWs, config);
    b.init();
    b.subscribe("fast", "subscription { payload(bytes: 100) }");
    b.subscribe("slow", "subscription { ticks(everyMs: 10) }");
    let (mut fast, mut slow) = (0usize, Vec::new());
    let mut pongs = 0;
    for step in 0..100 {
        b.advance(10 * MS);
        b.send(json!({"type": "ping", "payload": {"step": step}}));
        for m in b.messages() {
            match (m["type"].as_str(), m["id"].as_str()) {
                (Some("next"), Some("fast")) => fast += 1,
                (Some("next"), Some("slow")) => slow.push(m["payload"]["data"]["ticks"].as_i64()),
                (Some("pong"), _) => pongs += 1,
                other => panic!("unexpected {other:?}: {m}"),
            }
        }
    }
    // What the last steps produced may still sit behind a full window: read it out.
    for _ in 0..10 {
        for m in b.messages() {
            if m["id"] == "slow" {
                slow.push(m["payload"]["data"]["ticks"].as_i64());
            } else if m["type"] == "pong" {
                pongs += 1;
            }
        }
    }
    // Ticks in order and (nearly) on time, every ping answered, while the fast stream
    // floods. `ticks` sleeps after each item it yields, so a tick delivered a step late
    // shifts the rest by that much: 101 is the ideal, a starved stream would get a few.
    let expected: Vec<Option<i64>> = (0..slow.len() as i64).map(Some).collect();
    assert_eq!(slow, expected);
    assert!(
        slow.len() >= 95,
        "the slow stream got {} of 101 ticks",
        slow.len()
    );
    assert_eq!(pongs, 100);
    assert!(fast > 1000, "the fast stream made progress too ({fast})");
}

#[test]
fn a_connection_that_spent_its_read_budget_yields_before_reading_more() {
    let mut b = bench(Subprotocol::GraphqlTransportWs, Config::default());
    b.init();
    let ping = wire::text(r#"{"type":"ping"}"#);
    let batch: Vec<u8> = std::iter::repeat_n(ping, 40).flatten().collect();
    assert_eq!(b.pipe.client_write(&batch), batch.len());
    // One poll reads one budget (16 messages), answers them, and yields with a self-wake,
    // so tasks its messages woke (a publish wakes every subscriber) run before the rest.
    assert!(b.poll_once(), "yielded with work left");
    let pongs = |b: &mut Bench| b.messages().iter().filter(|m| m["type"] == "pong").count();
    assert_eq!(pongs(&mut b), 16);
    b.poll();
    assert_eq!(pongs(&mut b), 24, "the rest follows on the next polls");
}

#[test]
fn reset_and_eof_mid_stream_drop_every_child() {
    for end in ["reset", "eof"] {
        for p in both() {
            let mut b = bench(p, Config::default());
            b.init();
            b.subscribe("f", "subscription { payload(bytes: 100) }");
            b.subscribe("t", "subscription { ticks(everyMs: 100000) }");
            b.messages();
            match end {
                "reset" => b.pipe.reset(),
                _ => {
                    // A FIN is seen once the server reads again, i.e. once its writes
                    // drain: the client half-closed but still reads.
                    b.pipe.client_eof();
                    for _ in 0..100 {
                        if !b.is_running() {
                            break;
                        }
                        b.read();
                    }
                }
            }
            b.poll();
            assert_eq!(b.close_reason(), &CloseReason::PeerGone, "{p} {end}");
            assert_eq!(b.live_children(), (0, 0));
            assert_eq!(b.record.completes().len(), 2);
        }
    }
}

#[test]
fn failed_writes_end_the_connection_and_its_children() {
    let mut b = bench(Subprotocol::GraphqlWs, Config::default());
    b.init();
    b.subscribe("f", "subscription { ticks(everyMs: 50) }");
    b.messages();
    b.pipe.fail_writes();
    b.advance(50 * MS);
    assert_eq!(b.close_reason(), &CloseReason::PeerGone);
    assert_eq!(b.live_children(), (0, 0));
    assert_eq!(
        b.record.completes(),
        [(
            "f".to_owned(),
            EndReason::ConnectionClosed(CloseReason::PeerGone)
        )]
    );
}

#[test]
fn frames_split_byte_by_byte_batched_or_fragmented_are_all_understood() {
    let mut b = bench(Subprotocol::GraphqlTransportWs, Config::default());
    b.send_split(Bench::init_message(), 1);
    assert_eq!(b.next_json().expect("ack")["type"], "connection_ack");
    let one = b.operation("1", "{ hello }");
    let two = b.operation("2", "{ hello }");
    b.send_batch(&[one, two]);
    let got = b.messages();
    for id in ["1", "2"] {
        // Operations interleave; each one's own order is next, then complete.
        let types: Vec<&str> = got
            .iter()
            .filter(|m| m["id"] == id)
            .filter_map(|m| m["type"].as_str())
            .collect();
        assert_eq!(types, ["next", "complete"], "{id}: {got:?}");
    }
    let three = b.operation("3", "{ hello }").to_string();
    b.send_bytes(&wire::fragmented(&three, 7));
    assert_eq!(
        b.next_json().expect("next")["payload"]["data"]["hello"],
        "world"
    );
}

// ---- item 1: inbound backpressure ----------------------------------------------------

/// Floods `count` pings (each with a payload of `pad` bytes) without reading, as fast as
/// the inbound window takes them; returns how many were written.
fn flood_pings(b: &mut Bench, count: usize, pad: usize) -> usize {
    let ping =
        wire::text(&json!({"type": "ping", "payload": {"pad": "p".repeat(pad)}}).to_string());
    let mut sent = 0;
    while sent < count && b.pipe.client_write(&ping) == ping.len() {
        sent += 1;
        if sent % 64 == 0 {
            b.poll();
        }
    }
    b.poll();
    sent
}

#[test]
fn a_client_that_floods_without_reading_is_pushed_back_and_loses_nothing() {
    for p in both() {
        let config = Config::default()
            .inbound_rate(None)
            .keepalive_interval(None);
        let mut b = bench(p, config);
        b.init();
        b.pipe.set_outbound_capacity(64 * 1024);
        b.pipe.set_inbound_capacity(256 * 1024);
        if p == Subprotocol::GraphqlWs {
            // Legacy has no ping: flood with invalid messages, each answered by a
            // connection_error, which is the same reply-per-message shape.
            let bad = wire::text(r#"{"type":"nope"}"#);
            let mut sent = 0;
            while sent < 100_000 && b.pipe.client_write(&bad) == bad.len() {
                sent += 1;
                if sent % 64 == 0 {
                    b.poll();
                }
            }
            b.poll();
            assert!(
                sent < 100_000,
                "{p}: the server kept reading ({sent} messages)"
            );
            let consumed = b.pipe.consumed();
            b.poll();
            assert_eq!(b.pipe.consumed(), consumed, "reading stopped");
            let mut errors = 0;
            while errors < sent {
                let got = b.messages();
                assert!(!got.is_empty(), "{p}: stalled at {errors} of {sent}");
                errors += got
                    .iter()
                    .filter(|m| m["type"] == "connection_error")
                    .count();
            }
            assert_eq!(errors, sent);
            assert!(b.is_running());
            continue;
        }
        let sent = flood_pings(&mut b, 100_000, 100);
        assert!(sent < 100_000, "the server kept reading ({sent} pings)");
        // Reading has stopped: the server holds a bounded backlog, TCP holds the rest.
        let consumed = b.pipe.consumed();
        b.advance(SEC);
        assert_eq!(
            b.pipe.consumed(),
            consumed,
            "reading stopped while writes block"
        );
        assert!(
            consumed < 1024 * 1024,
            "the server read {consumed} bytes it could not answer"
        );
        // The client reads again: every ping gets its pong, in order.
        let mut pongs = 0;
        while pongs < sent {
            let got = b.messages();
            assert!(!got.is_empty(), "stalled at {pongs} of {sent}");
            for m in got {
                assert_eq!(m["type"], "pong", "{m}");
                pongs += 1;
            }
        }
        assert_eq!(pongs, sent);
        assert!(b.is_running());
    }
}

#[test]
fn what_waits_behind_a_pending_on_connect_is_bounded_in_bytes() {
    let config = Config::default()
        .inbound_rate(None)
        .keepalive_interval(None);
    let mut b = Bench::builder(Subprotocol::GraphqlTransportWs)
        .config(config)
        .gate_connect()
        .build();
    b.pipe.set_inbound_capacity(16 * 1024 * 1024);
    b.send(Bench::init_message());
    let sent = flood_pings(&mut b, 1000, 10_000);
    assert_eq!(sent, 1000, "the window holds them all");
    let consumed = b.pipe.consumed();
    b.poll();
    assert_eq!(
        b.pipe.consumed(),
        consumed,
        "reading stopped behind on_connect"
    );
    // 64 KiB held, plus one message of overshoot, plus what tungstenite has buffered.
    assert!(
        consumed < 64 * 1024 + 2 * 10_100 + 16 * 1024,
        "read {consumed} bytes"
    );
    b.open_gate();
    let mut replies = Vec::new();
    while replies.len() < 1 + sent {
        let got = b.messages();
        assert!(!got.is_empty(), "stalled at {}", replies.len());
        replies.extend(got);
    }
    assert_eq!(replies[0]["type"], "connection_ack");
    assert!(replies[1..].iter().all(|m| m["type"] == "pong"));
    assert_eq!(replies.len(), 1 + sent);
}

// ---- item 2: the close echo ----------------------------------------------------------

#[test]
fn stop_and_close_in_one_write_get_the_close_code_echoed() {
    for p in both() {
        let mut b = bench(p, Config::default());
        b.init();
        b.subscribe("t", "subscription { ticks(everyMs: 100000) }");
        b.messages();
        let mut bytes = wire::text(&b.stop_message("t").to_string());
        bytes.extend(wire::close(1000, "bye"));
        b.send_bytes(&bytes);
        let frames = b.frames();
        // tungstenite echoes the peer's code and reason.
        assert_eq!(
            frames.last(),
            Some(&Frame::Close(Some((1000, "bye".into())))),
            "{p}: {frames:?}"
        );
        assert_eq!(
            b.close_reason(),
            &CloseReason::ClientClosed {
                code: 1000,
                reason: "bye".into()
            }
        );
        assert_eq!(b.live_children(), (0, 0));
    }
}

#[test]
fn a_close_behind_queued_replies_is_echoed_with_its_code() {
    let mut b = bench(Subprotocol::GraphqlTransportWs, Config::default());
    b.init();
    let mut bytes = Vec::new();
    for _ in 0..40 {
        bytes.extend(wire::text(r#"{"type":"ping"}"#));
    }
    bytes.extend(wire::close(4000, "app"));
    b.pipe.stall_writes(true);
    b.send_bytes(&bytes);
    b.pipe.stall_writes(false);
    b.poll();
    let frames = b.frames();
    assert_eq!(
        frames.last(),
        Some(&Frame::Close(Some((4000, "app".into())))),
        "{frames:?}"
    );
    assert_eq!(
        b.close_reason(),
        &CloseReason::ClientClosed {
            code: 4000,
            reason: "app".into()
        }
    );
}

// ---- item 3: drop-time hooks that panic -----------------------------------------------

fn panicking(p: Subprotocol) -> Bench {
    let all = PanicIn {
        on_complete: true,
        on_disconnect: true,
        on_close: true,
    };
    let mut b = Bench::builder(p).panic_in(all).build();
    b.init();
    b.subscribe("a", "subscription { ticks(everyMs: 100000) }");
    b.subscribe("b", "subscription { ticks(everyMs: 100000) }");
    b
}

#[test]
fn panicking_drop_time_hooks_are_caught_counted_and_cleanup_goes_on() {
    for p in both() {
        // Dropped from outside: the hooks run inside Drop.
        let mut b = panicking(p);
        b.drop_connection();
        assert_eq!(b.live_children(), (0, 0));
        assert_eq!(b.record.completes().len(), 2);
        assert_eq!(b.record.closes(), [CloseReason::Dropped]);
        assert_eq!(
            b.gauges.snapshot().hook_panics,
            4,
            "2 on_complete, on_disconnect, on_close"
        );
        assert_eq!(b.gauges.connections(), 0);

        // Ended by the peer: same.
        let mut b = panicking(p);
        b.send_bytes(&wire::close(1000, ""));
        assert!(b.ended().is_some());
        assert_eq!(b.gauges.snapshot().hook_panics, 4);
    }
}

#[test]
fn a_panicking_hook_during_unwinding_does_not_abort() {
    let b = panicking(Subprotocol::GraphqlTransportWs);
    let gauges = std::sync::Arc::clone(&b.gauges);
    let live = b.live.clone();
    // The connection is dropped while another panic unwinds through its owner.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _owned = b;
        panic!("the owner panics");
    }));
    assert!(unwound.is_err());
    assert_eq!(live.get(), 0);
    assert_eq!(gauges.snapshot().hook_panics, 4);
}

// ---- item 4: an oversized response ---------------------------------------------------

#[test]
fn an_oversized_response_ends_only_its_operation() {
    for p in both() {
        let config = Config::default().max_response_size(4096);
        let mut b = bench(p, config);
        b.init();
        b.subscribe("small", "subscription { ticks(everyMs: 1000) }");
        b.subscribe("big", "subscription { payload(bytes: 10000) }");
        let mut seen = b.messages();
        b.advance(SEC);
        seen.extend(b.messages());
        let big: Vec<_> = seen.iter().filter(|m| m["id"] == "big").collect();
        assert_eq!(big.len(), 1, "{p}: {big:?}");
        assert_eq!(big[0]["type"], "error");
        let message = match p {
            Subprotocol::GraphqlWs => &big[0]["payload"]["message"],
            _ => &big[0]["payload"][0]["message"],
        };
        assert_eq!(message, "Response too large");
        let ticks = seen
            .iter()
            .filter(|m| m["id"] == "small" && m["type"] == b.data_type())
            .count();
        assert_eq!(ticks, 2, "the other operation goes on");
        assert!(b.is_running());
        assert!(
            b.record
                .completes()
                .contains(&("big".to_owned(), EndReason::ResponseTooLarge))
        );
        assert_eq!(b.gauges.snapshot().responses_too_large, 1);
        assert_eq!(b.live_children(), (1, 1));
    }
}

// ---- item 5: None disables, zero is zero ----------------------------------------------

const PARTIAL_UPGRADE: &[u8] = b"GET /graphql HTTP/1.1\r\nHost: x\r\n";

#[test]
fn handshake_timeout_drops_an_unfinished_upgrade_at_its_deadline() {
    let mut b = Bench::builder(Subprotocol::GraphqlTransportWs)
        .with_upgrade()
        .build();
    b.send_bytes(PARTIAL_UPGRADE);
    b.advance(10 * SEC - MS);
    assert!(b.is_running());
    b.advance(MS);
    assert_eq!(b.ended(), Some(&None), "handshake failed: no WebSocket");
    assert_eq!(b.pipe.unread_outbound(), 0, "no response at all");
}

#[test]
fn handshake_timeout_none_waits_for_the_upgrade() {
    let mut b = Bench::builder(Subprotocol::GraphqlTransportWs)
        .config(Config::default().handshake_timeout(None))
        .with_upgrade()
        .build();
    b.send_bytes(PARTIAL_UPGRADE);
    b.advance_by_steps(Duration::from_secs(3600), Duration::from_secs(60));
    assert!(b.is_running());
    b.send_bytes(
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
    );
    let response = String::from_utf8(b.pipe.client_read()).expect("utf-8");
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(response.contains("graphql-transport-ws"), "{response}");
}

#[test]
fn a_zero_init_timeout_fires_at_once() {
    let mut b = bench(
        Subprotocol::GraphqlTransportWs,
        Config::default().init_timeout(Duration::ZERO),
    );
    assert_eq!(
        close_frames(&b.frames()),
        [(4408, "Connection initialisation timeout".to_owned())]
    );
}

// ---- item 6: variable coercion ---------------------------------------------------------

#[test]
fn a_missing_required_variable_is_a_request_error_and_releases_the_id() {
    for p in both() {
        let mut b = bench(p, Config::default());
        b.init();
        b.subscribe(
            "v",
            "subscription S($n: Int!) { ticks(count: $n, everyMs: 0) }",
        );
        let got = b.messages();
        assert_eq!(got.len(), 1, "{p}: one error, no complete: {got:?}");
        assert_eq!(got[0]["type"], "error");
        let error = match p {
            Subprotocol::GraphqlWs => &got[0]["payload"],
            _ => &got[0]["payload"][0],
        };
        assert_eq!(
            error["message"],
            r#"Variable "$n" of required type "Int!" was not provided."#
        );
        assert_eq!(error["locations"][0]["line"], 1);
        assert_eq!(
            b.record.completes(),
            [("v".to_owned(), EndReason::RequestError)]
        );
        // The id is free again.
        let ty = if p == Subprotocol::GraphqlWs {
            "start"
        } else {
            "subscribe"
        };
        b.send(json!({"type": ty, "id": "v", "payload": {
            "query": "subscription S($n: Int!) { ticks(count: $n, everyMs: 0) }",
            "variables": {"n": 2}}}));
        let types: Vec<String> = b.messages().iter().map(|m| m["type"].to_string()).collect();
        let data = format!("\"{}\"", b.data_type());
        assert_eq!(
            types,
            [data.clone(), data, "\"complete\"".to_owned()],
            "{p}"
        );
        assert!(b.is_running());
    }
}

/// Shared executions under the hand-polled bench: two identical operations of one
/// connection share one upstream, which dies inside the `drop` of the connection future,
/// and with a keepalive timeout in virtual time.
#[test]
fn shared_upstreams_end_with_the_connection_future_and_on_timeouts() {
    for p in both() {
        for dropped in [true, false] {
            let mut b = bench(p, Config::default().share_identical(true));
            b.init();
            for id in ["a", "b"] {
                b.subscribe(id, "subscription { ticks(everyMs: 100000) }");
            }
            b.messages();
            assert_eq!(b.live_children(), (2, 1), "{p}: two operations, one stream");
            assert_eq!(b.gauges.snapshot().shared_upstreams, 1);
            let expected = if dropped {
                b.drop_connection();
                EndReason::Dropped
            } else {
                b.advance(12 * SEC); // the ping
                b.advance(12 * SEC); // no pong
                assert_eq!(b.close_reason(), &CloseReason::KeepaliveTimeout, "{p}");
                EndReason::ConnectionClosed(CloseReason::KeepaliveTimeout)
            };
            // Synchronously: no poll happened since.
            assert_eq!(b.live_children(), (0, 0), "{p}");
            let g = b.gauges.snapshot();
            assert_eq!((g.shared_upstreams, g.shared_subscriptions), (0, 0), "{p}");
            let reasons: Vec<EndReason> = b.record.completes().into_iter().map(|c| c.1).collect();
            assert_eq!(reasons, vec![expected; 2], "{p}");
        }
    }
}

// ---- resumed streams ------------------------------------------------------------------

/// A stream resumed after an event id (a gap said, the replay, then live) ends on every
/// path at every step with nothing leaked and `on_complete` once.
#[test]
fn resumed_streams_end_at_every_step_with_nothing_leaked_and_one_completion() {
    use subscope::{Delivery, History};
    for p in both() {
        for step in ["before polling", "after the replay", "in live"] {
            for end in ["stop", "drop", "reset"] {
                let delivery = Delivery::default().history(History::last(100));
                let mut b = Bench::builder(p)
                    .config(Config::default().detect_leaks(true))
                    .delivery(delivery)
                    .build();
                b.init();
                for i in 0..50 {
                    futures_lite::future::block_on(b.broker.publish("t", format!("m{i}")))
                        .expect("publish");
                }
                let resume = |b: &Bench, id: &str, after: &str| {
                    let mut m = b.operation(id, "subscription { messages(topic: \"t\") }");
                    m["payload"]["extensions"] = json!({ "lastEventId": after });
                    m
                };
                // After an id of no process: the gap, then all 50, each with its id.
                let m = resume(&b, "a", "0-0");
                b.send(m);
                let got = b.messages();
                assert_eq!(
                    got[0]["payload"]["errors"][0]["extensions"]["code"],
                    "RESUME_GAP"
                );
                let id10 = got[11]["payload"]["extensions"]["eventId"]
                    .as_str()
                    .expect("an event id")
                    .to_owned();
                assert_eq!(got[11]["payload"]["data"]["messages"], "m10");
                let stop = b.stop_message("a");
                b.send(stop);
                b.messages();

                let m = resume(&b, "r", &id10);
                b.send(m);
                match step {
                    "before polling" => {}
                    "after the replay" => {
                        let got = b.messages();
                        assert_eq!(got.len(), 39, "{p}: m11..m49");
                        assert_eq!(got[0]["payload"]["data"]["messages"], "m11");
                    }
                    _ => {
                        b.messages();
                        futures_lite::future::block_on(b.broker.publish("t", "live".to_owned()))
                            .expect("publish");
                        b.poll();
                        let got = b.messages();
                        assert_eq!(got[0]["payload"]["data"]["messages"], "live", "{p}");
                    }
                }
                match end {
                    "stop" => {
                        let stop = b.stop_message("r");
                        b.send(stop);
                        b.poll();
                    }
                    "drop" => b.drop_connection(),
                    _ => {
                        b.pipe.reset();
                        b.poll();
                    }
                }
                assert_eq!(b.live_children(), (0, 0), "{p} {step} {end}");
                let completes: Vec<_> = b
                    .record
                    .completes()
                    .into_iter()
                    .filter(|c| c.0 == "r")
                    .collect();
                assert_eq!(completes.len(), 1, "{p} {step} {end}: {completes:?}");
                assert_eq!(b.gauges.snapshot().leaked_operations, 0, "{p} {step} {end}");
                assert_eq!(b.broker.subscribers("t"), 0, "{p} {step} {end}");
            }
        }
    }
}
