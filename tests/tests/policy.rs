//! One operation policy (PROTOCOL.md 4.2–4.6): the same operation gets the same outcome on
//! every transport — the errors the client is told and the `EndReason` its `on_complete`
//! sees — whether it arrives over graphql-transport-ws, legacy graphql-ws, graphql-sse in
//! either mode, Apollo multipart or plain GraphQL over HTTP. Each transport only frames.

use serde_json::{Value, json};
use subscope::{Config, EndReason};
use subscope_tests::http::{TOKEN_HEADER, open_stream, post_json, reserve};
use subscope_tests::{Client, DEADLINE, TestRuntime, TestServer, per_runtime, wait_until};

/// What the client was told (error messages) and what `on_complete` saw.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    messages: Vec<String>,
    reason: EndReason,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    Modern,
    Legacy,
    SseDistinct,
    SseSingle,
    Multipart,
    Plain,
}

const EVERY: [Via; 6] = [
    Via::Modern,
    Via::Legacy,
    Via::SseDistinct,
    Via::SseSingle,
    Via::Multipart,
    Via::Plain,
];

fn messages(errors: &Value) -> Vec<String> {
    let list = match errors {
        Value::Array(list) => list.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        other => panic!("not errors: {other}"),
    };
    list.iter()
        .map(|e| e["message"].as_str().expect("a message").to_owned())
        .collect()
}

fn body(query: &str, name: Option<&str>) -> Value {
    let mut body = json!({ "query": query });
    if let Some(name) = name {
        body["operationName"] = json!(name);
    }
    body
}

/// Runs `query` (named `name`) once over `via` and returns what the client was told.
fn told(s: &TestServer, via: Via, query: &str, name: Option<&str>) -> Vec<String> {
    match via {
        Via::Modern | Via::Legacy => {
            let (mut c, ty) = if via == Via::Modern {
                (Client::modern(s.addr), "subscribe")
            } else {
                (Client::legacy(s.addr), "start")
            };
            c.init(None);
            c.send(json!({"id": "1", "type": ty, "payload": body(query, name)}));
            let m = c.recv_json_skip_ka();
            assert_eq!(m["type"], "error", "{via:?}: {m}");
            messages(&m["payload"])
        }
        Via::SseDistinct => {
            let mut r = post_json(s.addr, "text/event-stream", &body(query, name), &[]);
            assert_eq!(r.status, 200, "{r:?}");
            let e = r.next_event().expect("a result");
            assert_eq!(e.event, "next", "{e:?}");
            let end = r.next_event().expect("complete");
            assert_eq!(end.event, "complete", "{end:?}");
            messages(&e.json()["errors"])
        }
        Via::SseSingle => {
            let token = reserve(s.addr);
            let mut stream = open_stream(s.addr, &token);
            assert_eq!(stream.status, 200, "{stream:?}");
            let mut op = body(query, name);
            op["extensions"] = json!({ "operationId": "1" });
            let posted = post_json(s.addr, "application/json", &op, &[(TOKEN_HEADER, &token)]);
            assert_eq!(posted.status, 202, "{posted:?}");
            let e = stream.next_event().expect("a result");
            assert_eq!(e.event, "next", "{e:?}");
            let end = stream.next_event().expect("complete");
            assert_eq!(end.event, "complete", "{end:?}");
            messages(&e.json()["payload"]["errors"])
        }
        Via::Multipart => {
            let accept = "multipart/mixed;subscriptionSpec=\"1.0\", application/json";
            let mut r = post_json(s.addr, accept, &body(query, name), &[]);
            assert_eq!(r.status, 200, "{r:?}");
            let part = r.next_part().expect("a part");
            assert!(r.next_part().is_none(), "the response ends: {part}");
            // A result with errors, or a transport error (`payload: null`): either way the
            // errors the operation ended with.
            if part["payload"].is_null() {
                messages(&part["errors"])
            } else {
                messages(&part["payload"]["errors"])
            }
        }
        Via::Plain => {
            let r = post_json(s.addr, "application/json", &body(query, name), &[]);
            assert_eq!(r.status, 200, "{r:?}");
            messages(&r.json()["errors"])
        }
    }
}

