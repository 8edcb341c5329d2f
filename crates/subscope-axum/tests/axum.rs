//! subscope mounted on an axum route, over real sockets: the same negotiation as the
//! standalone driver, both subprotocols, GraphQL over HTTP beside it, `/metrics`, and a
//! shutdown that waits for the sockets axum upgraded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use subscope::tokio::TokioRuntime;
use subscope::{Config, Gauges};
use subscope_examples::{Broker, LiveCounter, axum_app, build_schema};
use subscope_tests::{Client, DEADLINE, Recorder, RecordingHooks, wait_until};
use tungstenite::Message;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

struct App {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    live: LiveCounter,
    gauges: Arc<Gauges>,
    recorder: Recorder,
    server: DemoServer,
}

fn start() -> App {
    start_with(Config::default())
}

fn start_with(config: Config) -> App {
    start_full(config, subscope_examples::auth::TokenAuth::open())
}

fn start_full(config: Config, http_auth: subscope_examples::auth::TokenAuth) -> App {
    start_app(config, |schema, server, gauges| {
        axum_app::router(schema, server, gauges, http_auth)
    })
}

/// The demo server with every transport mounted by [`subscope_axum::route`].
fn start_route(config: Config) -> App {
    start_app(config, |_, server, _| {
        axum::Router::new().route("/graphql", subscope_axum::route(server))
    })
}

type DemoServer = subscope::tokio::Server<subscope_examples::DemoSchema, RecordingHooks>;

/// The demo schema and a recording server, served by the router `app` builds.
fn start_app(
    config: Config,
    app: impl FnOnce(subscope_examples::DemoSchema, DemoServer, Arc<Gauges>) -> axum::Router,
) -> App {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let gauges = Arc::new(Gauges::new());
    let live = LiveCounter::default();
    let schema = build_schema(
        Arc::new(TokioRuntime::new()),
        Arc::clone(&gauges),
        Broker::memory(Default::default()),
        live.clone(),
    );
    let hooks = RecordingHooks::default();
    let recorder = hooks.recorder.clone();
    let server = subscope::tokio::server(schema.clone())
        .hooks(hooks)
        .config(config)
        .gauges(Arc::clone(&gauges))
        .build();
    let app = app(schema, server.clone(), Arc::clone(&gauges));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // With ConnectInfo, so the hooks see the peer.
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    rt.spawn(async move { axum::serve(listener, service).await });
    App {
        rt,
        addr,
        live,
        gauges,
        recorder,
        server,
    }
}

