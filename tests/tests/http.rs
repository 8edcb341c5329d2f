//! The HTTP transports (PROTOCOL.md 4.6) on every runtime: graphql-sse in both modes,
//! Apollo multipart and plain GraphQL over HTTP on the WebSocket's port, every way an
//! HTTP stream can end (each drops its operation and completes it exactly once, with the
//! reason), and every refusal with its status.

use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_graphql::{Context, EmptyMutation, Schema};
use futures_core::Stream;
use futures_lite::stream;
use serde_json::json;
use subscope::{CloseReason, Config, EndReason};
use subscope_tests::http::{
    HttpResponse, TOKEN_HEADER, multipart, open_stream, post_json, post_operation, request,
    reserve, sse,
};
use subscope_tests::server::drop_connection_future_at;
use subscope_tests::{Client, DEADLINE, TestRuntime, TestServer, per_runtime, wait_until};

fn ticks(r: &mut HttpResponse, n: usize) -> Vec<i64> {
    (0..n)
        .map(|_| {
            let e = r.next_event().expect("an event");
            assert_eq!(e.event, "next", "{e:?}");
            e.json()["data"]["ticks"].as_i64().expect("ticks")
        })
        .collect()
}

fn sse_distinct_streams_results_then_complete<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut r = sse(s.addr, "subscription { ticks(everyMs: 10, count: 3) }");
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(ticks(&mut r, 3), [0, 1, 2]);
    let e = r.next_event().expect("complete");
    assert_eq!((e.event.as_str(), e.data.as_str()), ("complete", ""));
    assert!(r.next_event().is_none(), "the stream ends after complete");
    s.assert_completed(1, &EndReason::Completed);
    let closes = s.recorder.wait_closes(1, DEADLINE).closes;
    assert_eq!(closes[0].1, CloseReason::Finished);
    assert_eq!(s.gauges.snapshot().http_streams_total, 1);
}

fn sse_get_with_parameters_and_validation_errors<R: TestRuntime>() {
    let s = R::start(Config::default());
    let target = "/graphql?query=subscription%20(%24n%3A%20Int)%20%7B%20ticks(everyMs%3A%2010%2C%20count%3A%20%24n)%20%7D&variables=%7B%22n%22%3A2%7D";
    let mut r = request(
        s.addr,
        "GET",
        target,
        &[("accept", "text/event-stream")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(ticks(&mut r, 2), [0, 1]);
    assert_eq!(r.next_event().expect("complete").event, "complete");
    // A validation error is a result with only errors, then complete (no 4xx).
    let mut r = sse(s.addr, "subscription { nope }");
    let e = r.next_event().expect("next");
    assert_eq!(e.event, "next");
    assert!(e.json()["errors"][0]["message"].is_string(), "{e:?}");
    assert!(
        e.json().get("data").is_none(),
        "a request error has no data: {e:?}"
    );
    assert_eq!(r.next_event().expect("complete").event, "complete");
    s.wait_idle();
    let completes = s.recorder.events().completes;
    assert_eq!(completes[1].2, EndReason::RequestError);
}

fn multipart_parts_heartbeats_and_the_closing_delimiter<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut r = multipart(s.addr, "subscription { ticks(everyMs: 10, count: 2) }");
    assert_eq!(
        r.header("content-type"),
        Some("multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"")
    );
    for n in 0..2 {
        let part = r.next_part().expect("a part");
        assert_eq!(part, json!({ "payload": { "data": { "ticks": n } } }));
    }
    assert!(r.next_part().is_none(), "closing delimiter");
    s.assert_completed(1, &EndReason::Completed);
}

/// GraphQL over HTTP incremental delivery: `multipart/mixed` without `subscriptionSpec`
/// gets each result as its own part with `hasNext`, a last `{"hasNext":false}` part and
/// the closing delimiter; Apollo's `deferSpec` offer (with JSON beside it) keeps JSON, and
/// a media type we do not serve is 406.
fn incremental_delivery_parts_with_has_next<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mixed = |query: &str| {
        let r = post_json(s.addr, "multipart/mixed", &json!({ "query": query }), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.header("content-type"),
            Some("multipart/mixed; boundary=\"graphql\"")
        );
        r
    };
    let mut r = mixed("subscription { ticks(everyMs: 10, count: 3) }");
    for n in 0..3 {
        let part = r.next_any_part().expect("a part");
        assert_eq!(part, json!({ "data": { "ticks": n }, "hasNext": true }));
    }
    assert_eq!(r.next_any_part(), Some(json!({ "hasNext": false })));
    assert_eq!(r.next_any_part(), None, "closing delimiter");
    s.assert_completed(1, &EndReason::Completed);

    let mut r = mixed("{ hello }");
    let part = r.next_any_part().expect("the result");
    assert_eq!(part["hasNext"], json!(true), "{part}");
    assert!(part["data"]["hello"].is_string(), "{part}");
    assert_eq!(r.next_any_part(), Some(json!({ "hasNext": false })));
    assert_eq!(r.next_any_part(), None);

    let r = post_json(
        s.addr,
        "multipart/mixed;deferSpec=20220824, application/json",
        &json!({ "query": "{ hello }" }),
        &[],
    );
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{r:?}"
    );
    let r = post_json(s.addr, "image/png", &json!({ "query": "{ hello }" }), &[]);
    assert_eq!(r.status, 406, "{r:?}");
}

