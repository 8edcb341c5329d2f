//! Resumable subscriptions (`PROTOCOL.md` 4.7) on every runtime and every transport: a
//! subscriber whose connection is reset mid-stream resumes after the last event id it saw
//! and ends up with every event exactly once, in publish order; a resume that history no
//! longer covers (trimmed, another process's id, one never issued, no history at all) says
//! `RESUME_GAP` first, then what is retained, then live events; a malformed `lastEventId` is
//! a request error; and a graceful shutdown with a drain window spreads its closes over the
//! window while readiness turns false at once.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use subscope::{CloseReason, Config, Delivery, EventId, History};
use subscope_tests::http::{
    HttpResponse, open_stream, post_json, post_operation_with, request, reserve, sse,
};
use subscope_tests::load::publish_pipelined;
use subscope_tests::{Client, DEADLINE, Frame, TestRuntime, TestServer, per_runtime, wait_until};

const MULTIPART: &str = "multipart/mixed;subscriptionSpec=\"1.0\", application/json";

/// The operation id every subscriber here uses.
const OP: &str = "s";

/// The five transports a subscription can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// graphql-transport-ws.
    Modern,
    /// The legacy graphql-ws.
    Legacy,
    /// graphql-sse, distinct connections.
    SseDistinct,
    /// graphql-sse, single-connection mode.
    SseSingle,
    /// Apollo multipart subscriptions.
    Multipart,
}

const EVERY_TRANSPORT: [Via; 5] = [
    Via::Modern,
    Via::Legacy,
    Via::SseDistinct,
    Via::SseSingle,
    Via::Multipart,
];

impl Via {
    fn is_websocket(self) -> bool {
        matches!(self, Self::Modern | Self::Legacy)
    }
}

/// How a subscription asks to resume.
#[derive(Debug, Clone)]
enum Ask {
    /// It does not: live events from now on.
    Fresh,
    /// `extensions.lastEventId` in the operation (any JSON value, to send malformed ones).
    Extension(Value),
    /// Distinct SSE: the `Last-Event-ID` header a browser's `EventSource` sends.
    Header(String),
    /// Distinct SSE: the header and a different `extensions.lastEventId` (the header wins).
    HeaderOverExtension(String, Value),
    /// Distinct SSE over `GET`, with the `extensions` query parameter.
    GetExtension(String),
    /// Distinct SSE over `GET` with the `Last-Event-ID` header: what a browser's
    /// `EventSource` does when it reconnects.
    GetHeader(String),
}

/// How a reconnecting client of `via` resumes after `id`: on distinct SSE the header a
/// browser sends by itself, elsewhere `extensions.lastEventId`.
fn resume_after(via: Via, id: &str) -> Ask {
    match via {
        Via::SseDistinct => Ask::Header(id.to_owned()),
        _ => Ask::Extension(Value::from(id)),
    }
}

/// What a subscription's transport delivered next.
#[derive(Debug)]
enum Next {
    /// A result (the GraphQL execution result), and the SSE `id:` field if the event had one.
    Result(Value, Option<String>),
    /// The operation completed (SSE `complete`, multipart's closing delimiter).
    Complete,
    /// A request error (graphql-transport-ws / legacy `error`) or a multipart transport
    /// error: its payload.
    Error(Value),
}

enum Conn {
    Ws(Box<Client>),
    Http(HttpResponse),
}

/// One subscription, operation [`OP`], on one transport, as a client sees it.
struct Sub {
    via: Via,
    conn: Conn,
}

