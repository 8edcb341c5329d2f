//! PROTOCOL.md 4.1: subprotocol negotiation at the HTTP upgrade.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use subscope::Config;
use subscope_tests::{
    Client, DEADLINE, TestRuntime, expect_dropped_without_a_response, per_runtime, wait_until,
};

fn picks_the_clients_first_enabled_token<R: TestRuntime>() {
    let s = R::start(Config::default());
    let c = Client::connect(s.addr, &["graphql-ws", "graphql-transport-ws"]);
    assert_eq!(c.protocol.as_deref(), Some("graphql-ws"));
    let c = Client::connect(s.addr, &["graphql-transport-ws", "graphql-ws"]);
    assert_eq!(c.protocol.as_deref(), Some("graphql-transport-ws"));
    let c = Client::connect(s.addr, &["unknown", "graphql-transport-ws"]);
    assert_eq!(c.protocol.as_deref(), Some("graphql-transport-ws"));
}

fn merges_several_header_lines<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::connect_lines(s.addr, &["foo", " graphql-ws ,bar"]);
    assert_eq!(c.protocol.as_deref(), Some("graphql-ws"));
    c.init(None);
}

fn no_header_gets_4406_after_the_upgrade<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::connect(s.addr, &[]);
    assert_eq!(c.protocol, None);
    assert_eq!(
        c.expect_close(),
        (4406, "Subprotocol not acceptable".into())
    );
}

fn unknown_or_miscased_token_gets_4406<R: TestRuntime>() {
    let s = R::start(Config::default());
    for token in [
        "graphql-TransPort-ws",
        "graphql-transport-wsgibberish",
        "graphql-subscriptions",
    ] {
        let mut c = Client::connect(s.addr, &[token]);
        assert_eq!(c.protocol, None, "{token}");
        assert_eq!(c.expect_close().0, 4406, "{token}");
    }
}

fn disabled_subprotocol_is_not_chosen<R: TestRuntime>() {
    let s = R::start(Config::default().subprotocols(&[subscope::Subprotocol::GraphqlTransportWs]));
    let mut c = Client::connect(s.addr, &["graphql-ws"]);
    assert_eq!(c.protocol, None);
    assert_eq!(c.expect_close().0, 4406);
    let c = Client::connect(s.addr, &["graphql-ws", "graphql-transport-ws"]);
    assert_eq!(c.protocol.as_deref(), Some("graphql-transport-ws"));
}

fn unfinished_upgrade_is_dropped_after_the_handshake_timeout<R: TestRuntime>() {
    let s = R::start(Config::default().handshake_timeout(Duration::from_millis(200)));
    let mut tcp = TcpStream::connect(s.addr).expect("connect");
    tcp.write_all(b"GET /graphql HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    // The server drops the socket (EOF or reset), never a response, and not before the
    // timeout.
    let took = expect_dropped_without_a_response(&mut tcp);
    assert!(took >= Duration::from_millis(150), "dropped after {took:?}");
}

fn connection_limit_closes_1013<R: TestRuntime>() {
    let s = R::start(Config::default().max_connections(Some(1)));
    let mut first = Client::modern(s.addr);
    first.init(None);
    let mut second = Client::modern(s.addr);
    assert_eq!(second.expect_close(), (1013, "Try again later".into()));
    drop(first);
    wait_until("first connection gone", DEADLINE, || {
        s.gauges.connections() == 0
    });
    let mut third = Client::modern(s.addr);
    third.init(None);
}

per_runtime!(
    picks_the_clients_first_enabled_token,
    merges_several_header_lines,
    no_header_gets_4406_after_the_upgrade,
    unknown_or_miscased_token_gets_4406,
    disabled_subprotocol_is_not_chosen,
    unfinished_upgrade_is_dropped_after_the_handshake_timeout,
    connection_limit_closes_1013,
);
