//! A complete subscope server on async-std: a query and a subscription over WebSocket
//! (graphql-transport-ws and graphql-ws), graphql-sse, Apollo multipart and plain GraphQL
//! over HTTP, all on `/graphql`; Ctrl-C or SIGTERM shuts it down gracefully. (async-std is
//! discontinued upstream; `serve_smol` is the same server on its successor.)
//!
//! `cargo run -p subscope-examples --example serve_async_std -- [HOST:PORT]`
//!
//! Cargo.toml: `subscope = { version = "0.1", default-features = false, features =
//! ["async-std"] }`, `async-graphql`, `futures-lite` and `async-std`.

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
                async_std::task::sleep(every).await;
            }
            Some((n, n + 1))
        })
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    async_std::task::block_on(async {
        let schema = Schema::new(Query, EmptyMutation, Ticks);
        let server = subscope::async_std::server(schema).build();
        let listener =
            subscope::async_std::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8000"))
                .await?;
        println!("listening on ws://{}/graphql", listener.local_addr()?);
        let signal = subscope::async_std::shutdown_signal(); // Ctrl-C or SIGTERM
        // Returns once every connection, and so every subscription, has been dropped.
        server
            .serve_with_shutdown(listener, signal, Duration::from_secs(5))
            .await
    })
}
