//! TLS and HTTP/2 on the standalone port, on every runtime: WebSocket, SSE and plain
//! requests over TLS (ALPN `h2` and `http/1.1`); many SSE streams on one cleartext HTTP/2
//! connection (prior knowledge); one stream's `RST_STREAM` ending only that stream; every
//! way an HTTP/2 connection ends (the client's GOAWAY and FIN, a TCP reset, a
//! flow-control window that never opens, graceful shutdown's GOAWAY, the connection
//! future dropped) with every operation completed once and the gauges back to zero;
//! WebSocket over extended CONNECT (RFC 8441, both subprotocols); and hostile input (not
//! TLS, silence, PING / SETTINGS / open-and-reset floods) answered without harm.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use h2::Reason;
use http::Method;
use serde_json::{Value, json};
use subscope::{CloseReason, Config, EndReason};
use subscope_tests::h2client::{
    H2Client, H2Stream, PREFACE, RawFrame, RawH2, WsClient, frame, http1_exchange, kind,
    request_headers, server_tls, tls_connect,
};
use subscope_tests::http::{SseEvent, request};
use subscope_tests::server::drop_connection_future_at;
use subscope_tests::{
    DEADLINE, Frame, TestRuntime, TestServer, expect_dropped_without_a_response, per_runtime,
    wait_until,
};

/// Three ticks, then the end.
const TICKS3: &str = "subscription { ticks(everyMs: 20, count: 3) }";
/// A tick every 20 ms, forever.
const TICKING: &str = "subscription { ticks(everyMs: 20) }";
/// Nothing for a minute.
const QUIET: &str = "subscription { delayed(ms: 60000) }";

/// HTTP/2 error codes (RFC 9113 7).
const NO_ERROR: u32 = 0x0;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn tls() -> Config {
    Config::default().tls(server_tls())
}

/// Waits for `n` `on_close` calls and asserts each ran with `reason`.
fn assert_closed(s: &TestServer, n: usize, reason: &CloseReason) {
    let closes = s.recorder.wait_closes(n, DEADLINE).closes;
    assert_eq!(closes.len(), n, "{closes:?}");
    assert!(closes.iter().all(|c| c.1 == *reason), "{closes:?}");
}

/// The value of the next SSE event of a `ticks` subscription.
fn tick(r: &mut H2Stream) -> i64 {
    let e: SseEvent = r.next_event().expect("an event");
    assert_eq!(e.event, "next", "{e:?}");
    e.json()["data"]["ticks"].as_i64().expect("ticks")
}

fn modern_next(id: &str, n: i64) -> Value {
    json!({"id": id, "type": "next", "payload": {"data": {"ticks": n}}})
}

fn legacy_data(id: &str, n: i64) -> Value {
    json!({"id": id, "type": "data", "payload": {"data": {"ticks": n}}})
}

