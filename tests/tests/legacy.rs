//! PROTOCOL.md 4.3: the legacy `graphql-ws` subprotocol, row by row, over real sockets.

use std::time::Duration;

use serde_json::json;
use subscope::{CloseReason, Config, EndReason};
use subscope_tests::{Client, DEADLINE, TestRuntime, TestServer, per_runtime};
use tungstenite::Message;

/// A legacy client past `connection_ack` and the first `ka`.
fn ready<R: TestRuntime>(config: Config) -> (TestServer, Client) {
    let s = R::start(config);
    let mut c = Client::legacy(s.addr);
    c.init(None);
    assert_eq!(c.recv_json(), json!({"type": "ka"}));
    (s, c)
}

fn init_timeout_closes_4408<R: TestRuntime>() {
    let s = R::start(Config::default().init_timeout(Duration::from_millis(150)));
    let mut c = Client::legacy(s.addr);
    assert_eq!(
        c.expect_close(),
        (4408, "Connection initialisation timeout".into())
    );
}

fn ack_then_ka_at_once_and_every_interval<R: TestRuntime>() {
    let s = R::start(Config::default().keepalive_interval(Duration::from_millis(100)));
    let mut c = Client::legacy(s.addr);
    assert_eq!(
        c.init(Some(json!({"ack": {"v": 1}}))),
        json!({"type": "connection_ack", "payload": {"v": 1}})
    );
    for _ in 0..3 {
        assert_eq!(c.recv_json(), json!({"type": "ka"}));
    }
}

fn rejected_init_sends_connection_error_then_1011<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::legacy(s.addr);
    c.send(json!({"type": "connection_init", "payload": {"reject": "bad token"}}));
    assert_eq!(
        c.recv_json(),
        json!({"type": "connection_error", "payload": {"message": "bad token"}})
    );
    assert_eq!(c.expect_close().0, 1011);
    let e = s.recorder.wait_closes(1, DEADLINE);
    assert_eq!(e.closes[0].1, CloseReason::LegacyInitRejected);
}

fn second_init_sends_connection_error_then_4429<R: TestRuntime>() {
    let (_s, mut c) = ready::<R>(Config::default());
    c.send(json!({"type": "connection_init"}));
    assert_eq!(
        c.recv_json(),
        json!({"type": "connection_error", "payload": {"message": "Too many initialisation requests"}})
    );
    assert_eq!(c.expect_close().0, 4429);
}

fn start_before_ack_closes_4401<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::legacy(s.addr);
    c.start("1", "subscription { ticks }");
    assert_eq!(c.expect_close(), (4401, "Unauthorized".into()));
    assert!(
        s.recorder.events().subscribes.is_empty(),
        "no resolver before on_connect"
    );
    assert_eq!(s.gauges.snapshot().operations_total, 0);
}

fn start_with_a_live_id_replaces_it_after_its_complete<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default());
    c.start("x", "subscription { delayed(ms: 60000) }");
    s.wait_live(1);
    c.start("x", "{ hello }");
    assert_eq!(
        c.recv_json_skip_ka(),
        json!({"id": "x", "type": "complete"})
    );
    assert_eq!(
        c.recv_json_skip_ka(),
        json!({"id": "x", "type": "data", "payload": {"data": {"hello": "world"}}})
    );
    assert_eq!(
        c.recv_json_skip_ka(),
        json!({"id": "x", "type": "complete"})
    );
    s.wait_live(0);
    let e = s
        .recorder
        .wait("2 completes", DEADLINE, |e| e.completes.len() == 2);
    assert_eq!(e.completes[0].2, EndReason::Replaced);
}

fn malformed_messages_get_connection_error_and_the_socket_stays<R: TestRuntime>() {
    let (_s, mut c) = ready::<R>(Config::default());
    for text in [
        "not json",
        "[]",
        r#"{"type":"subscribe","id":"1","payload":{"query":"{hello}"}}"#,
        r#"{"type":"ping"}"#,
    ] {
        c.send_text(text);
        let m = c.recv_json_skip_ka();
        assert_eq!(m["type"], "connection_error", "{text}");
        assert!(m["payload"]["message"].as_str().is_some(), "{m}");
    }
    c.start("q", "{ hello }");
    assert_eq!(c.recv_json_skip_ka()["type"], "data");
}

fn binary_frame_closes_1002<R: TestRuntime>() {
    let (_s, mut c) = ready::<R>(Config::default());
    c.send_message(Message::binary(b"{}".to_vec()));
    assert_eq!(
        c.expect_close(),
        (1002, "WebSocket message type must be text".into())
    );
}

fn validation_error_is_a_single_error_object<R: TestRuntime>() {
    let (_s, mut c) = ready::<R>(Config::default());
    c.start("v", "{ nosuchfield }");
    let m = c.recv_json_skip_ka();
    assert_eq!(m["type"], "error");
    assert_eq!(m["id"], "v");
    assert!(m["payload"].is_object(), "{m}");
    assert!(m["payload"]["message"].is_string(), "{m}");
    assert!(m["payload"]["locations"].is_array(), "{m}");
    c.expect_silence(Duration::from_millis(200));
}

