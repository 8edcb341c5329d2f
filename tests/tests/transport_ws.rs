//! PROTOCOL.md 4.2: `graphql-transport-ws`, row by row, over real sockets.

use std::time::Duration;

use serde_json::json;
use subscope::{CloseReason, Config, EndReason};
use subscope_tests::{Client, DEADLINE, TestRuntime, TestServer, per_runtime};
use tungstenite::Message;

fn ready<R: TestRuntime>(config: Config) -> (TestServer, Client) {
    let s = R::start(config);
    let mut c = Client::modern(s.addr);
    c.init(None);
    (s, c)
}

fn init_timeout_closes_4408<R: TestRuntime>() {
    let s = R::start(Config::default().init_timeout(Duration::from_millis(150)));
    let mut c = Client::modern(s.addr);
    assert_eq!(
        c.expect_close(),
        (4408, "Connection initialisation timeout".into())
    );
    let e = s.recorder.wait_closes(1, DEADLINE);
    assert_eq!(e.closes[0].1, CloseReason::InitTimeout);
    assert!(e.disconnects.is_empty(), "on_disconnect only after an ack");
}

fn init_timeout_none_disables_it<R: TestRuntime>() {
    let s = R::start(Config::default().init_timeout(None));
    let mut c = Client::modern(s.addr);
    c.expect_silence(Duration::from_millis(300));
    c.init(None);
}

fn ack_has_no_payload_key_unless_the_hook_gives_one<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::modern(s.addr);
    assert_eq!(c.init(None), json!({"type": "connection_ack"}));
    let mut c = Client::modern(s.addr);
    assert_eq!(c.init(Some(json!(null))), json!({"type": "connection_ack"}));
    let mut c = Client::modern(s.addr);
    let ack = c.init(Some(json!({"ack": {"user": "alice"}})));
    assert_eq!(
        ack,
        json!({"type": "connection_ack", "payload": {"user": "alice"}})
    );
}

fn rejected_init_closes_4403<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::modern(s.addr);
    c.send(json!({"type": "connection_init", "payload": {"reject": "no"}}));
    assert_eq!(c.expect_close(), (4403, "Forbidden".into()));
}

fn failing_or_panicking_init_hook_closes_4500<R: TestRuntime>() {
    let s = R::start(Config::default());
    for payload in [json!({"fail": true}), json!({"panic": true})] {
        let mut c = Client::modern(s.addr);
        c.send(json!({"type": "connection_init", "payload": payload}));
        assert_eq!(c.expect_close(), (4500, "Internal server error".into()));
    }
    // The server is unharmed.
    let mut c = Client::modern(s.addr);
    c.init(None);
}

fn second_init_closes_4429<R: TestRuntime>() {
    let (_s, mut c) = ready::<R>(Config::default());
    c.send(json!({"type": "connection_init"}));
    assert_eq!(
        c.expect_close(),
        (4429, "Too many initialisation requests".into())
    );
}

fn subscribe_before_ack_closes_4401<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::modern(s.addr);
    c.subscribe("1", "{ hello }");
    assert_eq!(c.expect_close(), (4401, "Unauthorized".into()));
    assert!(
        s.recorder.events().subscribes.is_empty(),
        "no hook before the ack"
    );
}

fn duplicate_live_id_closes_4409<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default());
    c.subscribe("dup", "subscription { ticks(everyMs: 60000) }");
    assert_eq!(c.recv_json()["payload"]["data"]["ticks"], 0);
    c.subscribe("dup", "{ hello }");
    assert_eq!(
        c.expect_close(),
        (4409, "Subscriber for dup already exists".into())
    );
    s.wait_idle();
    let e = s.recorder.wait_closes(1, DEADLINE);
    assert_eq!(e.completes.len(), 1);
}