/// `text` percent-encoded for a query string.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Sub {
    /// Subscribes with `query` over `via`, resuming as `ask` says.
    fn open(addr: SocketAddr, via: Via, query: &str, ask: Ask) -> Self {
        let mut extensions = Map::new();
        let mut header = None;
        match &ask {
            Ask::Fresh => {}
            Ask::Extension(v) => {
                extensions.insert("lastEventId".to_owned(), v.clone());
            }
            Ask::Header(h) => header = Some(h.clone()),
            Ask::HeaderOverExtension(h, v) => {
                header = Some(h.clone());
                extensions.insert("lastEventId".to_owned(), v.clone());
            }
            Ask::GetExtension(_) | Ask::GetHeader(_) => {
                assert_eq!(via, Via::SseDistinct, "{ask:?}");
                let mut target = format!("/graphql?query={}", urlencode(query));
                let mut headers = vec![("accept", "text/event-stream")];
                match &ask {
                    Ask::GetExtension(id) => target.push_str(&format!(
                        "&extensions={}",
                        urlencode(&json!({ "lastEventId": id }).to_string())
                    )),
                    Ask::GetHeader(id) => headers.push(("last-event-id", id)),
                    _ => unreachable!("a GET"),
                }
                let r = request(addr, "GET", &target, &headers, b"");
                assert_eq!(r.status, 200, "{r:?}");
                return Self {
                    via,
                    conn: Conn::Http(r),
                };
            }
        }
        assert!(
            header.is_none() || via == Via::SseDistinct,
            "{via:?}: the header is distinct SSE's"
        );
        let mut payload = json!({ "query": query });
        if !extensions.is_empty() {
            payload["extensions"] = Value::Object(extensions.clone());
        }
        let conn = match via {
            Via::Modern | Via::Legacy => {
                let (mut c, kind) = if via == Via::Modern {
                    (Client::modern(addr), "subscribe")
                } else {
                    (Client::legacy(addr), "start")
                };
                c.init(None);
                c.send(json!({ "id": OP, "type": kind, "payload": payload }));
                Conn::Ws(Box::new(c))
            }
            Via::SseDistinct => {
                let headers: Vec<(&str, &str)> = header
                    .as_deref()
                    .map(|h| vec![("last-event-id", h)])
                    .unwrap_or_default();
                let r = post_json(addr, "text/event-stream", &payload, &headers);
                assert_eq!(r.status, 200, "{r:?}");
                Conn::Http(r)
            }
            Via::Multipart => {
                let r = post_json(addr, MULTIPART, &payload, &[]);
                assert_eq!(r.status, 200, "{r:?}");
                Conn::Http(r)
            }
            Via::SseSingle => {
                let token = reserve(addr);
                let stream = open_stream(addr, &token);
                assert_eq!(stream.status, 200, "{stream:?}");
                let r = post_operation_with(addr, &token, OP, query, &extensions);
                assert_eq!(r.status, 202, "{r:?}");
                Conn::Http(stream)
            }
        };
        Self { via, conn }
    }

    /// What the transport delivers next for the operation (legacy `ka` and SSE
    /// heartbeats skipped), within the default deadline.
    fn next(&mut self) -> Next {
        let via = self.via;
        match &mut self.conn {
            Conn::Ws(c) => {
                let m = c.recv_json_skip_ka();
                assert_eq!(m["id"], OP, "{via:?}: {m}");
                match (via, m["type"].as_str()) {
                    (Via::Modern, Some("next")) | (Via::Legacy, Some("data")) => {
                        Next::Result(m["payload"].clone(), None)
                    }
                    (_, Some("complete")) => Next::Complete,
                    (_, Some("error")) => Next::Error(m["payload"].clone()),
                    _ => panic!("{via:?}: unexpected {m}"),
                }
            }
            Conn::Http(r) => match via {
                Via::SseDistinct => {
                    let e = r.next_event().expect("an event before the stream ends");
                    match e.event.as_str() {
                        "next" => Next::Result(e.json(), e.id),
                        "complete" => Next::Complete,
                        _ => panic!("{via:?}: unexpected {e:?}"),
                    }
                }
                Via::SseSingle => {
                    let e = r.next_event().expect("an event before the stream ends");
                    let data = e.json();
                    assert_eq!(data["id"], OP, "{via:?}: {e:?}");
                    match e.event.as_str() {
                        "next" => Next::Result(data["payload"].clone(), e.id),
                        "complete" => Next::Complete,
                        _ => panic!("{via:?}: unexpected {e:?}"),
                    }
                }
                Via::Multipart => match r.next_part() {
                    None => Next::Complete,
                    Some(part) if part["payload"].is_null() => Next::Error(part),
                    Some(part) => Next::Result(part["payload"].clone(), None),
                },
                Via::Modern | Via::Legacy => unreachable!("a WebSocket transport"),
            },
        }
    }

    /// The next item, which must be a result; with its SSE `id:` field, if any.
    fn result(&mut self) -> (Value, Option<String>) {
        match self.next() {
            Next::Result(payload, id) => (payload, id),
            other => panic!("{:?}: expected a result, got {other:?}", self.via),
        }
    }

    /// The next result, which must be one `messages` event carrying its event id (on
    /// distinct SSE also as the event's `id:` field): `(message, eventId)`.
    fn message(&mut self) -> (String, String) {
        let via = self.via;
        let (payload, sse_id) = self.result();
        assert!(payload.get("errors").is_none(), "{via:?}: {payload}");
        let value = payload["data"]["messages"]
            .as_str()
            .unwrap_or_else(|| panic!("{via:?}: expected a message, got {payload}"))
            .to_owned();
        let id = payload["extensions"]["eventId"]
            .as_str()
            .unwrap_or_else(|| panic!("{via:?}: a result without its eventId: {payload}"))
            .to_owned();
        if via == Via::SseDistinct {
            assert_eq!(sse_id.as_deref(), Some(id.as_str()), "the SSE id: field");
        } else {
            assert_eq!(sse_id, None, "{via:?}: only distinct SSE has id: fields");
        }
        (value, id)
    }

    /// The next result, which must be one `messages` event without an event id (a topic
    /// without history).
    fn message_without_id(&mut self) -> String {
        let via = self.via;
        let (payload, sse_id) = self.result();
        assert!(payload.get("errors").is_none(), "{via:?}: {payload}");
        assert!(
            payload.pointer("/extensions/eventId").is_none() && sse_id.is_none(),
            "{via:?}: an event without history has no id: {payload} {sse_id:?}"
        );
        payload["data"]["messages"]
            .as_str()
            .unwrap_or_else(|| panic!("{via:?}: expected a message, got {payload}"))
            .to_owned()
    }

    /// The next result, which must be the `RESUME_GAP` error, without an event id;
    /// returns its `extensions.oldestEventId` (present, possibly `null`).
    fn gap(&mut self) -> Value {
        let via = self.via;
        let (payload, sse_id) = self.result();
        let errors = payload["errors"].as_array().cloned().unwrap_or_default();
        assert_eq!(errors.len(), 1, "{via:?}: expected the gap, got {payload}");
        let extensions = &errors[0]["extensions"];
        assert_eq!(extensions["code"], "RESUME_GAP", "{via:?}: {payload}");
        assert!(
            errors[0]["message"].is_string(),
            "{via:?}: a message: {payload}"
        );
        assert!(
            payload["data"]["messages"].is_null(),
            "{via:?}: no data with the gap: {payload}"
        );
        assert!(
            payload.pointer("/extensions/eventId").is_none() && sse_id.is_none(),
            "{via:?}: the gap has no event id: {payload} {sse_id:?}"
        );
        extensions
            .get("oldestEventId")
            .cloned()
            .unwrap_or_else(|| panic!("{via:?}: oldestEventId is always said: {payload}"))
    }

    /// The next item, which must be a request error (WebSocket `error`, multipart's
    /// transport error): its payload.
    fn request_error(&mut self) -> Value {
        match self.next() {
            Next::Error(payload) => payload,
            other => panic!("{:?}: expected a request error, got {other:?}", self.via),
        }
    }

    /// WebSocket transports: runs `query` again under the same operation id.
    fn again(&mut self, query: &str) {
        match (&mut self.conn, self.via) {
            (Conn::Ws(c), Via::Modern) => c.subscribe(OP, query),
            (Conn::Ws(c), Via::Legacy) => c.start(OP, query),
            _ => panic!("{:?}: not a WebSocket", self.via),
        }
    }

    /// The operation completes next; a distinct stream then ends.
    fn expect_complete(&mut self) {
        match self.next() {
            Next::Complete => {}
            other => panic!("{:?}: expected the end, got {other:?}", self.via),
        }
        if let (Conn::Http(r), Via::SseDistinct) = (&mut self.conn, self.via) {
            assert!(r.next_event().is_none(), "the stream ends after complete");
        }
    }

    /// An SSE stream's first block: the `retry:` field of [`Config::sse_retry`].
    fn expect_retry(&mut self, ms: u64) {
        let Conn::Http(r) = &mut self.conn else {
            panic!("{:?}: not an SSE stream", self.via);
        };
        assert_eq!(
            r.next_block().as_deref(),
            Some(format!("retry: {ms}\n\n").as_str()),
            "{:?}: the preamble",
            self.via
        );
    }

    /// Vanishes abruptly: a TCP reset.
    fn reset(self) {
        match self.conn {
            Conn::Ws(c) => (*c).reset(),
            Conn::Http(r) => r.reset(),
        }
    }
}