fn resolver_errors_travel_in_data<R: TestRuntime>() {
    let (_s, mut c) = ready::<R>(Config::default());
    c.start("f", "subscription { failing }");
    let m = c.recv_json_skip_ka();
    assert_eq!(m["type"], "data");
    assert_eq!(m["payload"]["errors"][0]["message"], "failing on purpose");
    assert_eq!(
        c.recv_json_skip_ka(),
        json!({"id": "f", "type": "complete"})
    );
}

fn query_is_one_data_then_complete<R: TestRuntime>() {
    let (_s, mut c) = ready::<R>(Config::default());
    c.start("q", "{ hello }");
    assert_eq!(
        c.recv_json_skip_ka(),
        json!({"id": "q", "type": "data", "payload": {"data": {"hello": "world"}}})
    );
    assert_eq!(
        c.recv_json_skip_ka(),
        json!({"id": "q", "type": "complete"})
    );
}

fn stop_drops_the_stream_then_sends_complete<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default());
    c.start("t", "subscription { ticks(everyMs: 60000) }");
    assert_eq!(c.recv_json_skip_ka()["payload"]["data"]["ticks"], 0);
    c.send(json!({"id": "t", "type": "stop"}));
    assert_eq!(
        c.recv_json_skip_ka(),
        json!({"id": "t", "type": "complete"})
    );
    assert_eq!(s.live.get(), 0, "dropped before complete was sent");
    c.send(json!({"id": "unknown", "type": "stop"}));
    c.expect_silence(Duration::from_millis(200));
}

fn messages_fan_out_and_refusals_are_errors<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default());
    c.start("m", r#"subscription { messages(topic: "news") }"#);
    s.wait_live(1);
    assert_eq!(
        futures_lite::future::block_on(s.broker.publish("news", "hi".to_owned())),
        Ok(1)
    );
    assert_eq!(c.recv_json_skip_ka()["payload"]["data"]["messages"], "hi");
    c.send(json!({"id": "r", "type": "start",
        "payload": {"query": "subscription Refused { ticks }", "operationName": "Refused"}}));
    assert_eq!(
        c.recv_json_skip_ka(),
        json!({"id": "r", "type": "error", "payload": {"message": "refused by on_subscribe"}})
    );
}

fn connection_terminate_drops_everything_and_closes_1000<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default());
    c.start("a", "subscription { delayed(ms: 60000) }");
    c.start("b", "subscription { ticks(everyMs: 60000) }");
    assert_eq!(c.recv_json_skip_ka()["id"], "b");
    s.wait_live(2);
    c.send(json!({"type": "connection_terminate"}));
    assert_eq!(c.expect_close().0, 1000);
    s.wait_idle();
    let e = s.recorder.wait_closes(1, DEADLINE);
    assert_eq!(e.completes.len(), 2);
    assert!(
        e.completes
            .iter()
            .all(|(_, _, r)| *r == EndReason::ConnectionClosed(CloseReason::Terminated))
    );
    assert_eq!(e.disconnects.len(), 1);
}

per_runtime!(
    init_timeout_closes_4408,
    ack_then_ka_at_once_and_every_interval,
    rejected_init_sends_connection_error_then_1011,
    second_init_sends_connection_error_then_4429,
    start_before_ack_closes_4401,
    start_with_a_live_id_replaces_it_after_its_complete,
    malformed_messages_get_connection_error_and_the_socket_stays,
    binary_frame_closes_1002,
    validation_error_is_a_single_error_object,
    resolver_errors_travel_in_data,
    query_is_one_data_then_complete,
    stop_drops_the_stream_then_sends_complete,
    messages_fan_out_and_refusals_are_errors,
    connection_terminate_drops_everything_and_closes_1000,
    start_right_behind_init_runs_after_the_ack,
);

/// The Apollo client sends `start` right behind `connection_init`, without waiting for the
/// ack: it is processed once `on_connect` has decided, in order.
fn start_right_behind_init_runs_after_the_ack<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::legacy(s.addr);
    c.send(json!({"type": "connection_init"}));
    c.start("q", "{ hello }");
    assert_eq!(c.recv_json()["type"], "connection_ack");
    assert_eq!(c.recv_json_skip_ka()["payload"]["data"]["hello"], "world");
    // Behind a rejected init, nothing runs.
    let mut c = Client::legacy(s.addr);
    c.send(json!({"type": "connection_init", "payload": {"reject": "no"}}));
    c.start("q", "{ hello }");
    assert_eq!(c.recv_json()["type"], "connection_error");
    assert_eq!(c.expect_close().0, 1011);
    assert_eq!(s.recorder.events().subscribes.len(), 1);
}