fn invalid_messages_close_4400<R: TestRuntime>() {
    let s = R::start(Config::default());
    let cases: Vec<Message> = vec![
        Message::text("not json"),
        Message::text("[1,2]"),
        Message::text(r#"{"type":"nope"}"#),
        Message::text(r#"{"payload":{}}"#),
        Message::text(r#"{"type":"next","id":"1","payload":{}}"#),
        Message::text(r#"{"type":"connection_ack"}"#),
        Message::text(r#"{"type":"start","id":"1","payload":{"query":"{hello}"}}"#),
        Message::text(r#"{"type":"subscribe","id":"1","payload":{"query":5}}"#),
        Message::text(r#"{"type":"connection_init","payload":"token"}"#),
        Message::binary(b"{\"type\":\"connection_init\"}".to_vec()),
    ];
    for message in cases {
        let mut c = Client::modern(s.addr);
        let shown = format!("{message:?}");
        c.send_message(message);
        let (code, reason) = c.expect_close();
        assert_eq!(code, 4400, "{shown}");
        assert!(
            reason.starts_with("Invalid message received"),
            "{shown}: {reason}"
        );
    }
}

fn request_errors_are_one_error_message_and_release_the_id<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default());
    c.subscribe("1", "{ hello ");
    let m = c.recv_json();
    assert_eq!(m["type"], "error");
    assert_eq!(m["id"], "1");
    assert!(
        m["payload"].as_array().is_some_and(|a| !a.is_empty()),
        "{m}"
    );
    c.subscribe("1", "{ nosuchfield }");
    let m = c.recv_json();
    assert_eq!(m["type"], "error");
    assert!(m["payload"][0]["message"].as_str().is_some(), "{m}");
    c.send(json!({"id": "1", "type": "subscribe",
        "payload": {"query": "query A { hello }", "operationName": "B"}}));
    assert_eq!(c.recv_json()["type"], "error");
    // No complete followed; the id is free again.
    c.subscribe("1", "{ hello }");
    assert_eq!(
        c.recv_json(),
        json!({"id": "1", "type": "next", "payload": {"data": {"hello": "world"}}})
    );
    assert_eq!(c.recv_json(), json!({"id": "1", "type": "complete"}));
    let e = s
        .recorder
        .wait("4 completes", DEADLINE, |e| e.completes.len() == 4);
    let reasons: Vec<_> = e.completes.iter().map(|(_, _, r)| r.clone()).collect();
    assert_eq!(
        reasons,
        [
            EndReason::RequestError,
            EndReason::RequestError,
            EndReason::RequestError,
            EndReason::Completed
        ]
    );
}

fn resolver_errors_travel_in_next_and_complete_follows<R: TestRuntime>() {
    let (_s, mut c) = ready::<R>(Config::default());
    c.subscribe("f", "subscription { failing(after: 1) }");
    assert_eq!(c.recv_json()["payload"]["data"]["failing"], 0);
    let m = c.recv_json();
    assert_eq!(m["type"], "next");
    assert_eq!(m["payload"]["errors"][0]["message"], "failing on purpose");
    assert_eq!(c.recv_json(), json!({"id": "f", "type": "complete"}));
}

fn panicking_stream_gets_an_error_and_others_continue<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default());
    c.subscribe("t", "subscription { ticks(everyMs: 50) }");
    assert_eq!(c.recv_json()["id"], "t");
    c.subscribe("p", "subscription { panicking(after: 1) }");
    let mut seen_error = false;
    let mut ticks_after = 0;
    while !(seen_error && ticks_after >= 2) {
        let m = c.recv_json();
        match (m["id"].as_str(), m["type"].as_str()) {
            (Some("p"), Some("error")) => {
                assert_eq!(m["payload"], json!([{"message": "Internal server error"}]));
                seen_error = true;
            }
            (Some("p"), Some("next")) => {}
            (Some("t"), Some("next")) if seen_error => ticks_after += 1,
            (Some("t"), Some("next")) => {}
            _ => panic!("unexpected {m}"),
        }
    }
    let e = s.recorder.wait("panicked op completed", DEADLINE, |e| {
        e.completes
            .iter()
            .any(|(_, id, r)| id == "p" && *r == EndReason::Panicked)
    });
    assert_eq!(e.completes.len(), 1);
    s.wait_live(1);
}

fn query_and_mutation_are_one_next_then_complete<R: TestRuntime>() {
    let (_s, mut c) = ready::<R>(Config::default());
    c.subscribe("q", "{ hello }");
    assert_eq!(
        c.recv_json(),
        json!({"id": "q", "type": "next", "payload": {"data": {"hello": "world"}}})
    );
    assert_eq!(c.recv_json(), json!({"id": "q", "type": "complete"}));
    c.subscribe("m", r#"mutation { publish(topic: "t", message: "x") }"#);
    assert_eq!(c.recv_json()["payload"]["data"]["publish"], 0);
    assert_eq!(c.recv_json(), json!({"id": "m", "type": "complete"}));
}

fn stream_end_sends_complete<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default());
    c.subscribe("t", "subscription { ticks(everyMs: 1, count: 3) }");
    for i in 0..3 {
        assert_eq!(c.recv_json()["payload"]["data"]["ticks"], i);
    }
    assert_eq!(c.recv_json(), json!({"id": "t", "type": "complete"}));
    s.wait_live(0);
}

fn client_complete_drops_the_stream_and_sends_nothing<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default());
    c.subscribe("d", "subscription { delayed(ms: 60000) }");
    s.wait_live(1);
    c.send(json!({"id": "d", "type": "complete"}));
    s.wait_live(0);
    let e = s
        .recorder
        .wait("complete", DEADLINE, |e| e.completes.len() == 1);
    assert_eq!(e.completes[0].2, EndReason::ClientStopped);
    // Unknown and finished ids are ignored.
    c.send(json!({"id": "d", "type": "complete"}));
    c.send(json!({"id": "never", "type": "complete"}));
    c.expect_silence(Duration::from_millis(200));
    // The id may be reused at once.
    c.subscribe("d", "{ hello }");
    assert_eq!(c.recv_json()["type"], "next");
}