/// GraphiQL on `GET` of the GraphQL path for a browser, when turned on; a GET carrying a
/// `query` is still a GraphQL request; off by default (a browser then gets 406).
fn graphiql_for_browsers_only_when_on<R: TestRuntime>() {
    let html = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
    let off = R::start(Config::default());
    let r = request(off.addr, "GET", "/graphql", &[("accept", "text/html")], b"");
    assert_eq!(r.status, 406, "{r:?}");

    let s = R::start(Config::default().graphiql(true));
    let r = request(s.addr, "GET", "/graphql", &html, b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    assert!(page.contains("GraphiQL.createFetcher"), "{page}");
    assert!(page.contains("graphqlWs.createClient"), "{page}");
    // A browser's GET with a query is GraphQL over HTTP, answered as JSON.
    let r = request(s.addr, "GET", "/graphql?query=%7Bhello%7D", &html, b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("content-type").is_some_and(|t| t.contains("json")));
    assert!(r.json()["data"]["hello"].is_string());
    // Elsewhere: 404 as always.
    let r = request(s.addr, "GET", "/", &html, b"");
    assert_eq!(r.status, 404, "{r:?}");
}

fn plain_queries_and_mutations_share_the_endpoint<R: TestRuntime>() {
    let s = R::start(Config::default());
    let r = post_json(
        s.addr,
        "application/json",
        &json!({ "query": "{ hello }" }),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.json(), json!({ "data": { "hello": "world" } }));
    let r = request(s.addr, "GET", "/graphql?query=%7Bhello%7D", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["hello"], "world");
    let m = json!({ "query": "mutation { publish(topic: \"x\", message: \"m\") }" });
    let r = post_json(s.addr, "application/graphql-response+json", &m, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/graphql-response+json; charset=utf-8")
    );
    assert_eq!(r.json()["data"]["publish"], 0);
    // A validation error: 200 with application/json, 400 with graphql-response+json.
    let bad = json!({ "query": "{ nope }" });
    let r = post_json(s.addr, "application/json", &bad, &[]);
    assert_eq!(r.status, 200);
    assert!(r.json()["errors"].is_array());
    let r = post_json(s.addr, "application/graphql-response+json", &bad, &[]);
    assert_eq!(r.status, 400);
    // The WebSocket still upgrades on the same port.
    let mut c = Client::modern(s.addr);
    c.init(None);
    wait_until("plain requests completed", DEADLINE, || {
        s.recorder.events().completes.len() == 5
    });
}

/// One parsed-document cache for every transport: a document repeated over plain HTTP, SSE
/// and a WebSocket is parsed once (with different variables each time), a new text is
/// parsed again, and `document_cache(0)` parses every time.
fn one_document_cache_for_every_transport<R: TestRuntime>() {
    let doc = "subscription($n: Int!) { ticks(everyMs: 1, count: $n) }";
    for (capacity, parses) in [(256, 1), (0, 0)] {
        let s = R::start(Config::default().document_cache(capacity));
        for n in 1..=2 {
            let body = json!({ "query": doc, "variables": { "n": n } });
            let mut r = post_json(s.addr, "text/event-stream", &body, &[]);
            assert_eq!(r.status, 200, "{r:?}");
            let events: Vec<_> = std::iter::from_fn(|| r.next_event()).collect();
            assert_eq!(events.len(), n + 1, "{events:?}"); // n results, then complete
        }
        let mut c = Client::modern(s.addr);
        c.init(None);
        c.send(json!({"id": "1", "type": "subscribe",
            "payload": { "query": doc, "variables": { "n": 3 } }}));
        for t in 0..3 {
            assert_eq!(c.recv_json()["payload"]["data"]["ticks"], t);
        }
        assert_eq!(c.recv_json()["type"], "complete");
        let r = post_json(
            s.addr,
            "application/json",
            &json!({ "query": "{ hello }" }),
            &[],
        );
        assert_eq!(r.status, 200);
        let g = s.gauges.snapshot();
        if parses == 1 {
            // The subscription's text parsed once; `{ hello }` once for routing, then a hit.
            assert_eq!(g.document_cache_misses, 2, "{g:?}");
            assert_eq!(g.document_cache_hits, 3, "{g:?}");
        } else {
            assert_eq!(g.document_cache_hits, 0, "{g:?}");
        }
    }
}

fn single_connection_mode_end_to_end<R: TestRuntime>() {
    let s = R::start(Config::default());
    let put = request(s.addr, "PUT", "/graphql", &[], b"");
    assert_eq!(put.status, 201);
    let token = put.text();
    assert_eq!(token.len(), 32, "{token}");
    let header = [(TOKEN_HEADER, token.as_str())];
    let mut stream = open_stream(s.addr, &token);
    assert_eq!(stream.status, 200);
    // A second stream for the reservation: 409.
    let again = request(
        s.addr,
        "POST",
        "/graphql",
        &[("accept", "text/event-stream"), header[0]],
        b"",
    );
    assert_eq!(again.status, 409);
    let op = |id: &str, q: &str| post_operation(s.addr, &token, id, q);
    assert_eq!(
        op("a", "subscription { ticks(everyMs: 10, count: 2) }").status,
        202
    );
    assert_eq!(op("b", "subscription { delayed(ms: 60000) }").status, 202);
    assert_eq!(
        op("b", "subscription { delayed(ms: 60000) }").status,
        409,
        "a live id"
    );
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let e = stream.next_event().expect("event");
        seen.push((
            e.event.clone(),
            e.json()["id"].as_str().unwrap_or_default().to_owned(),
            e.json(),
        ));
    }
    assert_eq!(seen[0].0, "next");
    assert_eq!(
        seen[0].2,
        json!({ "id": "a", "payload": { "data": { "ticks": 0 } } })
    );
    assert_eq!(
        seen[2],
        ("complete".into(), "a".into(), json!({ "id": "a" }))
    );
    s.wait_live(1);
    // DELETE stops one.
    let target = format!("/graphql?operationId=b&token={token}");
    assert_eq!(request(s.addr, "DELETE", &target, &[], b"").status, 200);
    s.recorder.wait("b stopped", DEADLINE, |e| {
        e.completes
            .iter()
            .any(|c| c.1 == "b" && c.2 == EndReason::ClientStopped)
    });
    assert_eq!(s.live.get(), 0);
    // The stream stays open for more operations.
    assert_eq!(op("c", "{ hello }").status, 202);
    let e = stream.next_event().expect("c");
    assert_eq!(
        e.json(),
        json!({ "id": "c", "payload": { "data": { "hello": "world" } } })
    );
    // The client closes the stream: the reservation is gone.
    stream.reset();
    s.recorder.wait_closes(1, DEADLINE);
    assert_eq!(op("d", "{ hello }").status, 404, "the token is forgotten");
    s.wait_idle();
}

