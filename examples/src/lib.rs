//! The demo schema used by the README, the tests and the benchmarks.
//!
//! ```graphql
//! type Query {
//!   hello: String!
//!   liveStreams: Int!
//!   serverStats: ServerStats!
//! }
//! type ServerStats {
//!   connections: Int!  subscriptions: Int!  connectionsTotal: Int!  subscriptionsTotal: Int!
//!   eventsDropped: Int!  subscriptionsLagged: Int!  brokerGaps: Int!
//! }
//! type Mutation {
//!   publish(topic: String!, message: String!): Int!
//!   revokeToken(token: String!): Int!
//! }
//! type Subscription {
//!   ticks(everyMs: Int! = 1000, count: Int): Int!
//!   delayed(ms: Int!, value: String! = "done"): String!
//!   messages(topic: String!): String!
//!   failing(after: Int! = 0): Int!
//!   panicking(after: Int! = 0): Int!
//!   payload(bytes: Int!, everyMs: Int! = 0): String!
//! }
//! ```
//!
//! Every subscription stream carries a [`LiveGuard`], so `liveStreams` counts exactly the
//! streams not yet dropped. Time comes from a [`subscope::rt::Timer`], so the schema runs
//! on any runtime.

pub mod auth;
#[cfg(feature = "axum")]
pub mod axum_app;
pub mod broker;
mod schema;

pub use broker::Broker;
pub use schema::{
    DemoSchema, LiveStreams, Mutation, Query, ServerStats, Subscription, build_schema,
    build_schema_with_auth,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live demo streams; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct LiveCounter(Arc<AtomicUsize>);

impl LiveCounter {
    /// Streams alive now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// A guard counted until it is dropped.
    pub fn guard(&self) -> LiveGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        LiveGuard(Arc::clone(&self.0))
    }
}

/// Held by every demo stream; dropping it is the stream's cleanup.
#[derive(Debug)]
pub struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub mod cli;

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}