fn history(len: usize) -> Delivery {
    Delivery::default().history(History::last(len))
}

fn messages_query(topic: &str) -> String {
    format!("subscription {{ messages(topic: {}) }}", json!(topic))
}

/// `n` numbered messages, in the order they sort.
fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i:04}")).collect()
}

fn publisher(addr: SocketAddr) -> Client {
    let mut c = Client::modern(addr);
    c.init(None);
    c
}

fn wait_subscribers(s: &TestServer, topic: &str, n: usize) {
    wait_until(&format!("{n} subscribers of {topic}"), DEADLINE, || {
        s.broker.subscribers(topic) == n
    });
}

fn event_id(id: &str) -> EventId {
    id.parse()
        .unwrap_or_else(|e| panic!("an event id is <epoch>-<seq>: {e}"))
}

fn resume_after_a_reset_loses_nothing<R: TestRuntime>() {
    const MESSAGES: usize = 400;
    const PHASE: usize = 200;
    const BEFORE_RESET: usize = 50;
    for via in EVERY_TRANSPORT {
        let s = R::start_with(
            Config::default().sse_retry(Duration::from_millis(1000)),
            history(10_000),
        );
        let topic = "resume";
        let query = messages_query(topic);
        let messages = numbered(MESSAGES);
        let mut first = Sub::open(s.addr, via, &query, Ask::Fresh);
        if matches!(via, Via::SseDistinct | Via::SseSingle) {
            first.expect_retry(1000);
        }
        wait_subscribers(&s, topic, 1);
        // The publisher: half the messages, then (once the subscriber has read some of
        // them) the other half, while the subscriber is reset and resumes.
        let (published, phase_one) = mpsc::channel::<()>();
        let (go, gate) = mpsc::channel::<()>();
        let addr = s.addr;
        let to_publish = messages.clone();
        let publisher = std::thread::spawn(move || {
            let mut p = publisher(addr);
            publish_pipelined(&mut p, topic, &to_publish[..PHASE], 64);
            published.send(()).expect("phase one");
            gate.recv_timeout(DEADLINE).expect("go on");
            publish_pipelined(&mut p, topic, &to_publish[PHASE..], 64);
            p
        });
        let mut seen: Vec<(String, String)> = Vec::new();
        while seen.len() < BEFORE_RESET {
            seen.push(first.message());
        }
        phase_one
            .recv_timeout(DEADLINE)
            .expect("phase one published");
        go.send(()).expect("the publisher goes on");
        // Mid-stream: 150 events of phase one are queued or on the wire, more coming.
        let last = seen.last().expect("events").1.clone();
        first.reset();
        let mut second = Sub::open(s.addr, via, &query, resume_after(via, &last));
        if matches!(via, Via::SseDistinct | Via::SseSingle) {
            second.expect_retry(1000);
        }
        let mut p = publisher.join().expect("publisher");
        // A marker after everything: what arrives before it is all the resumed stream has.
        publish_pipelined(&mut p, topic, &["end".to_owned()], 1);
        loop {
            let (value, id) = second.message();
            if value == "end" {
                break;
            }
            seen.push((value, id));
            assert!(
                seen.len() <= MESSAGES,
                "{via:?}: more events than were published"
            );
        }
        let values: Vec<&String> = seen.iter().map(|(v, _)| v).collect();
        let expected: Vec<&String> = messages.iter().collect();
        assert!(
            values == expected,
            "{via:?}: not every message exactly once in order: {} received, first difference \
             at {:?}",
            values.len(),
            values.iter().zip(&expected).position(|(a, b)| a != b)
        );
        let ids: Vec<EventId> = seen.iter().map(|(_, id)| event_id(id)).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{via:?}: event ids strictly increase"
        );
        let g = s.gauges.snapshot();
        assert_eq!(g.resume_gaps, 0, "{via:?}: history reached back");
        assert!(
            g.events_replayed >= (PHASE - BEFORE_RESET) as u64,
            "{via:?}: the unread rest of phase one came from history ({} replayed)",
            g.events_replayed
        );
        // The reset subscription is gone; only the resumed one is left.
        wait_until(
            &format!("{via:?}: only the resumed subscription left"),
            DEADLINE,
            || {
                let g = s.gauges.snapshot();
                s.broker.subscribers(topic) == 1
                    && s.live.get() == 1
                    && g.subscriptions == 1
                    && g.http_streams == u64::from(!via.is_websocket())
                    && g.connections == 1 + u64::from(via.is_websocket())
            },
        );
        second.reset();
        drop(p);
        s.wait_idle();
        assert_eq!(s.broker.subscribers(topic), 0);
    }
}