fn single_connection_refusals<R: TestRuntime>() {
    let s = R::start(Config::default().max_subscriptions(1));
    assert_eq!(open_stream(s.addr, "0123").status, 404);
    assert_eq!(post_operation(s.addr, "0123", "1", "{ hello }").status, 404);
    assert_eq!(
        request(
            s.addr,
            "DELETE",
            "/graphql?operationId=1&token=0123",
            &[],
            b""
        )
        .status,
        404
    );
    // A distinct stream's registry key is no token.
    let _live = sse(s.addr, "subscription { delayed(ms: 60000) }");
    s.wait_live(1);
    assert_eq!(open_stream(s.addr, "#1").status, 404);
    let token = reserve(s.addr);
    let t = [(TOKEN_HEADER, token.as_str())];
    let r = post_json(
        s.addr,
        "application/json",
        &json!({ "query": "{ hello }" }),
        &t,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["message"], "Operation ID is missing");
    assert_eq!(
        request(
            s.addr,
            "DELETE",
            &format!("/graphql?token={token}"),
            &[],
            b""
        )
        .status,
        400
    );
    let sub = |id: &str| post_operation(s.addr, &token, id, "subscription { delayed(ms: 60000) }");
    assert_eq!(sub("1").status, 202);
    assert_eq!(sub("2").status, 429, "max_subscriptions per reservation");
}

