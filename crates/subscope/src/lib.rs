//! GraphQL subscriptions over WebSocket that never leak one.
//!
//! subscope serves `graphql-transport-ws` and the legacy `graphql-ws` (and graphql-sse,
//! Apollo multipart and plain GraphQL over HTTP) for any GraphQL schema (an
//! [`async_graphql::Executor`]: a `Schema` or a `dynamic::Schema`), and guarantees that
//! every subscription stream is dropped, and its cleanup has run, on every way a
//! connection can end. This facade re-exports the runtime-free core
//! ([`subscope-core`](https://docs.rs/subscope-core)) and, by additive feature, each
//! runtime adapter.
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn run<S: subscope::async_graphql::Executor>(schema: S) -> std::io::Result<()> {
//! let server = subscope::tokio::server(schema)
//!     .config(subscope::Config::default().max_subscriptions(50))
//!     .build();
//! let listener = subscope::tokio::TcpListener::bind("127.0.0.1:8000").await?;
//! let signal = subscope::tokio::shutdown_signal(); // Ctrl-C or SIGTERM
//! // Returns once every connection, and so every subscription, has been dropped.
//! server.serve_with_shutdown(listener, signal, std::time::Duration::from_secs(5)).await
//! # }
//! ```
//!
//! Every runtime module has the same four pieces: `server(..)` (smol's also takes the
//! `SmolRuntime`), a `TcpListener` that binds and accepts, and `shutdown_signal()`;
//! `smol::run` starts an executor on every core, as `#[tokio::main]` does for tokio. The
//! repository's `examples/examples/serve_{tokio,smol,async_std}.rs` are complete servers.
//!
//! What you need, in the order you need it: a runtime module ([`tokio`],
//! `smol`, `async_std`); [`Server`] to serve and shut down; [`Config`] for timeouts and
//! limits; [`Hooks`] (with [`Accept`], [`Reject`], [`ConnectionInfo`]) for authentication
//! and lifecycle; [`Gauges`] for metrics. To put subscope on an axum route, use the
//! `subscope-axum` crate.
//!
//! # Features
//! Runtimes are additive features; any combination compiles, and libraries built on
//! subscope should depend on `subscope-core` (or this crate with no runtime) and stay
//! generic.
//!
//! - `http` (default): the standalone server on hyper (`Server::serve`, `serve_io`) and
//!   the HTTP transports; without it, `Server::serve_websocket` only.
//! - `deflate` (default): permessage-deflate (`Config::deflate`, the `deflate` module).
//! - `tokio` (default): the `tokio` module, the tokio adapter.
//! - `smol`: the `smol` module, the smol adapter.
//! - `async-std`: the `async_std` module, the async-std adapter (async-std is discontinued
//!   upstream; prefer smol).
//!
//! # Stability
//! As `subscope-core`'s: 0.x with `#[non_exhaustive]` enums and settings; the wire
//! behaviour of `docs/PROTOCOL.md` section 4 changes only in a breaking release.

#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(
    not(all(feature = "http", feature = "deflate")),
    allow(rustdoc::broken_intra_doc_links)
)]

/// permessage-deflate (RFC 7692).
#[cfg(feature = "deflate")]
pub use subscope_core::deflate;
/// TLS on the standalone server (feature `tls`): [`tls::Tls`] for [`Config::tls`].
#[cfg(feature = "tls")]
pub use subscope_core::tls;
pub use subscope_core::{
    Accept, CloseKind, CloseReason, Config, ConnectionInfo, Delivery, EndReason, EventId, Fanout,
    GaugeSnapshot, Gauges, HandshakeError, History, Hooks, InvalidMessage, MemoryTopics, Missed,
    NoHooks, OperationToken, Overflow, Rate, Reject, Renewal, Resume, Server, ServerBuilder,
    Session, ShareKey, Subprotocol, Subscription, Topics, Transport, UpgradeRequest, WebSocket,
    negotiate, truncate_reason,
};
#[cfg(feature = "http")]
pub use subscope_core::{HttpBody, Served, is_websocket_upgrade};
pub use subscope_core::{close, rt, topics, websocket};

/// The GraphQL engine subscope executes with (the version subscope uses).
#[doc(no_inline)]
pub use subscope_core::async_graphql;
/// The WebSocket implementation of the standalone server.
#[doc(no_inline)]
pub use subscope_core::async_tungstenite;
/// The HTTP types of [`UpgradeRequest`] and [`ConnectionInfo`].
#[doc(no_inline)]
pub use subscope_core::http;

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

/// The async-std adapter. async-std is discontinued upstream; prefer `smol` where you can.
#[cfg(feature = "async-std")]
pub mod async_std {
    pub use subscope_async_std::*;
}
