//! subscope mounted on an axum route, over real sockets: the same negotiation as the
//! standalone driver, both subprotocols, GraphQL over HTTP beside it, `/metrics`, and a
//! shutdown that waits for the sockets axum upgraded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use subscope::Gauges;
use subscope::tokio::TokioRuntime;
use subscope_examples::{Broker, LiveCounter, axum_app, build_schema};
use subscope_tests::{Client, DEADLINE, wait_until};

struct App {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    live: LiveCounter,
    gauges: Arc<Gauges>,
    server: subscope::tokio::Server<subscope_examples::DemoSchema>,
}

fn start() -> App {
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
        Broker::memory(Default::default(), Arc::clone(&gauges)),
        live.clone(),
    );
    let server = subscope::tokio::server(schema.clone())
        .gauges(Arc::clone(&gauges))
        .build();
    let app = axum_app::router(schema, server.clone(), Arc::clone(&gauges));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move { axum::serve(listener, app).await });
    App {
        rt,
        addr,
        live,
        gauges,
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
        app.live.get() == 0 && app.gauges.subscriptions() == 0
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
}