fn http(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    tcp.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn negotiation_matches_the_standalone_driver() {
    let app = start();
    let c = Client::connect(app.addr, &["graphql-ws", "graphql-transport-ws"]);
    assert_eq!(
        c.protocol.as_deref(),
        Some("graphql-ws"),
        "client's order wins"
    );
    let c = Client::connect(app.addr, &["graphql-transport-ws", "graphql-ws"]);
    assert_eq!(c.protocol.as_deref(), Some("graphql-transport-ws"));
    let mut c = Client::connect(app.addr, &["nope"]);
    assert_eq!(c.protocol, None);
    assert_eq!(
        c.expect_close(),
        (4406, "Subprotocol not acceptable".into())
    );
}

#[test]
fn both_subprotocols_serve_the_demo_schema() {
    let app = start();
    let mut modern = Client::modern(app.addr);
    modern.init(None);
    modern.subscribe("t", "subscription { ticks(everyMs: 10, count: 2) }");
    assert_eq!(modern.recv_json()["payload"]["data"]["ticks"], 0);
    assert_eq!(modern.recv_json()["payload"]["data"]["ticks"], 1);
    assert_eq!(modern.recv_json(), json!({"id": "t", "type": "complete"}));

    let mut legacy = Client::legacy(app.addr);
    legacy.init(None);
    legacy.start("d", "subscription { delayed(ms: 60000) }");
    wait_until("one live stream", DEADLINE, || app.live.get() == 1);
    legacy.reset();
    wait_until("the reset connection's stream dropped", DEADLINE, || {
        app.live.get() == 0 && app.gauges.operations() == 0
    });
}

#[test]
fn http_queries_playground_and_metrics_share_the_router() {
    let app = start();
    let body = r#"{"query":"{ hello }"}"#;
    let response = http(
        app.addr,
        &format!(
            "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#"{"data":{"hello":"world"}}"#),
        "{response}"
    );

    let page = http(
        app.addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(page.contains("subscope playground"), "{page}");

    let mut c = Client::modern(app.addr);
    c.init(None);
    wait_until("the connection counted", DEADLINE, || {
        app.gauges.connections() == 1
    });
    let metrics = http(
        app.addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(metrics.contains("subscope_connections 1"), "{metrics}");
    assert!(
        metrics.contains("# TYPE subscope_closes_total counter"),
        "{metrics}"
    );
}

#[test]
fn shutdown_closes_axum_upgraded_sockets_and_waits_for_them() {
    let app = start();
    let mut clients: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = Client::modern(app.addr);
            c.init(None);
            c.subscribe("d", "subscription { delayed(ms: 60000) }");
            c
        })
        .collect();
    wait_until("three live streams", DEADLINE, || app.live.get() == 3);
    app.rt.block_on(app.server.shutdown(Duration::from_secs(5)));
    assert_eq!(app.live.get(), 0, "shutdown returned with a live stream");
    assert_eq!(app.gauges.connections(), 0);
    for c in &mut clients {
        assert_eq!(c.expect_close(), (1001, "Going away".into()));
    }
    // axum still accepts (its own shutdown was not asked for): an upgrade that arrives
    // now is completed and closed 1001 at once, never served.
    let mut late = Client::modern(app.addr);
    assert_eq!(late.expect_close(), (1001, "Going away".into()));
    assert_eq!(app.gauges.connections(), 0);
}

const MODERN: &str = "Sec-WebSocket-Protocol: graphql-transport-ws";

#[test]
fn permessage_deflate_on_axum() {
    let config = Config::default()
        .max_message_size(64 * 1024)
        .deflate(Some(subscope::deflate::DeflateConfig::new()));
    for app in [start_with(config.clone()), start_route(config)] {
        let headers = [
            "Sec-WebSocket-Protocol: graphql-transport-ws".to_owned(),
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits".to_owned(),
        ];
        let mut c = Client::try_connect(app.addr, "/graphql", &headers).expect("upgrade");
        assert!(c.deflate.is_some(), "deflate agreed on axum");
        c.init(None);
        c.subscribe("p", "subscription { payload(bytes: 2000, everyMs: 5) }");
        for _ in 0..10 {
            let m = c.recv_json();
            assert_eq!(
                m["payload"]["data"]["payload"].as_str().map(str::len),
                Some(2000)
            );
        }
        let g = app.gauges.snapshot();
        assert_eq!(g.deflate_connections_total, 1);
        assert!(
            g.deflate_wire_bytes_total * 5 < g.deflate_payload_bytes_total,
            "compressed: {g:?}"
        );
        // The size limit applies to the inflated message.
        let mut bomb = Client::try_connect(app.addr, "/graphql", &headers).expect("upgrade");
        bomb.init(None);
        bomb.send_text(&"a".repeat(8 << 20));
        assert_eq!(bomb.expect_close(), (1009, "Message too big".into()));
        assert_eq!(
            c.recv_json()["type"],
            "next",
            "the other connection goes on"
        );
    }
}

#[test]
fn close_codes_match_the_standalone_driver() {
    let app = start_with(Config::default().max_message_size(64 * 1024));
    // Above the message limit: 1009, not a read error.
    let mut c = Client::modern(app.addr);
    c.init(None);
    let huge = "x".repeat(128 * 1024);
    c.send(json!({"id": "1", "type": "subscribe", "payload": {"query": huge}}));
    assert_eq!(c.expect_close(), (1009, "Message too big".into()));
    // Invalid UTF-8 in a text frame: 4400.
    let mut c = Client::modern(app.addr);
    c.init(None);
    c.send_message(Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    )));
    assert_eq!(c.expect_close(), (4400, "Invalid message received".into()));
    // Not JSON: 4400 as well, and the gauges count both as protocol violations.
    let mut c = Client::modern(app.addr);
    c.init(None);
    c.send_text("{nope");
    assert_eq!(c.expect_close(), (4400, "Invalid message received".into()));
    wait_until("three violations counted", DEADLINE, || {
        app.gauges
            .snapshot()
            .closes_of(subscope::CloseKind::ProtocolViolation)
            == 3
    });
}

