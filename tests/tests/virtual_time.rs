//! The driver's timers in tokio's paused clock, over an in-memory duplex: every deadline is
//! computed from the runtime's clock (`Timer::now`), so hours of virtual time pass in
//! microseconds and the firing instant can be asserted exactly.

#![cfg(feature = "rt-tokio")]

use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::Role;
use futures_lite::StreamExt;
use subscope::tokio::TokioRuntime;
use subscope::{CloseReason, Config, Subprotocol};
use subscope_tests::server::demo_server;
use tokio::time::Instant;

type Ws = WebSocketStream<TokioAdapter<tokio::io::DuplexStream>>;

/// A server-side and a client-side WebSocket joined by an in-memory pipe (no handshake).
async fn pair() -> (Ws, Ws) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = WebSocketStream::from_raw_socket(TokioAdapter::new(a), Role::Server, None).await;
    let client = WebSocketStream::from_raw_socket(TokioAdapter::new(b), Role::Client, None).await;
    (server, client)
}

/// Reads the client side until the server's close frame (or the end of the pipe).
async fn until_closed(client: &mut Ws) -> Option<u16> {
    while let Some(msg) = client.next().await {
        match msg {
            Ok(Message::Close(frame)) => return frame.map(|f| f.code.into()),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

#[tokio::test(start_paused = true)]
async fn init_timeout_fires_at_exactly_three_virtual_seconds() {
    let (server, _state) = demo_server(TokioRuntime::new(), Config::default());
    let (ws, mut client) = pair().await;
    let started = Instant::now();
    let conn = tokio::spawn(server.serve_websocket(
        subscope::websocket::Tungstenite::from(ws),
        Some(Subprotocol::GraphqlTransportWs),
        Default::default(),
    ));
    assert_eq!(until_closed(&mut client).await, Some(4408));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_millis(3010),
        "{elapsed:?}"
    );
    drop(client);
    assert_eq!(conn.await.expect("join"), CloseReason::InitTimeout);
}

#[tokio::test(start_paused = true)]
async fn silent_peer_is_dropped_after_ping_interval_plus_timeout() {
    let config = Config::default()
        .keepalive_interval(Duration::from_secs(12))
        .keepalive_timeout(Duration::from_secs(12));
    let (server, state) = demo_server(TokioRuntime::new(), config);
    let (ws, mut client) = pair().await;
    client
        .send(Message::text(r#"{"type":"connection_init"}"#))
        .await
        .expect("init");
    client
        .send(Message::text(
            r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { delayed(ms: 3600000) }"}}"#,
        ))
        .await
        .expect("subscribe");
    let started = Instant::now();
    let conn = tokio::spawn(server.serve_websocket(
        subscope::websocket::Tungstenite::from(ws),
        Some(Subprotocol::GraphqlTransportWs),
        Default::default(),
    ));
    // The client never reads, so it never answers the ping: after 12 s + 12 s the server
    // drops every operation and the socket, without waiting for the peer.
    let reason = conn.await.expect("join");
    let elapsed = started.elapsed();
    assert_eq!(reason, CloseReason::KeepaliveTimeout);
    assert!(
        elapsed >= Duration::from_secs(24) && elapsed < Duration::from_millis(24_010),
        "{elapsed:?}"
    );
    assert_eq!(state.live.get(), 0);
    assert_eq!(state.gauges.snapshot().operations, 0);
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn legacy_ka_arrives_on_every_interval() {
    let config = Config::default().keepalive_interval(Duration::from_secs(10));
    let (server, _state) = demo_server(TokioRuntime::new(), config);
    let (ws, mut client) = pair().await;
    let conn = tokio::spawn(server.serve_websocket(
        subscope::websocket::Tungstenite::from(ws),
        Some(Subprotocol::GraphqlWs),
        Default::default(),
    ));
    client
        .send(Message::text(r#"{"type":"connection_init"}"#))
        .await
        .expect("init");
    let started = Instant::now();
    let mut kas = Vec::new();
    while kas.len() < 4 {
        match client.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == r#"{"type":"ka"}"# => {
                kas.push(started.elapsed().as_secs());
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
    // The first at once after the ack, then one every 10 virtual seconds.
    assert_eq!(kas, [0, 10, 20, 30]);
    drop(client);
    let _ = conn.await;
}