fn a_resume_past_history_says_the_gap_first<R: TestRuntime>() {
    let s = R::start_with(Config::default(), history(5));
    let mut p = publisher(s.addr);
    for via in EVERY_TRANSPORT {
        let topic = format!("gap-{via:?}");
        let query = messages_query(&topic);
        let mut live = Sub::open(s.addr, Via::Modern, &query, Ask::Fresh);
        wait_subscribers(&s, &topic, 1);
        let messages = numbered(20);
        publish_pipelined(&mut p, &topic, &messages, 64);
        let ids: Vec<String> = messages
            .iter()
            .map(|m| {
                let (value, id) = live.message();
                assert_eq!(&value, m);
                id
            })
            .collect();
        // Resumed after event 3: 4..15 are trimmed; 16..20 are retained.
        let mut resumed = Sub::open(s.addr, via, &query, resume_after(via, &ids[2]));
        assert_eq!(
            resumed.gap(),
            json!(ids[15]),
            "{via:?}: the oldest retained is event 16"
        );
        for i in 15..20 {
            assert_eq!(
                resumed.message(),
                (messages[i].clone(), ids[i].clone()),
                "{via:?}"
            );
        }
        // Then live.
        publish_pipelined(&mut p, &topic, &["live".to_owned()], 1);
        let (value, id) = live.message();
        assert_eq!(value, "live");
        assert_eq!(
            resumed.message(),
            ("live".to_owned(), id.clone()),
            "{via:?}"
        );
        assert!(event_id(&id) > event_id(&ids[19]));
        resumed.reset();
        live.reset();
    }
    let g = s.gauges.snapshot();
    assert_eq!(g.resume_gaps, 5, "one gap said per resume");
    assert_eq!(g.events_replayed, 5 * 5, "the 5 retained, per resume");
    drop(p);
    s.wait_idle();
}