fn ping_gets_pong_echoing_the_payload_even_before_init<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::modern(s.addr);
    c.send(json!({"type": "ping"}));
    assert_eq!(c.recv_json(), json!({"type": "pong"}));
    c.send(json!({"type": "ping", "payload": {"n": 1}}));
    assert_eq!(c.recv_json(), json!({"type": "pong", "payload": {"n": 1}}));
    c.send(json!({"type": "pong"}));
    c.init(None);
    c.send(json!({"type": "pong", "payload": {"x": 1}}));
    c.expect_silence(Duration::from_millis(200));
}

fn subscription_limit_errors_and_slots_come_back<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default().max_subscriptions(2));
    c.subscribe("a", "subscription { delayed(ms: 60000) }");
    c.subscribe("b", "subscription { ticks(everyMs: 1, count: 1) }");
    assert_eq!(c.recv_json()["id"], "b");
    assert_eq!(c.recv_json(), json!({"id": "b", "type": "complete"}));
    c.subscribe("c", "subscription { delayed(ms: 60000) }");
    c.subscribe("d", "subscription { delayed(ms: 60000) }");
    assert_eq!(
        c.recv_json(),
        json!({"id": "d", "type": "error", "payload": [{"message": "Subscription limit reached"}]})
    );
    // A request error also returns its slot.
    c.send(json!({"id": "a", "type": "complete"}));
    c.subscribe("e", "{ broken");
    assert_eq!(c.recv_json()["type"], "error");
    c.subscribe("f", "{ hello }");
    assert_eq!(c.recv_json()["type"], "next");
    drop(s);
}

fn oversized_message_closes_1009<R: TestRuntime>() {
    let (_s, mut c) = ready::<R>(Config::default().max_message_size(1024));
    let big = "x".repeat(2048);
    c.send(json!({"id": "1", "type": "subscribe", "payload": {"query": big}}));
    assert_eq!(c.expect_close(), (1009, "Message too big".into()));
}

fn graceful_shutdown_closes_1001<R: TestRuntime>() {
    let (s, mut c) = ready::<R>(Config::default());
    c.subscribe("d", "subscription { delayed(ms: 60000) }");
    s.wait_live(1);
    s.shutdown(Duration::from_secs(5));
    assert_eq!(s.live.get(), 0, "shutdown returned with a live stream");
    assert_eq!(c.expect_close(), (1001, "Going away".into()));
}

per_runtime!(
    init_timeout_closes_4408,
    init_timeout_none_disables_it,
    ack_has_no_payload_key_unless_the_hook_gives_one,
    rejected_init_closes_4403,
    failing_or_panicking_init_hook_closes_4500,
    second_init_closes_4429,
    subscribe_before_ack_closes_4401,
    duplicate_live_id_closes_4409,
    invalid_messages_close_4400,
    request_errors_are_one_error_message_and_release_the_id,
    resolver_errors_travel_in_next_and_complete_follows,
    panicking_stream_gets_an_error_and_others_continue,
    query_and_mutation_are_one_next_then_complete,
    stream_end_sends_complete,
    client_complete_drops_the_stream_and_sends_nothing,
    ping_gets_pong_echoing_the_payload_even_before_init,
    subscription_limit_errors_and_slots_come_back,
    oversized_message_closes_1009,
    graceful_shutdown_closes_1001,
);
