//! GraphQL subscriptions over WebSocket that never leak one.
//!
//! subscope serves `graphql-transport-ws` and the legacy `graphql-ws` for any
//! [`async_graphql::Executor`], and guarantees that every subscription stream is dropped,
//! and its cleanup has run, on every way a connection can end. This facade re-exports the
//! runtime-free core and, by additive feature, each runtime adapter.
//!
//! # Features
//! Runtimes are additive features; any combination compiles, and libraries built on
//! subscope should depend on `subscope-core` (or this crate with no runtime) and stay
//! generic.
//!
//! - `tokio` (default): the `tokio` module, the tokio adapter.
//! - `smol`: the `smol` module, the smol adapter.
//! - `async-std`: the `async_std` module, the async-std adapter (async-std is discontinued
//!   upstream; prefer smol).
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

/// The smol adapter.
#[cfg(feature = "smol")]
pub mod smol {
    pub use subscope_smol::*;
}

/// The async-std adapter. async-std is discontinued upstream; prefer [`crate::smol`] where
/// you can.
#[cfg(feature = "async-std")]
pub mod async_std {
    pub use subscope_async_std::*;
}
