//! Resumable subscriptions: typed events with history, resumed after the last event id a
//! client saw, on every transport. The resolver is one line (`topics.resume(ctx, ..)`).
//!
//! `cargo run -p subscope-examples --example resume -- [HOST:PORT]`
//!
//! Each `bids` result carries `extensions.eventId`. A client that reconnects sends the last
//! one as `extensions.lastEventId` (WebSocket `subscribe`, HTTP body) or, with a browser's
//! `EventSource`, as the `Last-Event-ID` header by itself; it then gets every bid it
//! missed, exactly once, then live ones. If history no longer reaches back, the first item
//! is a `RESUME_GAP` error naming the oldest id kept.
//!
//! Cargo.toml: `subscope = "0.1"`, `async-graphql`, `serde` (derive), and `tokio` with
//! `rt-multi-thread`, `macros`.

use std::time::Duration;

use async_graphql::{Context, Object, Result, Schema, SimpleObject, Subscription};
use futures_lite::Stream;
use subscope::{Delivery, History, MemoryTopics, Missed, Topics};

/// What is published: any `Clone` type in memory (a serde type with `subscope-redis`).
#[derive(Debug, Clone, SimpleObject)]
struct Bid {
    item: String,
    cents: u64,
}

type Bids = MemoryTopics<Bid>;

struct Query;

#[Object]
impl Query {
    async fn hello(&self) -> &str {
        "world"
    }
}

struct Mutation;

#[Object]
impl Mutation {
    /// Publishes a bid; returns how many subscribers took it. In memory it cannot fail.
    async fn bid(&self, ctx: &Context<'_>, item: String, cents: u64) -> Result<usize> {
        let topic = item.clone();
        Ok(ctx.data::<Bids>()?.publish(&topic, Bid { item, cents }))
    }
}

struct Sub;

#[Subscription]
impl Sub {
    /// Bids on `item`, resumed after the client's `lastEventId` if it sent one.
    async fn bids(
        &self,
        ctx: &Context<'_>,
        item: String,
    ) -> Result<impl Stream<Item = Result<Bid, Missed>> + use<>> {
        Ok(ctx.data::<Bids>()?.resume(ctx, &item))
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    // The last 1,000 bids of each item are kept: about 1,000 × (64 bytes + the bid).
    let bids = Bids::new(Delivery::default().history(History::last(1000)));
    let schema = Schema::build(Query, Mutation, Sub)
        .data(bids.clone())
        .finish();
    let config = subscope::Config::default()
        // Browsers come back after 1 s and resume with `Last-Event-ID`.
        .sse_retry(Duration::from_secs(1))
        // A deploy closes connections spread over 5 s, not all at once.
        .drain(Duration::from_secs(5));
    let server = subscope::tokio::server(schema)
        .config(config)
        .topics(&bids) // drops, gaps and replays count in the server's gauges
        .build();
    let listener =
        subscope::tokio::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8000")).await?;
    println!("listening on ws://{}/graphql", listener.local_addr()?);
    let signal = subscope::tokio::shutdown_signal();
    server
        .serve_with_shutdown(listener, signal, Duration::from_secs(5))
        .await
}