#[test]
fn hooks_see_the_request_and_the_connect_info_peer() {
    let app = start();
    let headers = [MODERN.to_owned(), "Cookie: session=s3cret".to_owned()];
    let mut c = Client::try_connect(app.addr, "/graphql?room=9", &headers).expect("upgrade");
    c.init(None);
    let local = c.stream().local_addr().expect("local addr");
    let events = app.recorder.events();
    let conn = events.connects.last().expect("on_connect ran");
    assert_eq!(conn.headers["cookie"], "session=s3cret");
    assert_eq!(conn.uri.query(), Some("room=9"));
    assert_eq!(conn.peer, Some(local), "taken from axum's ConnectInfo");
}

#[test]
fn a_foreign_origin_gets_403_on_axum_too() {
    let app = start_with(Config::default().allowed_origins(["http://app.example"]));
    let foreign = [MODERN.to_owned(), "Origin: http://evil.example".to_owned()];
    let Err(head) = Client::try_connect(app.addr, "/graphql", &foreign) else {
        panic!("a foreign origin was upgraded")
    };
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // The response is written before the refusal is counted.
    wait_until("the refusal counted", DEADLINE, || {
        app.gauges.snapshot().origins_refused == 1
    });
    let listed = [MODERN.to_owned(), "Origin: http://app.example".to_owned()];
    let mut c = Client::try_connect(app.addr, "/graphql", &listed).expect("listed origin");
    c.init(None);
    let mut native = Client::modern(app.addr);
    native.init(None);
    assert_eq!(app.gauges.snapshot().origins_refused, 1);
}