fn reservation_never_opened_expires<R: TestRuntime>() {
    let s = R::start(Config::default().handshake_timeout(Duration::from_millis(300)));
    let token = reserve(s.addr);
    let r = post_operation(s.addr, &token, "1", "subscription { delayed(ms: 60000) }");
    assert_eq!(r.status, 202);
    s.assert_completed(1, &EndReason::ConnectionClosed(CloseReason::InitTimeout));
    let closes = s.recorder.wait_closes(1, DEADLINE).closes;
    assert_eq!(closes[0].1, CloseReason::InitTimeout);
    assert_eq!(open_stream(s.addr, &token).status, 404);
}

fn bad_requests_get_their_status<R: TestRuntime>() {
    let s = R::start(Config::default().max_message_size(1024));
    let es = "text/event-stream";
    let status = |r: HttpResponse| r.status;
    // 413: the body is larger than max_message_size.
    let big = json!({ "query": format!("{{ hello }} #{}", "x".repeat(2000)) });
    assert_eq!(status(post_json(s.addr, es, &big, &[])), 413);
    // 400: malformed bodies and parameters, with GraphQL errors.
    for body in [
        &b"{"[..],
        b"[1]",
        br#"{"query": 1}"#,
        br#"{"variables": {}}"#,
        br#"{"query":"{hello}","variables":[]}"#,
    ] {
        let r = request(
            s.addr,
            "POST",
            "/graphql",
            &[("content-type", "application/json"), ("accept", es)],
            body,
        );
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
        assert!(r.json()["errors"][0]["message"].is_string());
    }
    assert_eq!(
        status(request(
            s.addr,
            "GET",
            "/graphql?query=x&variables=nope",
            &[],
            b""
        )),
        400
    );
    assert_eq!(
        status(request(s.addr, "GET", "/graphql", &[("accept", es)], b"")),
        400
    );
    // 415: not JSON.
    assert_eq!(
        status(request(
            s.addr,
            "POST",
            "/graphql",
            &[("content-type", "text/plain")],
            b"{}"
        )),
        415
    );
    // 405: a method we do not serve, a mutation over GET.
    let r = request(s.addr, "PATCH", "/graphql", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, PUT, DELETE"));
    let r = request(
        s.addr,
        "GET",
        "/graphql?query=mutation%7Bpublish(topic%3A%22t%22%2Cmessage%3A%22m%22)%7D",
        &[],
        b"",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    // 406: nothing we can produce; a subscription asked for as one JSON document.
    assert_eq!(
        status(request(
            s.addr,
            "GET",
            "/graphql?query=%7Bhello%7D",
            &[("accept", "text/html")],
            b""
        )),
        406
    );
    let sub = json!({ "query": "subscription { ticks }" });
    assert_eq!(
        status(post_json(s.addr, "application/json", &sub, &[])),
        406
    );
    s.wait_idle();
    assert!(s.gauges.snapshot().http_refused >= 13);
    assert_eq!(
        s.recorder.events().completes.len(),
        0,
        "no operation started"
    );
}

fn stream_limit_answers_503<R: TestRuntime>() {
    let s = R::start(Config::default().max_http_streams(Some(1)));
    let first = sse(s.addr, "subscription { delayed(ms: 60000) }");
    s.wait_live(1);
    let r = post_json(
        s.addr,
        "text/event-stream",
        &json!({ "query": "subscription { ticks }" }),
        &[],
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        request(s.addr, "PUT", "/graphql", &[], b"").status,
        503,
        "reservations count too"
    );
    // Plain requests are not streams.
    assert_eq!(
        post_json(
            s.addr,
            "application/json",
            &json!({ "query": "{ hello }" }),
            &[]
        )
        .status,
        200
    );
    first.reset();
    s.wait_idle();
    let _second = sse(s.addr, "subscription { delayed(ms: 60000) }");
    s.wait_live(1);
}

fn a_flood_of_reservations_is_bounded<R: TestRuntime>() {
    let s = R::start(Config::default().max_pending_reservations(2));
    let put = || request(s.addr, "PUT", "/graphql", &[], b"");
    let first = put().text();
    let _second = put().text();
    let r = put();
    assert_eq!(r.status, 503, "a third pending reservation");
    assert_eq!(r.header("retry-after"), Some("1"));
    // Opening one frees its pending slot.
    let _stream = open_stream(s.addr, &first);
    assert_eq!(put().status, 201);
    assert_eq!(put().status, 503);
    assert!(s.gauges.snapshot().http_refused >= 2);
}

fn heartbeats_keep_idle_streams_alive<R: TestRuntime>() {
    let s = R::start(Config::default().http_heartbeat(Duration::from_millis(100)));
    let mut r = sse(s.addr, "subscription { delayed(ms: 60000) }");
    for _ in 0..4 {
        r.next_heartbeat();
    }
    let mut m = multipart(s.addr, "subscription { delayed(ms: 60000) }");
    for _ in 0..4 {
        assert_eq!(m.next_any_part(), Some(json!({})), "an empty part");
    }
}

fn client_reset_mid_stream<R: TestRuntime>() {
    for format in [Format::Sse, Format::Multipart] {
        let s = R::start(Config::default());
        let r = open(&s, format, "subscription { ticks(everyMs: 10) }");
        s.wait_live(1);
        r.reset();
        s.assert_completed(1, &EndReason::ConnectionClosed(CloseReason::PeerGone));
        assert_eq!(
            s.recorder.wait_closes(1, DEADLINE).closes[0].1,
            CloseReason::PeerGone
        );
    }
}

fn client_fin_mid_stream<R: TestRuntime>() {
    for format in [Format::Sse, Format::Multipart] {
        let s = R::start(Config::default());
        let r = open(&s, format, "subscription { delayed(ms: 60000) }");
        s.wait_live(1);
        r.socket().shutdown(Shutdown::Write).expect("fin");
        s.assert_completed(1, &EndReason::ConnectionClosed(CloseReason::PeerGone));
        drop(r);
    }
}

fn slow_reader_is_cut_at_the_write_timeout<R: TestRuntime>() {
    for format in [Format::Sse, Format::Multipart] {
        let s = R::start(Config::default().write_timeout(Duration::from_millis(300)));
        let r = open(&s, format, "subscription { payload(bytes: 65536) }");
        s.wait_live(1);
        // Never read again: the socket buffers fill, the server's write stalls.
        s.assert_completed(1, &EndReason::ConnectionClosed(CloseReason::WriteTimeout));
        drop(r);
    }
}

fn stream_end_and_graceful_shutdown<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut a = open(&s, Format::Sse, "subscription { delayed(ms: 60000) }");
    let mut b = open(&s, Format::Multipart, "subscription { delayed(ms: 60000) }");
    let token = reserve(s.addr);
    s.wait_live(2);
    s.shutdown(Duration::from_secs(5));
    // When shutdown returns, every operation and every stream's end hooks are done.
    assert_eq!(s.live.get(), 0, "shutdown returned with a live stream");
    assert_eq!(
        s.gauges.snapshot().http_streams,
        0,
        "shutdown returned with a stream"
    );
    assert_eq!(
        s.recorder.events().closes.len(),
        3,
        "every end hook ran before shutdown returned"
    );
    // Every stream ended cleanly: SSE with the body's end, multipart with the closing
    // delimiter after a transport error.
    assert!(a.next_event().is_none(), "the SSE stream ends");
    let fatal = b.next_part().expect("a transport error");
    assert_eq!(fatal["payload"], json!(null));
    assert_eq!(fatal["errors"][0]["message"], "Server is shutting down");
    assert!(b.next_part().is_none(), "then the closing delimiter");
    s.assert_completed(2, &EndReason::ConnectionClosed(CloseReason::ServerShutdown));
    let closes = s.recorder.wait_closes(3, DEADLINE).closes;
    assert!(
        closes.iter().all(|c| c.1 == CloseReason::ServerShutdown),
        "{closes:?} ({token})"
    );
}

fn dropping_the_connection_future_drops_the_stream<R: TestRuntime>() {
    let (after, server, demo) = drop_connection_future_at::<R, _>(1, |addr| {
        sse(addr, "subscription { delayed(ms: 60000) }")
    });
    assert_eq!(after, 0, "the operation outlived the connection future");
    let e = demo.recorder.events();
    assert_eq!(e.completes.len(), 1);
    assert_eq!(e.completes[0].2, EndReason::Dropped);
    assert_eq!(e.closes.len(), 1);
    assert_eq!(e.closes[0].1, CloseReason::Dropped);
    let g = demo.gauges.snapshot();
    assert_eq!((g.http_streams, g.operations), (0, 0));
    assert_eq!(server.live_tasks(), 0);
}

/// How far the `slow` operations of [`slow_schema`] got: polls begun, polls returned.
#[derive(Debug, Clone, Default)]
struct SlowProbe {
    started: Arc<AtomicUsize>,
    returned: Arc<AtomicUsize>,
}

struct SlowQuery;

#[async_graphql::Object]
impl SlowQuery {
    async fn hello(&self) -> &'static str {
        "world"
    }
}

