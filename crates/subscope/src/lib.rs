//! GraphQL subscriptions over WebSocket that never leak one.
//!
//! subscope serves `graphql-transport-ws` and the legacy `graphql-ws` for any
//! [`async_graphql::Executor`], and guarantees that every subscription stream is dropped,
//! and its cleanup has run, on every way a connection can end. This facade re-exports the
//! runtime-free core and, by additive feature, each runtime adapter.
//!
//! # Features
//! - `tokio` (default): [`tokio`] module, the tokio adapter.
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn run<E: subscope::async_graphql::Executor>(schema: E) -> std::io::Result<()> {
//! let server = subscope::tokio::server(schema)
//!     .config(subscope::Config::default().max_subscriptions(50))
//!     .build();
//! let listener = ::tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! server.serve(listener).await
//! # }
//! ```

pub use subscope_core::*;

/// The tokio adapter.
#[cfg(feature = "tokio")]
pub mod tokio {
    pub use subscope_tokio::*;
}