#[test]
fn the_http_side_checks_the_same_token() {
    let auth = subscope_examples::auth::TokenAuth::new([("t0k3n", "demo")]);
    let app = start_full(Config::default(), auth);
    let body = r#"{"query":"{ hello }"}"#;
    let post = |extra: &str| {
        http(
            app.addr,
            &format!(
                "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let refused = post("");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let wrong = post("Authorization: Bearer nope\r\n");
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let ok = post("Authorization: Bearer t0k3n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains(r#"{"data":{"hello":"world"}}"#), "{ok}");
}

#[test]
fn route_serves_every_http_transport_beside_the_websocket() {
    use subscope::{CloseReason, EndReason};
    use subscope_tests::http::{multipart, open_stream, post_json, post_operation, reserve, sse};
    let app = start_route(Config::default());
    // graphql-sse, distinct connections.
    let mut r = sse(app.addr, "subscription { ticks(everyMs: 10, count: 2) }");
    for n in 0..2 {
        let e = r.next_event().expect("next");
        assert_eq!(e.json()["data"]["ticks"], n);
    }
    assert_eq!(r.next_event().expect("complete").event, "complete");
    // Apollo multipart.
    let mut m = multipart(app.addr, "subscription { ticks(everyMs: 10, count: 1) }");
    assert_eq!(
        m.next_part(),
        Some(json!({ "payload": { "data": { "ticks": 0 } } }))
    );
    assert!(m.next_part().is_none());
    // Plain GraphQL over HTTP.
    let q = post_json(
        app.addr,
        "application/json",
        &json!({ "query": "{ hello }" }),
        &[],
    );
    assert_eq!(q.json()["data"]["hello"], "world");
    // Single-connection mode.
    let token = reserve(app.addr);
    let mut stream = open_stream(app.addr, &token);
    assert_eq!(stream.status, 200);
    assert_eq!(
        post_operation(app.addr, &token, "x", "{ hello }").status,
        202
    );
    let e = stream.next_event().expect("next");
    assert_eq!(e.json()["id"], "x");
    // A client that resets mid-stream frees its operation (axum drops the body), with the
    // verdict the standalone server gives the same event.
    let r = sse(app.addr, "subscription { delayed(ms: 60000) }");
    wait_until("one live stream", DEADLINE, || app.live.get() == 1);
    r.reset();
    app.recorder
        .wait("the reset stream completed", DEADLINE, |e| {
            e.completes
                .iter()
                .any(|c| c.2 == EndReason::ConnectionClosed(CloseReason::PeerGone))
        });
    wait_until("the stream dropped", DEADLINE, || app.live.get() == 0);
    // The WebSocket on the same route.
    let mut c = Client::modern(app.addr);
    c.init(None);
    drop(stream);
}

#[test]
fn shutdown_ends_the_http_streams_axum_holds() {
    use subscope_tests::http::{multipart, sse};
    let app = start_route(Config::default());
    let mut a = sse(app.addr, "subscription { delayed(ms: 60000) }");
    let mut b = multipart(app.addr, "subscription { delayed(ms: 60000) }");
    wait_until("two live streams", DEADLINE, || app.live.get() == 2);
    app.rt.block_on(app.server.shutdown(Duration::from_secs(5)));
    assert_eq!(app.live.get(), 0, "shutdown returned with a live stream");
    assert_eq!(app.gauges.snapshot().http_streams, 0);
    assert!(a.next_event().is_none());
    assert_eq!(
        b.next_part().expect("transport error")["errors"][0]["message"],
        "Server is shutting down"
    );
    assert!(b.next_part().is_none());
}

/// Grants every connection for `ttl` (if any), with a session value a revocation matches.
#[derive(Clone, Copy)]
struct Granting {
    ttl: Option<Duration>,
}

#[derive(PartialEq)]
struct Grantee(u8);

impl subscope::Hooks for Granting {
    async fn on_connect(
        &self,
        _conn: &subscope::ConnectionInfo,
        _payload: Option<serde_json::Value>,
    ) -> Result<subscope::Accept, subscope::Reject> {
        let accept = subscope::Accept::new().data(Grantee(1));
        Ok(match self.ttl {
            Some(ttl) => accept.valid_for(ttl),
            None => accept,
        })
    }
}

/// Expiry and revocation on axum: the same endings as the standalone server (4403 on the
/// WebSocket, a final `TOKEN_EXPIRED` / `TOKEN_REVOKED` item on an SSE stream).
#[test]
fn authorization_expires_and_is_revoked_on_axum_too() {
    use subscope_tests::http::sse;
    for ttl in [Some(Duration::from_millis(400)), None] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let live = LiveCounter::default();
        let schema = build_schema(
            Arc::new(TokioRuntime::new()),
            Arc::new(Gauges::new()),
            Broker::memory(Default::default()),
            live.clone(),
        );
        let server = subscope::tokio::server(schema)
            .hooks(Granting { ttl })
            .build();
        let app = axum::Router::new().route("/graphql", subscope_axum::route(server.clone()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        rt.spawn(async move { axum::serve(listener, app).await });

        let mut ws = Client::connect(addr, &["graphql-transport-ws"]);
        ws.init(None);
        ws.subscribe("t", "subscription { ticks(everyMs: 50) }");
        let mut stream = sse(addr, "subscription { ticks(everyMs: 50) }");
        assert!(stream.next_event().is_some(), "the stream runs");
        wait_until("both streams live", DEADLINE, || live.get() == 2);
        let (code, reason, item) = match ttl {
            Some(_) => (4403, "Token expired", "TOKEN_EXPIRED"),
            None => {
                assert_eq!(
                    server.revoke(|s| s.data::<Grantee>() == Some(&Grantee(1))),
                    2
                );
                (4403, "Forbidden", "TOKEN_REVOKED")
            }
        };
        assert_eq!(ws.expect_close_skipping_data(), (code, reason.to_owned()));
        let last = loop {
            let e = stream.next_event().expect("an event before the end");
            if e.json().get("errors").is_some() {
                break e;
            }
        };
        assert_eq!(
            last.json()["errors"][0]["extensions"]["code"],
            item,
            "{ttl:?}"
        );
        assert_eq!(stream.next_event().expect("complete").event, "complete");
        wait_until("every stream dropped", DEADLINE, || live.get() == 0);
    }
}