struct SlowSubscription;

#[async_graphql::Subscription]
impl SlowSubscription {
    /// Blocks its thread `ms` inside its first poll (CPU-heavy user code), yields `ms`,
    /// then never yields again.
    async fn slow(&self, ctx: &Context<'_>, ms: u64) -> impl Stream<Item = u64> + use<> {
        let probe = ctx.data_unchecked::<SlowProbe>().clone();
        let mut polled = false;
        stream::poll_fn(move |_| {
            if polled {
                return Poll::Pending;
            }
            polled = true;
            probe.started.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(ms));
            probe.returned.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Some(ms))
        })
    }

    /// Never yields.
    async fn idle(&self) -> impl Stream<Item = u64> + use<> {
        stream::pending()
    }
}

/// A schema of its own for the slow-poll test: `slow(ms)` and `idle`.
fn slow_schema(probe: SlowProbe) -> Schema<SlowQuery, EmptyMutation, SlowSubscription> {
    Schema::build(SlowQuery, EmptyMutation, SlowSubscription)
        .data(probe)
        .finish()
}

/// No user code is polled under a lock: while an operation of a single-connection stream
/// blocks its thread for a second inside `poll_next`, a `POST` of another operation and a
/// `DELETE` of a third are answered at once, and shutdown's forced phase does not block
/// the thread it runs on (it returns once the slow poll ends, every `on_complete` run
/// exactly once). The runtimes of the suite run two worker threads, so one is free.
fn a_slow_poll_blocks_no_post_delete_or_shutdown<R: TestRuntime>() {
    const SLOW_MS: u64 = 1500;
    const AT_ONCE: Duration = Duration::from_millis(500);
    let probe = SlowProbe::default();
    let s = R::start_schema(Config::default(), slow_schema(probe.clone()));
    let token = reserve(s.addr);
    let mut stream = open_stream(s.addr, &token);
    assert_eq!(stream.status, 200);
    let op = |id: &str, q: &str| post_operation(s.addr, &token, id, q).status;
    assert_eq!(op("idle", "subscription { idle }"), 202);
    let slow = format!("subscription {{ slow(ms: {SLOW_MS}) }}");
    assert_eq!(op("slow", &slow), 202);
    wait_until("the slow poll began", DEADLINE, || {
        probe.started.load(Ordering::SeqCst) == 1
    });
    let began = Instant::now();
    assert_eq!(op("second", "subscription { idle }"), 202);
    let posted = began.elapsed();
    let target = format!("/graphql?operationId=idle&token={token}");
    assert_eq!(request(s.addr, "DELETE", &target, &[], b"").status, 200);
    let deleted = began.elapsed();
    assert_eq!(
        probe.returned.load(Ordering::SeqCst),
        0,
        "answered while the slow poll ran"
    );
    assert!(posted < AT_ONCE, "POST waited {posted:?} for the slow poll");
    assert!(
        deleted < AT_ONCE,
        "DELETE waited {deleted:?} for the slow poll"
    );
    // The slow poll ends: its item arrives, the deleted operation is completed.
    let e = stream.next_event().expect("the slow item");
    assert_eq!(
        e.json(),
        json!({ "id": "slow", "payload": { "data": { "slow": SLOW_MS } } })
    );
    s.recorder.wait("idle stopped", DEADLINE, |e| {
        e.completes.len() == 1 && e.completes[0].1 == "idle"
    });
    // Shutdown's forced phase while another slow poll runs.
    assert_eq!(op("slow2", &slow), 202);
    wait_until("the second slow poll began", DEADLINE, || {
        probe.started.load(Ordering::SeqCst) == 2
    });
    let (fired, returned) = s.shutdown_beside_a_timer(Duration::ZERO, Duration::from_millis(50));
    assert!(fired < AT_ONCE, "shutdown blocked its thread for {fired:?}");
    assert_eq!(
        probe.returned.load(Ordering::SeqCst),
        2,
        "shutdown returned after {returned:?}, before the slow poll ended"
    );
    let e = s.recorder.events();
    let mut completed: Vec<_> = e
        .completes
        .iter()
        .map(|c| (c.1.as_str(), c.2.clone()))
        .collect();
    completed.sort_by_key(|c| c.0);
    let shut = EndReason::ConnectionClosed(CloseReason::ServerShutdown);
    assert_eq!(
        completed,
        [
            ("idle", EndReason::ClientStopped),
            ("second", shut.clone()),
            ("slow", shut.clone()),
            ("slow2", shut),
        ],
        "every operation completed once before shutdown returned"
    );
    assert_eq!(e.closes.len(), 1, "the stream's end hooks ran: {e:?}");
    drop(stream);
}