/// The server answers on fresh connections: `/healthz` over HTTP/1.1 and over h2c.
fn assert_healthy(addr: SocketAddr) {
    let r = request(addr, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
    let c = H2Client::connect(addr);
    let r = c.request(Method::GET, "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
}

// 1. TLS.

/// A graphql-transport-ws subscription over TLS (ALPN `http/1.1`, the RFC 6455 upgrade).
fn websocket_over_tls_runs_a_subscription<R: TestRuntime>() {
    let s = R::start(tls());
    let stream = tls_connect(s.addr, &[b"http/1.1"]);
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut ws, chosen) =
        WsClient::handshake(stream, "ws://localhost/graphql", "graphql-transport-ws");
    assert_eq!(chosen.as_deref(), Some("graphql-transport-ws"));
    ws.init();
    ws.send(json!({"id": "t", "type": "subscribe", "payload": {"query": TICKS3}}));
    for n in 0..3 {
        assert_eq!(ws.recv_json(), modern_next("t", n));
    }
    assert_eq!(ws.recv_json(), json!({"id": "t", "type": "complete"}));
    let answer = ws.close(1000);
    assert!(matches!(answer, Frame::Close(1000, _)), "{answer:?}");
    s.assert_completed(1, &EndReason::Completed);
    let closes = s.recorder.wait_closes(1, DEADLINE).closes;
    assert!(
        matches!(closes[0].1, CloseReason::ClientClosed { code: 1000, .. }),
        "{closes:?}"
    );
    let g = s.gauges.snapshot();
    assert_eq!((g.connections_total, g.tls_handshake_failures), (1, 0));
}

/// ALPN `h2`: an SSE subscription and a plain query over HTTP/2 over TLS.
fn sse_and_a_query_over_http2_over_tls<R: TestRuntime>() {
    let s = R::start(tls());
    let c = H2Client::connect_tls(s.addr);
    assert_eq!(c.alpn(), Some(&b"h2"[..]), "ALPN chose HTTP/2");
    let mut r = c.sse(TICKS3);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    for n in 0..3 {
        assert_eq!(tick(&mut r), n);
    }
    let e = r.next_event().expect("complete");
    assert_eq!((e.event.as_str(), e.data.as_str()), ("complete", ""));
    assert!(r.next_event().is_none(), "the stream ends after complete");
    assert!(r.error.is_none(), "END_STREAM, not a reset: {r:?}");
    let q = c.post_json("application/json", &json!({ "query": "{ hello }" }));
    assert_eq!(q.status, 200);
    assert_eq!(
        q.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(q.json(), json!({ "data": { "hello": "world" } }));
    drop(r);
    let end = c.close();
    assert!(end.is_ok(), "the connection closes cleanly: {end:?}");
    s.assert_completed(2, &EndReason::Completed);
    let g = s.gauges.snapshot();
    assert_eq!(
        (
            g.http_streams_total,
            g.connections_total,
            g.tls_handshake_failures
        ),
        (1, 0, 0)
    );
}

/// ALPN `http/1.1` (and no ALPN at all): plain GraphQL over HTTP/1.1 over TLS, two
/// requests on one kept-alive connection.
fn plain_requests_over_http1_over_tls<R: TestRuntime>() {
    let s = R::start(tls());
    let mut t = tls_connect(s.addr, &[b"http/1.1"]);
    assert_eq!(t.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = http1_exchange(
        &mut t,
        "POST",
        "/graphql",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ],
        br#"{"query":"{ hello }"}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({ "data": { "hello": "world" } }));
    let r = http1_exchange(&mut t, "GET", "/healthz", &[], b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    let mut bare = tls_connect(s.addr, &[]);
    assert_eq!(bare.conn.alpn_protocol(), None);
    let r = http1_exchange(&mut bare, "GET", "/graphql?query=%7Bhello%7D", &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["data"]["hello"], "world");
    s.assert_completed(2, &EndReason::Completed);
    assert_eq!(s.gauges.snapshot().tls_handshake_failures, 0);
}

/// An SSE stream over HTTP/1.1 over TLS (served without hyper's connection state, see
/// `h1_stream`): its events arrive, and a client that stops reading is cut at the write
/// timeout, though TLS buffers what is written until it is flushed.
fn sse_over_http1_over_tls_and_a_reader_that_stops<R: TestRuntime>() {
    let s = R::start(tls().write_timeout(Duration::from_millis(300)));
    let open = |t: &mut subscope_tests::h2client::TlsStream, query: &str| {
        let body = json!({ "query": query }).to_string();
        let head = format!(
            "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        t.write_all(head.as_bytes()).expect("write");
        t.flush().expect("flush");
    };
    let mut t = tls_connect(s.addr, &[b"http/1.1"]);
    open(&mut t, "subscription { ticks(everyMs: 1, count: 3) }");
    // Read until the terminating chunk.
    let mut got = Vec::new();
    let end = Instant::now() + DEADLINE;
    while !got.ends_with(b"0\r\n\r\n") {
        assert!(
            Instant::now() < end,
            "no end of stream: {:?}",
            String::from_utf8_lossy(&got)
        );
        let mut buf = [0u8; 4096];
        let n = t.read(&mut buf).expect("read");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(text.matches("event: next").count(), 3, "{text}");
    s.assert_completed(1, &EndReason::Completed);
    // Never read: the server's TLS writes stall and the write timeout ends the stream.
    let s = R::start(tls().write_timeout(Duration::from_millis(300)));
    let mut slow = tls_connect(s.addr, &[b"http/1.1"]);
    open(&mut slow, "subscription { payload(bytes: 65536) }");
    s.assert_completed(1, &EndReason::ConnectionClosed(CloseReason::WriteTimeout));
    drop(slow);
}

// 2. Many streams on one cleartext connection.

/// Ten SSE subscriptions on one h2c connection (more than a browser's six HTTP/1.1
/// connections per host): all live, all counted, all receive every publish; the client's
/// FIN ends every one of them.
fn ten_sse_streams_share_one_h2c_connection<R: TestRuntime>() {
    const N: usize = 10;
    let s = R::start(Config::default());
    let c = H2Client::connect(s.addr);
    let mut streams: Vec<H2Stream> = (0..N)
        .map(|_| c.sse("subscription { messages(topic: \"h2\") }"))
        .collect();
    s.wait_live(N);
    let g = s.gauges.snapshot();
    assert_eq!(
        (g.http_streams, g.operations, g.subscriptions, g.connections),
        (10, 10, 10, 0)
    );
    let ids: std::collections::HashSet<u32> = streams.iter().map(H2Stream::id).collect();
    assert_eq!(ids.len(), N, "ten streams");
    let peers: Vec<_> = s
        .recorder
        .events()
        .connects
        .iter()
        .map(|c| c.peer)
        .collect();
    assert_eq!(
        peers,
        vec![Some(c.local_addr()); N],
        "one TCP connection carries them all"
    );
    for message in ["m1", "m2"] {
        let m = json!({
            "query": format!("mutation {{ publish(topic: \"h2\", message: \"{message}\") }}")
        });
        let r = c.post_json("application/json", &m);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["data"]["publish"], json!(N), "every subscriber");
        for r in &mut streams {
            let e = r.next_event().expect("an event");
            assert_eq!(e.event, "next", "{e:?}");
            assert_eq!(e.json(), json!({ "data": { "messages": message } }));
        }
    }
    s.recorder.wait("the mutations completed", DEADLINE, |e| {
        e.completes.len() == 2
    });
    s.recorder.clear();
    // FIN under HTTP/2: no GOAWAY, no RST_STREAM (the streams are still held).
    let _ = c.fin();
    s.assert_completed(N, &EndReason::ConnectionClosed(CloseReason::PeerGone));
    assert_closed(&s, N, &CloseReason::PeerGone);
    drop(streams);
}

// 3. RST_STREAM.

/// Three SSE streams on one connection; `RST_STREAM(CANCEL)` on the middle one ends that
/// one only (its operation completed once), while the other two keep receiving.
fn a_reset_stream_ends_alone<R: TestRuntime>() {
    let s = R::start(Config::default());
    let c = H2Client::connect(s.addr);
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut r = c.sse(TICKING);
        assert_eq!(tick(&mut r), 0);
        streams.push(r);
    }
    s.wait_live(3);
    let connects = s.recorder.events().connects;
    assert_eq!(connects.len(), 3);
    let victim = connects[1].id;
    streams[1].reset(Reason::CANCEL);
    s.wait_live(2);
    s.recorder
        .wait("the reset stream's end hooks", DEADLINE, |e| {
            !e.closes.is_empty()
        });
    // The other two go on with new events, in order.
    for i in [0, 2] {
        let mut last = tick(&mut streams[i]);
        for _ in 0..3 {
            let next = tick(&mut streams[i]);
            assert_eq!(next, last + 1, "stream {i}");
            last = next;
        }
    }
    let e = s.recorder.events();
    assert_eq!(
        e.completes.len(),
        1,
        "only the reset stream's operation: {e:?}"
    );
    assert_eq!(e.completes[0].0, victim, "{e:?}");
    assert_eq!(e.closes.len(), 1, "{e:?}");
    assert_eq!(e.closes[0].0, victim, "{e:?}");
    assert_eq!(s.live.get(), 2);
    let g = s.gauges.snapshot();
    assert_eq!((g.http_streams, g.operations), (2, 2));
    // As for an HTTP/1.1 client that resets its stream's connection (PROTOCOL.md 4.6).
    assert_eq!(
        e.completes[0].2,
        EndReason::ConnectionClosed(CloseReason::PeerGone),
        "the reset stream's end reason"
    );
    assert_eq!(e.closes[0].1, CloseReason::PeerGone);
    let _ = c.fin();
    s.wait_idle();
    drop(streams);
}

// 4. How an HTTP/2 connection ends.

/// Sends a PING and reads until its ACK: the server has handled every frame sent before.
fn sync(c: &mut RawH2) -> Vec<RawFrame> {
    c.write_frame(kind::PING, 0, 0, b"syncsync");
    let mut seen = Vec::new();
    loop {
        let f = c
            .next_frame()
            .expect("the connection ended before the PING's ACK");
        let done = f.kind == kind::PING && f.is_ack() && f.payload == b"syncsync";
        seen.push(f);
        if done {
            return seen;
        }
    }
}

/// The client's GOAWAY refuses only streams the server would push (RFC 9113 6.8): both
/// streams keep going after it; the FIN that follows ends both.
fn client_goaway_then_fin_ends_every_stream<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = RawH2::connect(s.addr);
    let a = c.sse(TICKING);
    let b = c.sse(TICKING);
    c.wait_data(&[a, b]);
    s.wait_live(2);
    c.goaway(NO_ERROR);
    let seen = sync(&mut c);
    assert!(
        !seen
            .iter()
            .any(|f| f.kind == kind::GOAWAY || f.kind == kind::RST_STREAM),
        "{seen:?}"
    );
    c.wait_data(&[a, b]);
    assert_eq!(s.live.get(), 2, "the client's GOAWAY ended nothing");
    c.fin();
    s.assert_completed(2, &EndReason::ConnectionClosed(CloseReason::PeerGone));
    assert_closed(&s, 2, &CloseReason::PeerGone);
    c.read_to_end();
}

/// A TCP reset under three streams ends all three.
fn tcp_reset_ends_every_stream<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = RawH2::connect(s.addr);
    let ids: Vec<u32> = (0..3).map(|_| c.sse(QUIET)).collect();
    s.wait_live(3);
    // Their response heads are out: the streams are open on both sides.
    let mut heads = Vec::new();
    while heads.len() < 3 {
        let f = c.next_frame().expect("a frame");
        if f.kind == kind::HEADERS {
            heads.push(f.stream);
        }
    }
    heads.sort_unstable();
    assert_eq!(heads, ids);
    c.reset();
    s.assert_completed(3, &EndReason::ConnectionClosed(CloseReason::PeerGone));
    assert_closed(&s, 3, &CloseReason::PeerGone);
}

/// A client that never opens a stream's flow-control window (a 1 KiB window, the data
/// never read) while the stream has a 64 KiB event to send: the whole connection is cut
/// at the write timeout, counted once, and every stream on it ends with `WriteTimeout`.
fn a_window_that_never_opens_cuts_the_connection<R: TestRuntime>() {
    let write_timeout = Duration::from_millis(300);
    let s = R::start(Config::default().write_timeout(write_timeout));
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(1024);
    let mut c = H2Client::connect_with(s.addr, &builder);
    let quiet = c.sse(QUIET);
    let sent = Instant::now();
    let stuck = c.sse("subscription { payload(bytes: 65536) }");
    s.wait_live(2);
    wait_until("the stalled connection is cut", DEADLINE, || {
        s.gauges.snapshot().http2_connections_stalled == 1
    });
    let cut = sent.elapsed();
    // Not before the write timeout; how long after is the machine's business (the wait
    // above has the deadline).
    assert!(cut >= write_timeout, "cut after {cut:?}");
    s.assert_completed(2, &EndReason::ConnectionClosed(CloseReason::WriteTimeout));
    assert_closed(&s, 2, &CloseReason::WriteTimeout);
    // Cut, not ended: the streams end without END_STREAM (h2 reports the connection's
    // EOF itself as a clean end).
    let _ = c.wait_closed();
    for mut r in [quiet, stuck] {
        while r.next_event().is_some() {}
        assert!(r.error.is_some(), "the stream ended with END_STREAM: {r:?}");
    }
    assert_eq!(s.gauges.snapshot().http2_connections_stalled, 1);
}

/// Graceful shutdown: GOAWAY(NO_ERROR), every stream ended with END_STREAM (not reset),
/// then the connection closed, all before the grace period.
fn graceful_shutdown_sends_goaway_and_ends_the_streams<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = RawH2::connect(s.addr);
    let a = c.sse(QUIET);
    let b = c.sse(TICKING);
    c.wait_data(&[b]);
    s.wait_live(2);
    // Reads (and answers the server's PING) until the server closes.
    let reader = std::thread::spawn(move || c.read_to_end());
    let grace = Duration::from_secs(5);
    let started = Instant::now();
    s.shutdown(grace);
    let took = started.elapsed();
    assert_eq!(s.live.get(), 0, "shutdown returned with a live stream");
    let frames = reader.join().expect("the reader");
    // hyper's two-step GOAWAY: "no new streams" (the largest id), a PING, then the last
    // stream it processed.
    let goaways: Vec<(u32, u32)> = frames.iter().filter_map(RawFrame::goaway).collect();
    assert_eq!(
        goaways,
        [(0x7fff_ffff, NO_ERROR), (b, NO_ERROR)],
        "{frames:?}"
    );
    for id in [a, b] {
        assert!(
            frames.iter().any(|f| f.stream == id && f.ends_stream()),
            "stream {id} ended with END_STREAM: {frames:?}"
        );
        assert!(
            !frames
                .iter()
                .any(|f| f.stream == id && f.kind == kind::RST_STREAM),
            "stream {id} was reset: {frames:?}"
        );
    }
    assert!(
        took < grace,
        "shutdown waited out the grace period: {took:?}"
    );
    s.assert_completed(2, &EndReason::ConnectionClosed(CloseReason::ServerShutdown));
    assert_closed(&s, 2, &CloseReason::ServerShutdown);
}

/// The HTTP/2 connection future dropped from outside, with three streams (each a task
/// of hyper's inside that future): every operation is gone on the very next line.
fn dropping_the_h2_connection_future_drops_every_stream<R: TestRuntime>() {
    let (after, server, demo) = drop_connection_future_at::<R, _>(3, |addr| {
        let c = H2Client::connect(addr);
        // Not waiting for the response heads: the future may be dropped before the last
        // one is out.
        let streams: Vec<_> = (0..3).map(|_| c.start_sse(QUIET)).collect();
        (c, streams)
    });
    assert_eq!(after, 0, "the streams outlived the connection future");
    let e = demo.recorder.events();
    assert_eq!(e.completes.len(), 3, "{e:?}");
    assert!(
        e.completes.iter().all(|c| c.2 == EndReason::Dropped),
        "{e:?}"
    );
    assert_eq!(e.closes.len(), 3, "{e:?}");
    assert!(
        e.closes.iter().all(|c| c.1 == CloseReason::Dropped),
        "{e:?}"
    );
    let g = demo.gauges.snapshot();
    assert_eq!((g.http_streams, g.operations), (0, 0));
    assert_eq!(server.live_tasks(), 0);
}

// 5. RFC 8441.

/// Both subprotocols over extended CONNECT, two WebSockets on one HTTP/2 connection: 200
/// with the subprotocol echoed, then a subscription to its end on each, then a close
/// handshake.
fn websockets_over_extended_connect<R: TestRuntime>() {
    let s = R::start(Config::default());
    let c = H2Client::connect(s.addr);
    c.wait_extended_connect();
    let modern = c.connect_websocket("graphql-transport-ws");
    assert_eq!(modern.status, 200, "{modern:?}");
    assert_eq!(
        modern.header("sec-websocket-protocol"),
        Some("graphql-transport-ws")
    );
    let legacy = c.connect_websocket("graphql-ws");
    assert_eq!(legacy.status, 200, "{legacy:?}");
    assert_eq!(legacy.header("sec-websocket-protocol"), Some("graphql-ws"));
    let mut m = WsClient::over(modern.into_io());
    let mut l = WsClient::over(legacy.into_io());
    m.init();
    l.init();
    wait_until("two WebSocket connections", DEADLINE, || {
        s.gauges.snapshot().connections == 2
    });
    m.send(json!({"id": "m", "type": "subscribe", "payload": {"query": TICKS3}}));
    l.send(json!({"id": "l", "type": "start", "payload": {"query": TICKS3}}));
    for n in 0..3 {
        assert_eq!(m.recv_json(), modern_next("m", n));
        assert_eq!(l.recv_json(), legacy_data("l", n));
    }
    assert_eq!(m.recv_json(), json!({"id": "m", "type": "complete"}));
    assert_eq!(l.recv_json(), json!({"id": "l", "type": "complete"}));
    for ws in [&mut m, &mut l] {
        let answer = ws.close(1000);
        assert!(matches!(answer, Frame::Close(1000, _)), "{answer:?}");
    }
    s.assert_completed(2, &EndReason::Completed);
    let closes = s.recorder.wait_closes(2, DEADLINE).closes;
    assert!(
        closes
            .iter()
            .all(|c| matches!(c.1, CloseReason::ClientClosed { code: 1000, .. })),
        "{closes:?}"
    );
    let g = s.gauges.snapshot();
    assert_eq!((g.connections_total, g.http_streams_total), (2, 0));
    drop((m, l));
    let end = c.close();
    assert!(end.is_ok(), "{end:?}");
}

/// `RST_STREAM(CANCEL)` on the CONNECT stream ends that WebSocket (its operation
/// completed once) while an SSE stream on the same connection goes on.
fn resetting_a_connect_stream_ends_its_websocket_alone<R: TestRuntime>() {
    let s = R::start(Config::default());
    let c = H2Client::connect(s.addr);
    c.wait_extended_connect();
    let ws = c.connect_websocket("graphql-transport-ws");
    assert_eq!(ws.status, 200, "{ws:?}");
    let mut ws = WsClient::over(ws.into_io());
    ws.init();
    ws.send(json!({"id": "w", "type": "subscribe", "payload": {"query": TICKING}}));
    assert_eq!(ws.recv_json(), modern_next("w", 0));
    let mut sse = c.sse(TICKING);
    assert_eq!(tick(&mut sse), 0);
    s.wait_live(2);
    let g = s.gauges.snapshot();
    assert_eq!((g.connections, g.http_streams), (1, 1));
    ws.get_mut().reset(Reason::CANCEL);
    s.wait_live(1);
    s.recorder.wait("the WebSocket's end hooks", DEADLINE, |e| {
        !e.closes.is_empty()
    });
    let mut last = tick(&mut sse);
    for _ in 0..3 {
        let next = tick(&mut sse);
        assert_eq!(next, last + 1);
        last = next;
    }
    let e = s.recorder.events();
    assert_eq!(
        e.completes.len(),
        1,
        "only the WebSocket's operation: {e:?}"
    );
    assert_eq!(e.completes[0].1, "w");
    assert_eq!(
        e.completes[0].2,
        EndReason::ConnectionClosed(CloseReason::PeerGone)
    );
    assert_eq!(e.closes.len(), 1, "{e:?}");
    assert_eq!(e.closes[0].1, CloseReason::PeerGone);
    wait_until("the WebSocket gone", DEADLINE, || {
        s.gauges.snapshot().connections == 0
    });
    assert_eq!(s.gauges.snapshot().http_streams, 1);
    drop(ws);
    let _ = c.fin();
    s.wait_idle();
    drop(sse);
}

// 6. Hostile input.

/// Reads everything the server sends until it closes (EOF or reset); fails if it does not
/// within the deadline.
fn read_until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server did not close within {DEADLINE:?}; sent {got:?}")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return got,
        }
    }
}

