//! The HTTP upgrade request reaches the hooks, and the Origin allow-list answers a foreign
//! browser origin with 403 before any WebSocket exists.

use subscope::Config;
use subscope_tests::{Client, DEADLINE, TestRuntime, per_runtime, wait_until};

const MODERN: &str = "Sec-WebSocket-Protocol: graphql-transport-ws";

fn on_connect_sees_uri_headers_and_peer<R: TestRuntime>() {
    let s = R::start(Config::default());
    let headers = [
        MODERN.to_owned(),
        "Cookie: session=abc123".to_owned(),
        "X-Tenant: blue".to_owned(),
    ];
    let mut c = Client::try_connect(s.addr, "/graphql?room=7", &headers).expect("upgrade");
    c.init(None);
    let local = c.stream().local_addr().expect("local addr");
    let events = s.recorder.events();
    let conn = events.connects.last().expect("on_connect ran");
    assert_eq!(conn.uri.path(), "/graphql");
    assert_eq!(conn.uri.query(), Some("room=7"));
    assert_eq!(conn.headers["cookie"], "session=abc123");
    assert_eq!(conn.headers["x-tenant"], "blue");
    assert_eq!(conn.peer, Some(local), "the peer is the client's socket");
}

fn a_foreign_origin_gets_403_and_is_counted<R: TestRuntime>() {
    let s = R::start(Config::default().allowed_origins(["https://app.example"]));
    let foreign = [MODERN.to_owned(), "Origin: https://evil.example".to_owned()];
    let Err(head) = Client::try_connect(s.addr, "/graphql", &foreign) else {
        panic!("a foreign origin was upgraded")
    };
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // The response is written before the refusal is counted.
    wait_until("the refusal counted", DEADLINE, || {
        s.gauges.snapshot().origins_refused == 1
    });
    assert_eq!(
        s.gauges.snapshot().connections_total,
        0,
        "never a connection"
    );
    assert!(
        s.recorder.events().connects.is_empty(),
        "no hook ran for it"
    );

    // The listed origin (any ASCII case) and a non-browser client (no Origin) get in.
    let listed = [MODERN.to_owned(), "Origin: https://APP.example".to_owned()];
    let mut ok = Client::try_connect(s.addr, "/graphql", &listed).expect("listed origin");
    ok.init(None);
    let mut native = Client::modern(s.addr);
    native.init(None);
    assert_eq!(s.gauges.snapshot().origins_refused, 1);
    drop((ok, native));
    wait_until("connections gone", DEADLINE, || s.gauges.connections() == 0);
}

fn every_origin_is_allowed_by_default<R: TestRuntime>() {
    let s = R::start(Config::default());
    let headers = [
        MODERN.to_owned(),
        "Origin: https://anywhere.example".to_owned(),
    ];
    let mut c = Client::try_connect(s.addr, "/graphql", &headers).expect("upgrade");
    c.init(None);
    assert_eq!(s.gauges.snapshot().origins_refused, 0);
}

per_runtime!(
    on_connect_sees_uri_headers_and_peer,
    a_foreign_origin_gets_403_and_is_counted,
    every_origin_is_allowed_by_default,
);
