//! A complete subscope server on tokio: a query and a subscription over WebSocket
//! (graphql-transport-ws and graphql-ws), graphql-sse, Apollo multipart and plain GraphQL
//! over HTTP, all on `/graphql`; Ctrl-C or SIGTERM shuts it down gracefully.
//!
//! `cargo run -p subscope-examples --example serve_tokio -- [HOST:PORT]`
//!
//! Cargo.toml: `subscope = "0.1"`, `async-graphql`, `futures-lite`, and `tokio` with
//! `rt-multi-thread`, `macros` and `time`.

use std::time::Duration;

use async_graphql::{EmptyMutation, Object, Schema, Subscription};
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
    let listener =
        subscope::tokio::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8000")).await?;
    println!("listening on ws://{}/graphql", listener.local_addr()?);
    let signal = subscope::tokio::shutdown_signal(); // Ctrl-C or SIGTERM
    // Returns once every connection, and so every subscription, has been dropped.
    server
        .serve_with_shutdown(listener, signal, Duration::from_secs(5))
        .await
}
