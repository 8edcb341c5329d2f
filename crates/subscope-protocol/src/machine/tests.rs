//! The machine driven by scripts in virtual time: no socket, no runtime, no sleep.

use std::time::{Duration, Instant};

use async_graphql::Response;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn machine(protocol: Subprotocol, config: Settings) -> (Machine, Instant) {
    let t0 = Instant::now();
    (Machine::new(protocol, &config, t0), t0)
}

fn drain(m: &mut Machine) -> Vec<String> {
    std::iter::from_fn(|| m.poll_output())
        .map(|o| match o {
            Output::Text(t) => t,
            Output::Ping => "PING".into(),
            Output::Connect { payload } => format!("CONNECT {payload:?}"),
            Output::Start { id, .. } => format!("START {id}"),
            Output::Stop { id, reason } => format!("STOP {id} {reason:?}"),
            Output::Close(r) => format!("CLOSE {} {r:?}", r.code()),
            Output::Renew(payload) => format!("RENEW {payload}"),
        })
        .collect()
}

fn acked(protocol: Subprotocol, config: Settings) -> (Machine, Instant) {
    let (mut m, t0) = machine(protocol, config);
    m.handle_text(t0, r#"{"type":"connection_init"}"#);
    m.handle_connect(t0, ConnectOutcome::Accepted(None));
    drain(&mut m);
    (m, t0)
}

#[test]
fn init_timeout_fires_exactly_at_its_deadline() {
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, Settings::default());
    assert_eq!(m.poll_timeout(), Some(t0 + 3000 * MS));
    m.handle_timeout(t0 + 2999 * MS);
    assert!(drain(&mut m).is_empty());
    m.handle_timeout(t0 + 3000 * MS);
    assert_eq!(drain(&mut m), ["CLOSE 4408 InitTimeout"]);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn init_timer_only_times_the_arrival_of_init() {
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, Settings::default());
    m.handle_text(t0 + MS, r#"{"type":"connection_init","payload":{"a":1}}"#);
    assert_eq!(drain(&mut m), [r#"CONNECT Some(Object {"a": Number(1)})"#]);
    // The hook is slow; the init deadline passes without a close.
    m.handle_timeout(t0 + 10_000 * MS);
    assert!(drain(&mut m).iter().all(|o| o == "PING"));
    m.handle_connect(t0 + 10_001 * MS, ConnectOutcome::Accepted(None));
    assert_eq!(drain(&mut m), [r#"{"type":"connection_ack"}"#]);
}

#[test]
fn messages_behind_init_wait_for_the_hook_and_follow_its_decision() {
    for protocol in Subprotocol::ALL {
        let sub = match protocol {
            Subprotocol::GraphqlWs => r#"{"type":"start","id":"1","payload":{"query":"{a}"}}"#,
            _ => r#"{"type":"subscribe","id":"1","payload":{"query":"{a}"}}"#,
        };
        // Accepted: the operation runs after the ack, never before it.
        let config = Settings::default().keepalive_interval(None);
        let (mut m, t0) = machine(protocol, config);
        m.handle_text(t0, r#"{"type":"connection_init"}"#);
        m.handle_text(t0, sub);
        assert_eq!(drain(&mut m), ["CONNECT None"]);
        m.handle_connect(t0, ConnectOutcome::Accepted(None));
        assert_eq!(drain(&mut m), [r#"{"type":"connection_ack"}"#, "START 1"]);
        // Rejected: the held operation is never heard.
        let (mut m, t0) = machine(protocol, Settings::default());
        m.handle_text(t0, r#"{"type":"connection_init"}"#);
        m.handle_text(t0, sub);
        drain(&mut m);
        m.handle_connect(t0, ConnectOutcome::Rejected("no".into()));
        let out = drain(&mut m);
        assert!(
            out.last().is_some_and(|o| o.starts_with("CLOSE")),
            "{out:?}"
        );
        assert!(!out.iter().any(|o| o.starts_with("START")), "{out:?}");
    }
}

#[test]
fn subscribe_before_init_is_4401_and_second_init_is_4429() {
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, Settings::default());
    m.handle_text(
        t0,
        r#"{"type":"subscribe","id":"1","payload":{"query":"{a}"}}"#,
    );
    assert_eq!(drain(&mut m), ["CLOSE 4401 SubscribeBeforeAck"]);
    // A closed machine ignores everything.
    m.handle_text(t0, r#"{"type":"connection_init"}"#);
    assert!(drain(&mut m).is_empty());

    // A second init, whether sent while the hook runs or after the ack.
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, Settings::default());
    m.handle_text(t0, r#"{"type":"connection_init"}"#);
    m.handle_text(t0, r#"{"type":"connection_init"}"#);
    m.handle_connect(t0, ConnectOutcome::Accepted(None));
    let out = drain(&mut m);
    assert_eq!(
        out.last().map(String::as_str),
        Some("CLOSE 4429 TooManyInitRequests"),
        "{out:?}"
    );
    let (mut m, t0) = acked(Subprotocol::GraphqlTransportWs, Settings::default());
    m.handle_text(t0, r#"{"type":"connection_init"}"#);
    assert_eq!(drain(&mut m), ["CLOSE 4429 TooManyInitRequests"]);
}

#[test]
fn duplicate_id_is_4409_on_modern_and_a_replacement_on_legacy() {
    let sub = r#"{"type":"subscribe","id":"x","payload":{"query":"{a}"}}"#;
    let (mut m, t0) = acked(Subprotocol::GraphqlTransportWs, Settings::default());
    m.handle_text(t0, sub);
    assert_eq!(drain(&mut m), ["START x"]);
    m.handle_text(t0, sub);
    assert_eq!(drain(&mut m), [r#"CLOSE 4409 DuplicateOperationId("x")"#]);

    let start = r#"{"type":"start","id":"x","payload":{"query":"{a}"}}"#;
    let (mut m, t0) = acked(Subprotocol::GraphqlWs, Settings::default());
    m.handle_text(t0, start);
    drain(&mut m);
    m.handle_text(t0, start);
    assert_eq!(
        drain(&mut m),
        [
            "STOP x Replaced",
            r#"{"id":"x","type":"complete"}"#,
            "START x"
        ]
    );
}

#[test]
fn request_error_is_detected_only_on_the_first_response() {
    let (mut m, t0) = acked(Subprotocol::GraphqlTransportWs, Settings::default());
    m.handle_text(
        t0,
        r#"{"type":"subscribe","id":"1","payload":{"query":"{a}"}}"#,
    );
    drain(&mut m);
    let bad = Response::from_errors(vec![ServerError::new("Unknown field", None)]);
    m.handle_operation("1", OperationEvent::Response(&bad));
    assert_eq!(
        drain(&mut m),
        [
            "STOP 1 RequestError",
            r#"{"id":"1","type":"error","payload":[{"message":"Unknown field"}]}"#
        ]
    );
    assert_eq!(m.live_operations(), 0);

    m.handle_text(
        t0,
        r#"{"type":"subscribe","id":"2","payload":{"query":"{a}"}}"#,
    );
    drain(&mut m);
    m.handle_operation(
        "2",
        OperationEvent::Response(&Response::new(async_graphql::Value::from(1))),
    );
    m.handle_operation("2", OperationEvent::Response(&bad));
    let out = drain(&mut m);
    assert!(
        out.iter().all(|o| o.contains(r#""type":"next""#)),
        "{out:?}"
    );
}

#[test]
fn limit_counts_preparing_operations_and_frees_slots() {
    let config = Settings::default().max_subscriptions(1);
    let (mut m, t0) = acked(Subprotocol::GraphqlTransportWs, config);
    m.handle_text(
        t0,
        r#"{"type":"subscribe","id":"1","payload":{"query":"{a}"}}"#,
    );
    m.handle_text(
        t0,
        r#"{"type":"subscribe","id":"2","payload":{"query":"{a}"}}"#,
    );
    assert_eq!(
        drain(&mut m),
        [
            "START 1",
            r#"{"id":"2","type":"error","payload":[{"message":"Subscription limit reached"}]}"#
        ]
    );
    m.handle_operation("1", OperationEvent::Finished);
    m.handle_text(
        t0,
        r#"{"type":"subscribe","id":"2","payload":{"query":"{a}"}}"#,
    );
    assert_eq!(
        drain(&mut m),
        [r#"{"id":"1","type":"complete"}"#, "START 2"]
    );
}

#[test]
fn keepalive_pings_then_times_out_without_a_sign_of_life() {
    let config = Settings::default()
        .init_timeout(None)
        .keepalive_interval(100 * MS)
        .keepalive_timeout(50 * MS);
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, config);
    m.handle_timeout(t0 + 100 * MS);
    assert_eq!(drain(&mut m), ["PING"]);
    assert_eq!(m.poll_timeout(), Some(t0 + 150 * MS));
    // A pong (any frame) clears the deadline.
    m.handle_sign_of_life(t0 + 120 * MS);
    assert_eq!(m.poll_timeout(), Some(t0 + 200 * MS));
    m.handle_timeout(t0 + 200 * MS);
    assert_eq!(drain(&mut m), ["PING"]);
    m.handle_timeout(t0 + 250 * MS);
    assert_eq!(drain(&mut m), ["CLOSE 1006 KeepaliveTimeout"]);
}

#[test]
fn write_timeout_runs_while_blocked_and_resets_when_drained() {
    let config = Settings::default()
        .init_timeout(None)
        .keepalive_interval(None)
        .write_timeout(100 * MS);
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, config);
    m.handle_write_blocked(t0);
    m.handle_write_blocked(t0 + 50 * MS); // does not push the deadline
    assert_eq!(m.poll_timeout(), Some(t0 + 100 * MS));
    m.handle_write_idle();
    assert_eq!(m.poll_timeout(), None);
    m.handle_write_blocked(t0 + 200 * MS);
    m.handle_timeout(t0 + 300 * MS);
    assert_eq!(drain(&mut m), ["CLOSE 1006 WriteTimeout"]);
}

#[test]
fn legacy_sends_ka_after_ack_and_on_every_interval() {
    let config = Settings::default().keepalive_interval(100 * MS);
    let (mut m, t0) = machine(Subprotocol::GraphqlWs, config);
    m.handle_text(t0, r#"{"type":"connection_init"}"#);
    drain(&mut m);
    m.handle_connect(t0, ConnectOutcome::Accepted(None));
    assert_eq!(
        drain(&mut m),
        [r#"{"type":"connection_ack"}"#, r#"{"type":"ka"}"#]
    );
    m.handle_timeout(t0 + 100 * MS);
    let out = drain(&mut m);
    assert!(out.contains(&r#"{"type":"ka"}"#.to_owned()), "{out:?}");
}

#[test]
fn legacy_rejection_and_invalid_input() {
    let (mut m, t0) = machine(Subprotocol::GraphqlWs, Settings::default());
    m.handle_text(t0, "nope");
    let out = drain(&mut m);
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with(r#"{"type":"connection_error","payload":{"message":"#));
    assert!(!m.is_closed());
    m.handle_text(t0, r#"{"type":"connection_init"}"#);
    drain(&mut m);
    m.handle_connect(t0, ConnectOutcome::Rejected("no".into()));
    assert_eq!(
        drain(&mut m),
        [
            r#"{"type":"connection_error","payload":{"message":"no"}}"#,
            "CLOSE 1011 LegacyInitRejected"
        ]
    );
}

#[test]
fn client_complete_stops_silently_on_modern_and_with_complete_on_legacy() {
    let (mut m, t0) = acked(Subprotocol::GraphqlTransportWs, Settings::default());
    m.handle_text(
        t0,
        r#"{"type":"subscribe","id":"1","payload":{"query":"{a}"}}"#,
    );
    drain(&mut m);
    m.handle_text(t0, r#"{"type":"complete","id":"1"}"#);
    assert_eq!(drain(&mut m), ["STOP 1 ClientStopped"]);
    m.handle_text(t0, r#"{"type":"complete","id":"1"}"#);
    assert!(drain(&mut m).is_empty());

    let (mut m, t0) = acked(Subprotocol::GraphqlWs, Settings::default());
    m.handle_text(t0, r#"{"type":"start","id":"1","payload":{"query":"{a}"}}"#);
    drain(&mut m);
    m.handle_text(t0, r#"{"type":"stop","id":"1"}"#);
    assert_eq!(
        drain(&mut m),
        ["STOP 1 ClientStopped", r#"{"id":"1","type":"complete"}"#]
    );
}

#[test]
fn inbound_rate_is_a_token_bucket() {
    let config = Settings::default().inbound_rate(Some(crate::Rate::new(10, 3)));
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, config);
    for _ in 0..3 {
        m.handle_text(t0, r#"{"type":"ping"}"#);
    }
    assert_eq!(drain(&mut m).len(), 3);
    // 100 ms later one token came back.
    m.handle_text(t0 + 100 * MS, r#"{"type":"ping"}"#);
    assert_eq!(drain(&mut m), [r#"{"type":"pong"}"#]);
    m.handle_text(t0 + 100 * MS, r#"{"type":"ping"}"#);
    assert_eq!(drain(&mut m), ["CLOSE 1008 RateLimited"]);
}

#[test]
fn long_ids_and_large_inits_are_invalid_messages() {
    let config = Settings::default().max_id_length(4).max_init_size(64);
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, config);
    let big = format!(
        r#"{{"type":"connection_init","payload":{{"k":"{}"}}}}"#,
        "x".repeat(64)
    );
    m.handle_text(t0, &big);
    assert_eq!(
        drain(&mut m),
        [r#"CLOSE 4400 InvalidMessage(InitTooLarge)"#]
    );

    let (mut m, t0) = acked(Subprotocol::GraphqlTransportWs, config);
    m.handle_text(
        t0,
        r#"{"type":"subscribe","id":"1234","payload":{"query":"{a}"}}"#,
    );
    assert_eq!(drain(&mut m), ["START 1234"]);
    m.handle_text(
        t0,
        r#"{"type":"subscribe","id":"12345","payload":{"query":"{a}"}}"#,
    );
    assert_eq!(drain(&mut m), [r#"CLOSE 4400 InvalidMessage(IdTooLong)"#]);

    let (mut m, t0) = acked(Subprotocol::GraphqlWs, config);
    m.handle_text(
        t0,
        r#"{"type":"start","id":"12345","payload":{"query":"{a}"}}"#,
    );
    let out = drain(&mut m);
    assert!(
        out[0].contains("connection_error") && out[0].contains("id too long"),
        "{out:?}"
    );
    assert!(!m.is_closed());
}

#[test]
fn none_disables_a_timeout_and_zero_means_zero() {
    // keepalive_timeout(None): pings go on, a silent peer is never dropped for it.
    let config = Settings::default()
        .init_timeout(None)
        .keepalive_interval(100 * MS)
        .keepalive_timeout(None);
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, config);
    for i in 1..=100u32 {
        m.handle_timeout(t0 + i * 100 * MS);
        assert_eq!(drain(&mut m), ["PING"], "round {i}");
    }
    assert!(!m.is_closed());
    // init_timeout(ZERO) is a deadline of zero, not "off".
    let (mut m, t0) = machine(
        Subprotocol::GraphqlTransportWs,
        Settings::default().init_timeout(Duration::ZERO),
    );
    assert_eq!(m.poll_timeout(), Some(t0));
    m.handle_timeout(t0);
    assert_eq!(drain(&mut m), ["CLOSE 4408 InitTimeout"]);
}

#[test]
fn input_pauses_behind_on_connect_by_count_and_by_bytes() {
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, Settings::default());
    m.handle_text(t0, r#"{"type":"connection_init"}"#);
    drain(&mut m);
    // Small messages: paused at the count bound.
    for _ in 0..HOLD_LIMIT {
        assert!(!m.is_input_paused());
        m.handle_text(t0, r#"{"type":"ping"}"#);
    }
    assert!(m.is_input_paused());
    m.handle_connect(t0, ConnectOutcome::Accepted(None));
    let out = drain(&mut m);
    assert_eq!(out.len(), 1 + HOLD_LIMIT, "ack and one pong per held ping");
    assert!(!m.is_input_paused());

    // Large messages: paused at the byte bound long before the count bound.
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, Settings::default());
    m.handle_text(t0, r#"{"type":"connection_init"}"#);
    drain(&mut m);
    let big = format!(
        r#"{{"type":"ping","payload":{{"pad":"{}"}}}}"#,
        "x".repeat(20_000)
    );
    let mut held = 0;
    while !m.is_input_paused() {
        m.handle_text(t0, &big);
        held += 1;
    }
    assert_eq!(held, HOLD_BYTES.div_ceil(big.len()));
}

#[test]
fn a_response_above_max_response_size_ends_only_its_operation() {
    for protocol in Subprotocol::ALL {
        let (start, data) = match protocol {
            Subprotocol::GraphqlWs => ("start", "data"),
            _ => ("subscribe", "next"),
        };
        let (mut m, t0) = acked(
            protocol,
            Settings::default()
                .keepalive_interval(None)
                .max_response_size(200),
        );
        for id in ["big", "small"] {
            m.handle_text(
                t0,
                &format!(r#"{{"type":"{start}","id":"{id}","payload":{{"query":"{{a}}"}}}}"#),
            );
        }
        assert_eq!(drain(&mut m), ["START big", "START small"]);
        let mut big = Response::new(async_graphql::Value::String("x".repeat(500)));
        big.errors.clear();
        m.handle_operation("big", OperationEvent::Response(&big));
        let out = drain(&mut m);
        assert_eq!(out[0], "STOP big ResponseTooLarge", "{protocol}");
        assert!(out[1].contains(r#""type":"error""#), "{out:?}");
        assert!(out[1].contains("Response too large"), "{out:?}");
        assert_eq!(out.len(), 2);
        // The other operation and the socket go on.
        m.handle_operation(
            "small",
            OperationEvent::Response(&Response::new(async_graphql::Value::from(1))),
        );
        let out = drain(&mut m);
        assert!(out[0].contains(&format!(r#""type":"{data}""#)), "{out:?}");
        assert!(!m.is_closed());
        assert_eq!(m.live_operations(), 1);
    }
}

#[test]
fn an_authorization_expires_at_its_deadline_and_a_renewal_moves_it() {
    let settings = Settings::default().keepalive_interval(None);
    for protocol in Subprotocol::ALL {
        let (mut m, t0) = acked(protocol, settings);
        m.set_expiry(Some(t0 + 100 * MS));
        assert_eq!(m.poll_timeout(), Some(t0 + 100 * MS));
        m.handle_timeout(t0 + 99 * MS);
        assert!(drain(&mut m).is_empty(), "{protocol}");
        // Renewed before the deadline: the old one passes quietly.
        m.set_expiry(Some(t0 + 300 * MS));
        m.handle_timeout(t0 + 100 * MS);
        assert!(drain(&mut m).is_empty(), "{protocol}");
        m.handle_timeout(t0 + 300 * MS);
        assert_eq!(drain(&mut m), ["CLOSE 4403 TokenExpired"], "{protocol}");
        assert_eq!(CloseReason::TokenExpired.reason(), "Token expired");
    }
}

#[test]
fn a_ping_with_a_payload_asks_for_a_renewal_after_its_pong_and_only_once_acknowledged() {
    let settings = Settings::default().keepalive_interval(None);
    let (mut m, t0) = machine(Subprotocol::GraphqlTransportWs, settings);
    m.handle_text(t0, r#"{"type":"ping","payload":{"token":"t"}}"#);
    // Before the ack: the pong only.
    assert_eq!(
        drain(&mut m),
        [r#"{"type":"pong","payload":{"token":"t"}}"#]
    );
    let (mut m, t0) = acked(Subprotocol::GraphqlTransportWs, settings);
    m.handle_text(t0, r#"{"type":"ping","payload":{"token":"t"}}"#);
    assert_eq!(
        drain(&mut m),
        [
            r#"{"type":"pong","payload":{"token":"t"}}"#,
            r#"RENEW {"token":"t"}"#
        ]
    );
    m.handle_text(t0, r#"{"type":"ping"}"#);
    assert_eq!(drain(&mut m), [r#"{"type":"pong"}"#]);
    m.handle_renewal_refused();
    assert_eq!(drain(&mut m), ["CLOSE 4403 Forbidden"]);
}

#[test]
fn a_revocation_closes_4403_forbidden() {
    for protocol in Subprotocol::ALL {
        let (mut m, _) = acked(protocol, Settings::default().keepalive_interval(None));
        m.handle_revoked();
        assert_eq!(drain(&mut m), ["CLOSE 4403 Revoked"], "{protocol}");
        assert_eq!(CloseReason::Revoked.reason(), "Forbidden");
    }
}