fn malformed_last_event_ids_are_request_errors<R: TestRuntime>() {
    let s = R::start_with(Config::default(), history(10));
    let bad = [json!("garbage"), json!("1-"), json!(42)];
    let says_why = |errors: &Value| {
        let message = errors["message"].as_str().unwrap_or_default();
        assert!(message.contains("lastEventId"), "{errors}");
    };
    let query = messages_query("t");
    for via in EVERY_TRANSPORT {
        let mut asks: Vec<Ask> = bad.iter().cloned().map(Ask::Extension).collect();
        if via == Via::SseDistinct {
            asks.push(Ask::Header("garbage".to_owned()));
            asks.push(Ask::Header("1-".to_owned()));
            asks.push(Ask::GetExtension("1-".to_owned()));
            asks.push(Ask::GetHeader("garbage".to_owned()));
        }
        for ask in asks {
            let mut sub = Sub::open(s.addr, via, &query, ask.clone());
            if via.is_websocket() {
                // `error` for that id (graphql-transport-ws: a list of errors, legacy: one
                // object); no `complete`; the id is free again.
                let errors = sub.request_error();
                match via {
                    Via::Modern => {
                        assert_eq!(errors.as_array().map(Vec::len), Some(1), "{errors}");
                        says_why(&errors[0]);
                    }
                    _ => says_why(&errors),
                }
                sub.again("{ hello }");
                let (payload, _) = sub.result();
                assert_eq!(
                    payload,
                    json!({"data": {"hello": "world"}}),
                    "{via:?} {ask:?}"
                );
            } else {
                // A result with only errors, then the end.
                let (payload, _) = sub.result();
                assert!(
                    payload.get("data").is_none_or(Value::is_null),
                    "{via:?} {ask:?}: a request error has no data: {payload}"
                );
                assert_eq!(
                    payload["errors"].as_array().map(Vec::len),
                    Some(1),
                    "{payload}"
                );
                says_why(&payload["errors"][0]);
            }
            sub.expect_complete();
        }
    }
    // Single-connection mode: the operation id is free again.
    let token = reserve(s.addr);
    let mut stream = open_stream(s.addr, &token);
    let mut ext = Map::new();
    ext.insert("lastEventId".to_owned(), json!("garbage"));
    assert_eq!(
        post_operation_with(s.addr, &token, "r", &query, &ext).status,
        202
    );
    let e = stream.next_event().expect("the error");
    says_why(&e.json()["payload"]["errors"][0]);
    assert_eq!(
        stream.next_event().expect("complete").json(),
        json!({"id": "r"})
    );
    assert_eq!(
        post_operation_with(s.addr, &token, "r", "{ hello }", &Map::new()).status,
        202,
        "the id is free again"
    );
    assert_eq!(
        stream.next_event().expect("hello").json(),
        json!({"id": "r", "payload": {"data": {"hello": "world"}}})
    );
    // Plain GraphQL over HTTP: 400 with application/graphql-response+json.
    let body = json!({"query": "{ hello }", "extensions": {"lastEventId": "garbage"}});
    let r = post_json(s.addr, "application/graphql-response+json", &body, &[]);
    assert_eq!(r.status, 400);
    says_why(&r.json()["errors"][0]);
    stream.reset();
    s.wait_idle();
    let g = s.gauges.snapshot();
    assert_eq!(
        (g.resume_gaps, g.events_replayed, g.subscriptions_total),
        (0, 0, 0),
        "nothing ran"
    );
}