/// The first request of a connection that opens a stream is served without hyper's
/// connection buffers (`h1_stream`); what follows on the same connection, pipelined or
/// sent after the stream ended, is hyper's, and both answer alike.
fn a_connection_carries_requests_after_its_first_stream<R: TestRuntime>() {
    let s = R::start(Config::default());
    let query = json!({ "query": "subscription { ticks(everyMs: 1, count: 2) }" }).to_string();
    let sse_headers = [
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
    ];
    let first = request(s.addr, "POST", "/graphql", &sse_headers, query.as_bytes());
    assert_eq!(first.status, 200);
    let names = |r: &HttpResponse| {
        let mut names: Vec<String> = r.headers.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        names
    };
    let first_names = names(&first);
    let (body, first) = first.finish();
    let text = String::from_utf8(body).expect("utf-8");
    assert_eq!(text.matches("event: next").count(), 2, "{text}");
    assert!(text.contains("event: complete\n"), "{text}");
    // A second stream and a plain query on the same connection (hyper's now).
    let second = first.then("POST", "/graphql", &sse_headers, query.as_bytes());
    assert_eq!(second.status, 200);
    assert_eq!(
        names(&second),
        first_names,
        "both paths send the same fields"
    );
    let (body, second) = second.finish();
    assert_eq!(String::from_utf8_lossy(&body), text);
    let hello = json!({ "query": "{ hello }" }).to_string();
    let plain = second.then(
        "POST",
        "/graphql",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ],
        hello.as_bytes(),
    );
    assert_eq!(plain.json(), json!({ "data": { "hello": "world" } }));
    // Pipelined: a stream and a query in one write; the query is answered after the stream.
    let mut tcp = std::net::TcpStream::connect(s.addr).expect("connect");
    let mut both = format!(
        "POST /graphql HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\naccept: text/event-stream\r\ncontent-length: {}\r\n\r\n{query}",
        query.len()
    );
    both.push_str(&format!(
        "POST /graphql HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: {}\r\n\r\n{hello}",
        hello.len()
    ));
    std::io::Write::write_all(&mut tcp, both.as_bytes()).expect("write");
    let stream = subscope_tests::http::read_response(tcp);
    assert_eq!(stream.status, 200);
    let (body, stream) = stream.finish();
    assert_eq!(String::from_utf8_lossy(&body), text);
    let plain = stream.next_response();
    assert_eq!(plain.json(), json!({ "data": { "hello": "world" } }));
    wait_until("every operation completed", DEADLINE, || {
        s.recorder.events().completes.len() == 5
    });
}

