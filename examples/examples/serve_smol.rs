//! A complete subscope server on smol: a query and a subscription over WebSocket
//! (graphql-transport-ws and graphql-ws), graphql-sse, Apollo multipart and plain GraphQL
//! over HTTP, all on `/graphql`; Ctrl-C or SIGTERM shuts it down gracefully.
//!
//! `cargo run -p subscope-examples --example serve_smol -- [HOST:PORT]`
//!
//! Cargo.toml: `subscope = { version = "0.1", default-features = false, features =
//! ["smol"] }`, `async-graphql`, `futures-lite` and `async-io` (the timer the example's subscription uses).

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
                async_io::Timer::after(every).await;
            }
            Some((n, n + 1))
        })
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    // An executor thread per core; `rt` spawns connection tasks on it.
    subscope::smol::run(|rt| async move {
        let schema = Schema::new(Query, EmptyMutation, Ticks);
        let server = subscope::smol::server(rt, schema).build();
        let listener =
            subscope::smol::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8000")).await?;
        println!("listening on ws://{}/graphql", listener.local_addr()?);
        let signal = subscope::smol::shutdown_signal(); // Ctrl-C or SIGTERM
        // Returns once every connection, and so every subscription, has been dropped.
        server
            .serve_with_shutdown(listener, signal, Duration::from_secs(5))
            .await
    })
}