fn a_well_formed_id_without_history_says_the_gap_then_goes_live<R: TestRuntime>() {
    // No history at all: the demo's topics keep nothing.
    let s = R::start(Config::default());
    let mut p = publisher(s.addr);
    for via in EVERY_TRANSPORT {
        let ask = || resume_after(via, "1-1");
        // A resolver without history (`ticks`): the server says the gap itself.
        let mut sub = Sub::open(
            s.addr,
            via,
            "subscription { ticks(everyMs: 10, count: 2) }",
            ask(),
        );
        assert_eq!(sub.gap(), Value::Null, "{via:?}: nothing retained");
        for n in 0..2 {
            let (payload, sse_id) = sub.result();
            assert_eq!(payload, json!({"data": {"ticks": n}}), "{via:?}");
            assert_eq!(sse_id, None);
        }
        sub.expect_complete();
        // One that ends before any result: the gap, then the end.
        let mut sub = Sub::open(
            s.addr,
            via,
            "subscription { ticks(everyMs: 10, count: 0) }",
            ask(),
        );
        assert_eq!(sub.gap(), Value::Null, "{via:?}");
        sub.expect_complete();
        // A topic without history: the gap, then live events (without ids).
        let topic = format!("live-{via:?}");
        let mut sub = Sub::open(s.addr, via, &messages_query(&topic), ask());
        assert_eq!(sub.gap(), Value::Null, "{via:?}");
        wait_subscribers(&s, &topic, 1);
        publish_pipelined(&mut p, &topic, &["a".to_owned(), "b".to_owned()], 1);
        assert_eq!(sub.message_without_id(), "a", "{via:?}");
        assert_eq!(sub.message_without_id(), "b", "{via:?}");
        sub.reset();
    }
    assert_eq!(s.gauges.snapshot().resume_gaps, 3 * 5);
    drop(p);
    s.wait_idle();
}

fn ids_of_another_epoch_or_never_issued_say_the_gap<R: TestRuntime>() {
    let s = R::start_with(Config::default(), history(100));
    let mut p = publisher(s.addr);
    for via in EVERY_TRANSPORT {
        let topic = format!("epoch-{via:?}");
        let query = messages_query(&topic);
        let mut live = Sub::open(s.addr, Via::Modern, &query, Ask::Fresh);
        wait_subscribers(&s, &topic, 1);
        let mut published: Vec<(String, String)> = Vec::new();
        // Publishes `message` and learns its id from the live subscriber.
        let mut publish = |message: String, published: &mut Vec<(String, String)>| {
            publish_pipelined(&mut p, &topic, std::slice::from_ref(&message), 1);
            let got = live.message();
            assert_eq!(got.0, message);
            published.push(got.clone());
            got
        };
        for i in 0..5 {
            publish(format!("e{i}"), &mut published);
        }
        let epoch = event_id(&published[0].1).epoch();
        // Another (older, newer) process's id, and one this process never issued: the gap,
        // naming the oldest retained, then every retained event, then live.
        for (k, after) in [
            "1-1".to_owned(),
            format!("{}-1", epoch + 1),
            format!("{epoch}-999"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut resumed = Sub::open(s.addr, via, &query, resume_after(via, &after));
            assert_eq!(
                resumed.gap(),
                json!(published[0].1),
                "{via:?} after {after}"
            );
            let retained = published.clone();
            for event in &retained {
                assert_eq!(&resumed.message(), event, "{via:?} after {after}");
            }
            let next = publish(format!("live{k}"), &mut published);
            assert_eq!(resumed.message(), next, "{via:?} after {after}");
            resumed.reset();
        }
        // After the newest event: no gap, nothing replayed, live at once.
        let newest = published.last().expect("events").1.clone();
        let mut resumed = Sub::open(s.addr, via, &query, resume_after(via, &newest));
        let next = publish("after-newest".to_owned(), &mut published);
        assert_eq!(resumed.message(), next, "{via:?}: no gap, nothing replayed");
        resumed.reset();
        // Within history: exactly what came after.
        let mut asks = vec![resume_after(via, &published[1].1)];
        if via == Via::SseDistinct {
            // The header wins over `extensions.lastEventId` (which would say a gap).
            asks.push(Ask::HeaderOverExtension(
                published[1].1.clone(),
                json!("1-1"),
            ));
            asks.push(Ask::GetExtension(published[1].1.clone()));
            asks.push(Ask::GetHeader(published[1].1.clone()));
        }
        for ask in asks {
            let mut resumed = Sub::open(s.addr, via, &query, ask.clone());
            let expected = published[2..].to_vec();
            for event in &expected {
                assert_eq!(&resumed.message(), event, "{via:?} {ask:?}");
            }
            let next = publish(format!("after-{}", published.len()), &mut published);
            assert_eq!(resumed.message(), next, "{via:?} {ask:?}");
            resumed.reset();
        }
        live.reset();
    }
    let g = s.gauges.snapshot();
    assert_eq!(g.resume_gaps, 3 * 5, "three gaps per transport, no more");
    drop(p);
    s.wait_idle();
}

fn events_past_the_age_bound_are_a_gap<R: TestRuntime>() {
    const AGE: Duration = Duration::from_secs(1);
    let s = R::start_with(
        Config::default(),
        Delivery::default().history(History::last(100).max_age(AGE)),
    );
    let mut p = publisher(s.addr);
    let topic = "aged";
    let query = messages_query(topic);
    let mut live = Sub::open(s.addr, Via::Modern, &query, Ask::Fresh);
    wait_subscribers(&s, topic, 1);
    publish_pipelined(&mut p, topic, &numbered(3), 64);
    let old: Vec<(String, String)> = (0..3).map(|_| live.message()).collect();
    // Time passes (a lower bound is all this needs): the three are past the age bound.
    std::thread::sleep(AGE + Duration::from_millis(200));
    publish_pipelined(&mut p, topic, &["fresh".to_owned()], 1);
    let fresh = live.message();
    for via in EVERY_TRANSPORT {
        let mut resumed = Sub::open(s.addr, via, &query, resume_after(via, &old[0].1));
        assert_eq!(
            resumed.gap(),
            json!(fresh.1),
            "{via:?}: the oldest retained"
        );
        assert_eq!(resumed.message(), fresh, "{via:?}");
        resumed.reset();
    }
    live.reset();
    drop(p);
    s.wait_idle();
}

fn a_resume_never_joins_a_shared_execution<R: TestRuntime>() {
    let s = R::start_with(Config::default().share_identical(true), history(100));
    let mut p = publisher(s.addr);
    for via in EVERY_TRANSPORT {
        let topic = format!("shared-{via:?}");
        let query = messages_query(&topic);
        // Two identical subscriptions share one execution: one topic subscriber.
        let mut a = Sub::open(s.addr, Via::Modern, &query, Ask::Fresh);
        let mut b = Sub::open(s.addr, via, &query, Ask::Fresh);
        // The upstream subscribes to the topic when it is first polled, a moment after
        // both joined: wait for all of it.
        wait_until("one shared execution for two", DEADLINE, || {
            let g = s.gauges.snapshot();
            g.shared_upstreams == 1
                && g.shared_subscriptions == 2
                && s.broker.subscribers(&topic) == 1
        });
        let messages = numbered(10);
        publish_pipelined(&mut p, &topic, &messages, 64);
        let seen: Vec<(String, String)> = (0..10).map(|_| a.message()).collect();
        for event in &seen {
            // Shared results carry the ids too (distinct SSE: the `id:` line as well).
            assert_eq!(
                &b.message(),
                event,
                "{via:?}: shared results carry the event ids"
            );
        }
        // `b` is reset after the fifth event it saw and resumes: on its own execution.
        b.reset();
        let mut b = Sub::open(s.addr, via, &query, resume_after(via, &seen[4].1));
        for event in &seen[5..] {
            assert_eq!(&b.message(), event, "{via:?}: the replay");
        }
        wait_until("the resumed one runs by itself", DEADLINE, || {
            let g = s.gauges.snapshot();
            s.broker.subscribers(&topic) == 2 && g.shared_subscriptions == 1
        });
        let more = numbered(15)[10..].to_vec();
        publish_pipelined(&mut p, &topic, &more, 64);
        for m in &more {
            let event = a.message();
            assert_eq!(&event.0, m);
            assert_eq!(b.message(), event, "{via:?}: live after the replay");
        }
        a.reset();
        b.reset();
    }
    assert_eq!(s.gauges.snapshot().resume_gaps, 0);
    drop(p);
    s.wait_idle();
}

/// Writes `bytes` on `tcp` and reads one response (its head and a `content-length` body):
/// `(status, body)`, or `None` if the server closed the connection without answering.
fn exchange(tcp: &mut TcpStream, bytes: &[u8]) -> Option<(u16, String)> {
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    if tcp.write_all(bytes).is_err() {
        return None;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok())?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return Some((status, body));
            }
        }
        match tcp.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no answer within {DEADLINE:?}")
            }
            Err(_) => return None,
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").into_bytes()
}