/// Runs `query` over each of `vias` on a fresh server, and asserts they all agree with
/// each other and with `expected`.
fn same_everywhere<R: TestRuntime>(
    config: &Config,
    vias: &[Via],
    query: &str,
    name: Option<&str>,
    expected: &Outcome,
) {
    for &via in vias {
        let s = R::start(config.clone());
        let messages = told(&s, via, query, name);
        let e = s
            .recorder
            .wait("on_complete", DEADLINE, |e| !e.completes.is_empty());
        let outcome = Outcome {
            messages,
            reason: e.completes[0].2.clone(),
        };
        assert_eq!(&outcome, expected, "over {via:?}");
        wait_until("no live operation", DEADLINE, || {
            s.gauges.snapshot().operations == 0
        });
        assert_eq!(s.recorder.events().completes.len(), 1, "once, over {via:?}");
    }
}

fn a_request_error_is_the_same_everywhere<R: TestRuntime>() {
    // A syntax error: the same message whatever the operation type would have been.
    let expected = Outcome {
        messages: vec![
            " --> 1:7\n  |\n1 | { nope\n  |       ^---\n  |\n  = expected selection".to_owned(),
        ],
        reason: EndReason::RequestError,
    };
    let s = R::start(Config::default());
    let reference = told(&s, Via::Modern, "{ nope", None);
    drop(s);
    let expected = Outcome {
        messages: reference,
        ..expected
    };
    assert_eq!(expected.messages.len(), 1, "{expected:?}");
    same_everywhere::<R>(&Config::default(), &EVERY, "{ nope", None, &expected);
}

fn a_refusal_is_the_same_everywhere<R: TestRuntime>() {
    let expected = Outcome {
        messages: vec!["refused by on_subscribe".to_owned()],
        reason: EndReason::Refused,
    };
    let q = "query Refused { hello }";
    same_everywhere::<R>(&Config::default(), &EVERY, q, Some("Refused"), &expected);
}

fn an_empty_refusal_is_an_internal_error_everywhere<R: TestRuntime>() {
    // Plain HTTP once answered `{"errors":[]}` here while every other transport said
    // "Internal server error".
    let expected = Outcome {
        messages: vec!["Internal server error".to_owned()],
        reason: EndReason::Refused,
    };
    let q = "query RefusedEmpty { hello }";
    same_everywhere::<R>(
        &Config::default(),
        &EVERY,
        q,
        Some("RefusedEmpty"),
        &expected,
    );
}

fn a_response_too_large_is_the_same_everywhere<R: TestRuntime>() {
    // `{"data":{"hello":"world"}}` is 26 bytes: the limit bounds the result itself on
    // every transport, not a transport's envelope around it.
    let expected = Outcome {
        messages: vec!["Response too large".to_owned()],
        reason: EndReason::ResponseTooLarge,
    };
    let config = Config::default().max_response_size(25);
    same_everywhere::<R>(&config, &EVERY, "{ hello }", None, &expected);
    // ...and at exactly the limit it is delivered (over WebSocket, whose envelope is
    // larger than the result).
    let s = R::start(Config::default().max_response_size(26));
    let mut c = Client::modern(s.addr);
    c.init(None);
    c.subscribe("1", "{ hello }");
    let m = c.recv_json();
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(m["payload"]["data"]["hello"], "world");
}

fn a_panic_is_the_same_on_every_streaming_transport<R: TestRuntime>() {
    // Plain GraphQL over HTTP does not stream subscriptions (406), so it is not here.
    let expected = Outcome {
        messages: vec!["Internal server error".to_owned()],
        reason: EndReason::Panicked,
    };
    let streaming = [
        Via::Modern,
        Via::Legacy,
        Via::SseDistinct,
        Via::SseSingle,
        Via::Multipart,
    ];
    let q = "subscription { panicking }";
    same_everywhere::<R>(&Config::default(), &streaming, q, None, &expected);
}

fn a_panic_in_user_code_is_the_same_everywhere<R: TestRuntime>() {
    // `on_subscribe` panics: plain HTTP too answers it through the policy (once it
    // unwound through the HTTP service instead).
    let expected = Outcome {
        messages: vec!["Internal server error".to_owned()],
        reason: EndReason::Panicked,
    };
    let q = "query Panic { hello }";
    same_everywhere::<R>(&Config::default(), &EVERY, q, Some("Panic"), &expected);
}

per_runtime!(
    a_panic_in_user_code_is_the_same_everywhere,
    a_request_error_is_the_same_everywhere,
    a_refusal_is_the_same_everywhere,
    an_empty_refusal_is_an_internal_error_everywhere,
    a_response_too_large_is_the_same_everywhere,
    a_panic_is_the_same_on_every_streaming_transport,
);