/// Plain HTTP/1.1 and the h2c preface on the TLS port: each handshake fails, is counted,
/// and the client is told so and dropped; TLS clients are still served.
fn not_tls_on_the_tls_port<R: TestRuntime>() {
    let s = R::start(tls());
    let garbage: [&[u8]; 2] = [b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n", PREFACE];
    for (i, bytes) in garbage.into_iter().enumerate() {
        let mut tcp = TcpStream::connect(s.addr).expect("connect");
        tcp.write_all(bytes).expect("write");
        let answer = read_until_closed(&mut tcp);
        // One TLS record (0x15: alert, TLS 1.2 record version, 2 bytes): fatal (2),
        // decode_error (50).
        assert_eq!(
            answer,
            [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50],
            "garbage {i}: {answer:02x?}"
        );
        wait_until("the failed handshake counted", DEADLINE, || {
            s.gauges.snapshot().tls_handshake_failures == i as u64 + 1
        });
    }
    let mut t = tls_connect(s.addr, &[b"http/1.1"]);
    let r = http1_exchange(&mut t, "GET", "/healthz", &[], b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(s.gauges.snapshot().tls_handshake_failures, 2);
}

/// A client that connects to the TLS port and sends nothing is dropped at the handshake
/// timeout, with nothing sent; a timeout is not a failed handshake.
fn a_silent_client_is_dropped_at_the_handshake_timeout<R: TestRuntime>() {
    let timeout = Duration::from_millis(300);
    let s = R::start(tls().handshake_timeout(timeout));
    let mut tcp = TcpStream::connect(s.addr).expect("connect");
    let took = expect_dropped_without_a_response(&mut tcp);
    assert!(
        took >= timeout - Duration::from_millis(50),
        "after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "only after {took:?}");
    assert_eq!(s.gauges.snapshot().tls_handshake_failures, 0);
}

/// What a flood got back.
#[derive(Debug)]
struct Flood {
    /// Every frame read (the probe's answer included, if any).
    frames: Vec<RawFrame>,
    /// Whether the server closed the connection.
    closed: bool,
    /// Whether the writer got everything out.
    wrote_all: bool,
    /// How long until the probe's answer or the close.
    took: Duration,
}

impl Flood {
    fn goaway(&self) -> Option<(u32, u32)> {
        self.frames.iter().find_map(RawFrame::goaway)
    }

    fn acks(&self, of: u8) -> usize {
        self.frames
            .iter()
            .filter(|f| f.kind == of && f.is_ack())
            .count()
    }

    /// The probe's body, if it was answered.
    fn probe_body(&self, probe: u32) -> Option<String> {
        self.frames
            .iter()
            .any(|f| f.stream == probe && f.ends_stream())
            .then(|| {
                let body: Vec<u8> = self
                    .frames
                    .iter()
                    .filter(|f| f.stream == probe && f.kind == kind::DATA)
                    .flat_map(|f| f.payload.clone())
                    .collect();
                String::from_utf8_lossy(&body).into_owned()
            })
    }

    fn summary(&self, probe: u32) -> String {
        format!(
            "closed {}, wrote all {}, GOAWAY {:?}, {} PING ACKs, {} SETTINGS ACKs, {} RST_STREAMs, probe {:?}, {} frames, {:?}",
            self.closed,
            self.wrote_all,
            self.goaway(),
            self.acks(kind::PING),
            self.acks(kind::SETTINGS),
            self.frames
                .iter()
                .filter(|f| f.kind == kind::RST_STREAM)
                .count(),
            self.probe_body(probe),
            self.frames.len(),
            self.took,
        )
    }
}

/// Writes `flood` then a `/healthz` request on stream `probe`, from a thread, on a fresh
/// h2c connection, while reading what comes back until the probe is answered or the
/// server closes.
fn flood(addr: SocketAddr, mut flood: Vec<u8>, probe: u32) -> Flood {
    let mut c = RawH2::connect_bare(addr);
    c.set_answer(false);
    let mut tcp = c.try_clone_tcp();
    tcp.set_write_timeout(Some(DEADLINE)).expect("timeout");
    flood.extend(request_headers(probe, "GET", "/healthz", &[], true));
    let started = Instant::now();
    let writer = std::thread::spawn(move || tcp.write_all(&flood).is_ok());
    let mut frames = Vec::new();
    let closed = loop {
        let left = (started + DEADLINE).saturating_duration_since(Instant::now());
        match c.next_frame_within(left) {
            None => break true,
            Some(f) => {
                let done = f.stream == probe && f.ends_stream();
                frames.push(f);
                if done {
                    break false;
                }
            }
        }
    };
    let took = started.elapsed();
    let wrote_all = writer.join().expect("the writer");
    Flood {
        frames,
        closed,
        wrote_all,
        took,
    }
}

const FLOOD: usize = 10_000;

/// 10,000 PINGs in a burst on one h2c connection.
fn a_ping_flood<R: TestRuntime>() {
    let s = R::start(Config::default());
    let ping = frame(kind::PING, 0, 0, b"floodfld");
    let out = flood(s.addr, ping.repeat(FLOOD), 1);
    // Every PING answered, the connection kept, the request after them served on it.
    let summary = out.summary(1);
    assert_eq!(out.acks(kind::PING), FLOOD, "{summary}");
    assert_eq!(out.goaway(), None, "{summary}");
    assert!(!out.closed && out.wrote_all, "{summary}");
    assert_eq!(out.probe_body(1).as_deref(), Some("ok"), "{summary}");
    assert_healthy(s.addr);
    s.wait_idle();
}

/// 10,000 empty SETTINGS in a burst on one h2c connection.
fn a_settings_flood<R: TestRuntime>() {
    let s = R::start(Config::default());
    let settings = frame(kind::SETTINGS, 0, 0, &[]);
    let out = flood(s.addr, settings.repeat(FLOOD), 1);
    // Every SETTINGS acknowledged (the flood's and the preface's), the connection kept,
    // the request after them served on it.
    let summary = out.summary(1);
    assert_eq!(out.acks(kind::SETTINGS), FLOOD + 1, "{summary}");
    assert_eq!(out.goaway(), None, "{summary}");
    assert!(!out.closed && out.wrote_all, "{summary}");
    assert_eq!(out.probe_body(1).as_deref(), Some("ok"), "{summary}");
    assert_healthy(s.addr);
    s.wait_idle();
}

/// 10,000 streams opened (an SSE subscription each) and reset at once (CVE-2023-44487's
/// "rapid reset") on one h2c connection: no operation outlives it.
fn a_rapid_reset_flood<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut bytes = Vec::new();
    let path = "/graphql?query=subscription%7Bticks%7D";
    for i in 0..FLOOD as u32 {
        let id = 1 + 2 * i;
        bytes.extend(request_headers(
            id,
            "GET",
            path,
            &[("accept", "text/event-stream")],
            true,
        ));
        bytes.extend(frame(kind::RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let probe = 1 + 2 * FLOOD as u32;
    let out = flood(s.addr, bytes, probe);
    // GOAWAY(ENHANCE_YOUR_CALM) after a few streams (h2's limit on streams reset before
    // they were accepted), then the connection closed; the probe is not served.
    let summary = out.summary(probe);
    let (last, code) = out
        .goaway()
        .unwrap_or_else(|| panic!("no GOAWAY: {summary}"));
    assert_eq!(code, ENHANCE_YOUR_CALM, "{summary}");
    assert!(last < probe, "{summary}");
    assert!(out.closed, "{summary}");
    assert_eq!(out.probe_body(probe), None, "{summary}");
    assert_healthy(s.addr);
    s.wait_idle();
    let e = s.recorder.events();
    assert!(
        e.completes.len() <= (last as usize).div_ceil(2),
        "at most the streams it processed started an operation: {e:?}"
    );
}

/// 100 SSE streams on one connection, each reset (`RST_STREAM(CANCEL)`) once its response
/// head arrived and its operation is live: every operation completes exactly once, for
/// the same reason, nothing stays behind, and the connection still serves.
fn streams_opened_and_reset_one_by_one<R: TestRuntime>() {
    const N: usize = 100;
    let s = R::start(Config::default());
    let mut c = RawH2::connect(s.addr);
    for _ in 0..N {
        let id = c.sse(TICKING);
        loop {
            let f = c.next_frame().expect("the connection ended");
            assert_ne!(f.kind, kind::GOAWAY, "{f:?}");
            if f.stream == id && f.kind == kind::DATA {
                break;
            }
        }
        c.rst(id, CANCEL);
    }
    let e = s.recorder.wait(&format!("{N} on_complete"), DEADLINE, |e| {
        e.completes.len() >= N
    });
    s.wait_idle();
    let e2 = s.recorder.events();
    assert_eq!(e2.completes.len(), N, "exactly once each: {e:?}");
    let reset = EndReason::ConnectionClosed(CloseReason::PeerGone);
    assert!(e2.completes.iter().all(|c| c.2 == reset), "{e2:?}");
    let probe = c.request("GET", "/healthz", &[], b"");
    loop {
        let f = c.next_frame().expect("the connection ended");
        if f.stream == probe && f.kind == kind::DATA && f.payload == b"ok" {
            break;
        }
    }
}

per_runtime!(
    websocket_over_tls_runs_a_subscription,
    sse_and_a_query_over_http2_over_tls,
    plain_requests_over_http1_over_tls,
    sse_over_http1_over_tls_and_a_reader_that_stops,
    ten_sse_streams_share_one_h2c_connection,
    a_reset_stream_ends_alone,
    client_goaway_then_fin_ends_every_stream,
    tcp_reset_ends_every_stream,
    a_window_that_never_opens_cuts_the_connection,
    graceful_shutdown_sends_goaway_and_ends_the_streams,
    dropping_the_h2_connection_future_drops_every_stream,
    websockets_over_extended_connect,
    resetting_a_connect_stream_ends_its_websocket_alone,
    not_tls_on_the_tls_port,
    a_silent_client_is_dropped_at_the_handshake_timeout,
    a_ping_flood,
    a_settings_flood,
    a_rapid_reset_flood,
    streams_opened_and_reset_one_by_one,
);