/// One connection or stream's end as its reader saw it.
#[derive(Debug)]
struct Ended {
    at: Instant,
    /// The WebSocket close code (`None`: an SSE stream).
    code: Option<u16>,
}

fn drain_spreads_closes_and_readiness_turns_false_at_once<R: TestRuntime>() {
    const WINDOW: Duration = Duration::from_millis(1500);
    const GRACE: Duration = Duration::from_secs(10);
    const EACH: usize = 6;
    const DELAYED: &str = "subscription { delayed(ms: 60000) }";
    let s = R::start(Config::default().drain(WINDOW));
    // A keep-alive connection already answered, and one whose request is on its way.
    let mut answered = TcpStream::connect(s.addr).expect("connect");
    for (path, body) in [
        ("/readyz", "ready"),
        ("/healthz", "ok"),
        ("/readyz", "ready"),
    ] {
        assert_eq!(
            exchange(&mut answered, &get(path)),
            Some((200, body.to_owned())),
            "{path} before shutdown, on one keep-alive connection"
        );
    }
    let mut in_flight = TcpStream::connect(s.addr).expect("connect");
    in_flight
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .expect("write");
    let mut alive = TcpStream::connect(s.addr).expect("connect");
    alive
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .expect("write");
    let streams: Vec<HttpResponse> = (0..EACH).map(|_| sse(s.addr, DELAYED)).collect();
    let sockets: Vec<Client> = (0..EACH)
        .map(|_| {
            let mut c = Client::modern(s.addr);
            c.init(None);
            c.subscribe("d", DELAYED);
            c
        })
        .collect();
    s.wait_live(2 * EACH);
    let (ended, ends) = mpsc::channel::<Ended>();
    std::thread::scope(|scope| {
        let mut readers = Vec::new();
        for mut r in streams {
            let ended = ended.clone();
            readers.push(scope.spawn(move || {
                let event = r.next_event();
                assert!(event.is_none(), "the stream just ends: {event:?}");
                let _ = ended.send(Ended {
                    at: Instant::now(),
                    code: None,
                });
            }));
        }
        for mut c in sockets {
            let ended = ended.clone();
            readers.push(scope.spawn(move || {
                let (code, at) = loop {
                    match c.next_frame() {
                        Frame::Close(code, _) => break (code, Instant::now()),
                        Frame::Json(_) => continue,
                        Frame::Gone => panic!("the socket ended without a close frame"),
                    }
                };
                let _ = ended.send(Ended {
                    at,
                    code: Some(code),
                });
                // Answer the close (tungstenite does on the next read); the server then
                // closes the socket.
                assert_eq!(c.next_frame(), Frame::Gone);
            }));
        }
        let began = Instant::now();
        let server = &s;
        let shutdown = scope.spawn(move || {
            server.shutdown(GRACE);
            began.elapsed()
        });
        let first = ends.recv_timeout(DEADLINE).expect("a first close");
        // Readiness is false already: the request that was on its way is answered 503.
        assert_eq!(
            exchange(&mut in_flight, b"\r\n").map(|(status, _)| status),
            Some(503),
            "/readyz once shutdown began"
        );
        // Liveness is not readiness: the process still serves.
        assert_eq!(
            exchange(&mut alive, b"\r\n"),
            Some((200, "ok".to_owned())),
            "/healthz while draining"
        );
        // The idle keep-alive connection is closed, or answers 503; never 200.
        let idle = exchange(&mut answered, &get("/readyz"));
        assert!(
            idle.as_ref().is_none_or(|(status, _)| *status == 503),
            "/readyz on a keep-alive connection once shutdown began: {idle:?}"
        );
        // A new connection is refused (or, if the listener was not yet closed, not ready).
        if let Ok(mut fresh) = TcpStream::connect(s.addr) {
            let answer = exchange(&mut fresh, &get("/readyz"));
            assert!(
                answer.as_ref().is_none_or(|(status, _)| *status == 503),
                "/readyz on a new connection once shutdown began: {answer:?}"
            );
        }
        let mut all = vec![first];
        while all.len() < 2 * EACH {
            all.push(
                ends.recv_timeout(DEADLINE)
                    .expect("every connection closes"),
            );
        }
        for reader in readers {
            reader.join().expect("reader");
        }
        let took = shutdown.join().expect("shutdown");
        eprintln!(
            "idle keep-alive connection after shutdown began: {idle:?}; shutdown took {took:?}"
        );
        assert!(
            took < WINDOW + GRACE,
            "shutdown returned before its grace ran out (nothing was forced): {took:?}"
        );
        let codes: Vec<u16> = all.iter().filter_map(|e| e.code).collect();
        assert_eq!(codes, vec![1001; EACH], "WebSockets close 1001");
        let mut times: Vec<Duration> = all.iter().map(|e| e.at - began).collect();
        times.sort();
        let (earliest, latest) = (times[0], times[times.len() - 1]);
        eprintln!("closes at {times:?}");
        assert!(
            latest - earliest >= WINDOW.mul_f64(0.3),
            "closes spread over the window: {times:?}"
        );
        assert!(
            latest >= WINDOW / 2,
            "the last close waits for its point of the window: {times:?}"
        );
    });
    assert_eq!(s.live.get(), 0);
    let g = s.gauges.snapshot();
    assert_eq!((g.connections, g.http_streams, g.operations), (0, 0, 0));
    let closes = s.recorder.wait_closes(2 * EACH, DEADLINE).closes;
    assert_eq!(closes.len(), 2 * EACH, "{closes:?}");
    assert!(
        closes.iter().all(|c| c.1 == CloseReason::ServerShutdown),
        "{closes:?}"
    );
}

per_runtime!(
    resume_after_a_reset_loses_nothing,
    a_resume_past_history_says_the_gap_first,
    malformed_last_event_ids_are_request_errors,
    a_well_formed_id_without_history_says_the_gap_then_goes_live,
    ids_of_another_epoch_or_never_issued_say_the_gap,
    events_past_the_age_bound_are_a_gap,
    a_resume_never_joins_a_shared_execution,
    drain_spreads_closes_and_readiness_turns_false_at_once,
);
