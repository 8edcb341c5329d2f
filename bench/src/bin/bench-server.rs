//! Contender servers for the benchmark, beside the subscope `demo` binary:
//!
//! - `--kind async-graphql`: async-graphql's own WebSocket handler (`async-graphql-axum`'s
//!   `GraphQLSubscription`) serving the same demo schema, same async-graphql version.
//! - `--kind limit`: the ceiling for this machine: the same WebSocket library pushing
//!   pre-serialized `next` frames, with no GraphQL execution at all.
//!
//! `bench-server --kind KIND [--addr HOST:PORT]`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::handshake::server::{Request, Response};
use async_tungstenite::tungstenite::http::HeaderValue;
use futures_lite::StreamExt;
use subscope::Gauges;
use subscope::tokio::TokioRuntime;
use subscope_examples::{Broker, LiveCounter, build_schema};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let addr: SocketAddr = get("--addr")
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    subscope_bench::announce(listener.local_addr()?);
    match get("--kind").as_deref() {
        Some("async-graphql") => async_graphql_handler(listener).await,
        Some("limit") => limit(listener).await,
        other => Err(std::io::Error::other(format!("unknown --kind {other:?}"))),
    }
}

async fn async_graphql_handler(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    // The same topics (and delivery rules) as the demo, so only the server differs.
    let gauges = Arc::new(Gauges::new());
    let topics = subscope::MemoryTopics::new(Default::default());
    topics.fanout().count_into(Arc::clone(&gauges));
    let broker = Broker::Memory(topics);
    let schema = build_schema(
        Arc::new(TokioRuntime::new()),
        gauges,
        broker,
        LiveCounter::default(),
    );
    let app = axum::Router::new().route_service(
        "/graphql",
        async_graphql_axum::GraphQLSubscription::new(schema),
    );
    // TCP_NODELAY, as every subscope runtime sets: otherwise delayed ACKs cost 40 ms per
    // request/response and the comparison would measure Nagle, not the handler.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

/// Subscribers of the limit server: (connection, subscription id) -> outbound queue.
type Registry = Arc<Mutex<HashMap<(u64, String), mpsc::UnboundedSender<Message>>>>;

/// The raw-frame ceiling: speaks just enough `graphql-transport-ws` for the load generator.
async fn limit(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let registry = Registry::default();
    let mut next_conn = 0u64;
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        next_conn += 1;
        let conn = next_conn;
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            // The error type is tungstenite's own HTTP response; never built here.
            #[allow(clippy::result_large_err)]
            let callback = |_: &Request, mut response: Response| {
                response.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static("graphql-transport-ws"),
                );
                Ok(response)
            };
            let Ok(ws) = async_tungstenite::tokio::accept_hdr_async(tcp, callback).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
            let writer = tokio::spawn(async move {
                use futures_sink::Sink;
                use std::pin::Pin;
                // Batch like subscope does: queue every ready frame, flush once.
                while let Some(first) = rx.recv().await {
                    let mut next = Some(first);
                    while let Some(m) = next.take() {
                        let ready = std::future::poll_fn(|cx| Pin::new(&mut sink).poll_ready(cx));
                        if ready.await.is_err() || Pin::new(&mut sink).start_send(m).is_err() {
                            return;
                        }
                        next = rx.try_recv().ok();
                    }
                    let flushed = std::future::poll_fn(|cx| Pin::new(&mut sink).poll_flush(cx));
                    if flushed.await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                let text = text.as_str();
                let Ok(msg) = serde_json::from_str::<serde_json::Value>(text) else {
                    continue;
                };
                let id = msg["id"].as_str().unwrap_or_default().to_owned();
                let query = msg["payload"]["query"].as_str().unwrap_or_default();
                let reply = match msg["type"].as_str() {
                    Some("connection_init") => vec![r#"{"type":"connection_ack"}"#.to_owned()],
                    Some("subscribe") if query.starts_with("subscription") => {
                        registry
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert((conn, id), tx.clone());
                        Vec::new()
                    }
                    Some("subscribe") => {
                        // `publish(topic: "...", message: $m)` with `{"m": M}`, or the
                        // message inline (`message: "M"`): fan M out.
                        let message = msg["payload"]["variables"]["m"]
                            .as_str()
                            .or_else(|| {
                                query
                                    .split("message: \"")
                                    .nth(1)
                                    .and_then(|r| r.split('"').next())
                            })
                            .unwrap_or_default();
                        let subs = registry.lock().unwrap_or_else(|e| e.into_inner());
                        for ((_, sub_id), out) in subs.iter() {
                            let frame = format!(
                                r#"{{"id":"{sub_id}","type":"next","payload":{{"data":{{"messages":"{message}"}}}}}}"#
                            );
                            let _ = out.send(Message::text(frame));
                        }
                        let n = subs.len();
                        vec![
                            format!(
                                r#"{{"id":"{id}","type":"next","payload":{{"data":{{"publish":{n}}}}}}}"#
                            ),
                            format!(r#"{{"id":"{id}","type":"complete"}}"#),
                        ]
                    }
                    Some("complete") => {
                        registry
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&(conn, id));
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
                for r in reply {
                    let _ = tx.send(Message::text(r));
                }
            }
            registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(c, _), _| *c != conn);
            writer.abort();
        });
    }
}
