//! subscope on one axum route: `subscope_axum::route(server)` serves WebSocket
//! (graphql-transport-ws and graphql-ws), graphql-sse, Apollo multipart and plain GraphQL
//! over HTTP on `/graphql`, beside your own routes and middleware; no async-graphql-axum.
//! Ctrl-C or SIGTERM shuts both down gracefully.
//!
//! `cargo run -p subscope-examples --example axum_route -- [HOST:PORT]`
//!
//! Cargo.toml: `subscope = "0.1"`, `subscope-axum = "0.1"`, `axum` (0.8, features
//! `tokio`, `http1`), `async-graphql`, `futures-lite`, and `tokio` with `rt-multi-thread`,
//! `macros` and `time`.

use std::net::SocketAddr;
use std::time::Duration;

use async_graphql::{EmptyMutation, Object, Schema, Subscription};
use axum::Router;
use axum::routing::get;
use futures_lite::Stream;

struct Query;

#[Object]
impl Query {
    async fn hello(&self) -> &str {
        "world"
    }
}

struct Ticks;

#[Subscription]
impl Ticks {
    /// 0 at once, then 1, 2, … every `every_ms` milliseconds.
    async fn ticks(&self, #[graphql(default = 1000)] every_ms: u64) -> impl Stream<Item = u64> {
        let every = Duration::from_millis(every_ms);
        futures_lite::stream::unfold(0, move |n| async move {
            if n > 0 {
                tokio::time::sleep(every).await;
            }
            Some((n, n + 1))
        })
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let schema = Schema::new(Query, EmptyMutation, Ticks);
    let server = subscope::tokio::server(schema).build();
    let app = Router::new()
        .route("/graphql", subscope_axum::route(server.clone()))
        .route("/healthz", get(|| async { "ok" }));
    let listener =
        tokio::net::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8000")).await?;
    println!("listening on ws://{}/graphql", listener.local_addr()?);
    // One signal ends both: axum stops accepting and finishes requests in flight, and
    // subscope closes every WebSocket 1001 and ends every HTTP stream. axum does not track
    // upgraded sockets; `server.shutdown` does, so wait for both.
    let (stop, stopped) = tokio::sync::watch::channel(());
    let service = app.into_make_service_with_connect_info::<SocketAddr>(); // peers for the hooks
    let serving = tokio::spawn(async move {
        let mut stopped = stopped;
        axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                let _ = stopped.changed().await;
            })
            .await
    });
    let signalled = subscope::tokio::shutdown_signal().await;
    let _ = stop.send(());
    server.shutdown(Duration::from_secs(5)).await;
    serving.await.map_err(std::io::Error::other)??;
    signalled
}