#[derive(Clone, Copy)]
enum Format {
    Sse,
    Multipart,
}

fn open(s: &TestServer, format: Format, query: &str) -> HttpResponse {
    match format {
        Format::Sse => sse(s.addr, query),
        Format::Multipart => multipart(s.addr, query),
    }
}

per_runtime!(
    sse_distinct_streams_results_then_complete,
    a_connection_carries_requests_after_its_first_stream,
    sse_get_with_parameters_and_validation_errors,
    multipart_parts_heartbeats_and_the_closing_delimiter,
    incremental_delivery_parts_with_has_next,
    graphiql_for_browsers_only_when_on,
    one_document_cache_for_every_transport,
    plain_queries_and_mutations_share_the_endpoint,
    single_connection_mode_end_to_end,
    single_connection_refusals,
    reservation_never_opened_expires,
    bad_requests_get_their_status,
    stream_limit_answers_503,
    heartbeats_keep_idle_streams_alive,
    a_flood_of_reservations_is_bounded,
    client_reset_mid_stream,
    client_fin_mid_stream,
    slow_reader_is_cut_at_the_write_timeout,
    stream_end_and_graceful_shutdown,
    dropping_the_connection_future_drops_the_stream,
    a_slow_poll_blocks_no_post_delete_or_shutdown,
);
