//! The runtime-free server engine of subscope: GraphQL subscriptions over WebSocket and
//! HTTP streams that never leak.
//!
//! subscope speaks both GraphQL-over-WebSocket subprotocols, `graphql-transport-ws` and the
//! legacy `graphql-ws`, and (feature `http`) graphql-sse in both modes, Apollo multipart
//! and plain GraphQL over HTTP on the same port, exactly as the repository's
//! `docs/PROTOCOL.md` section 4 specifies (the protocol rules themselves, sans IO, are the
//! `subscope-protocol` crate), and executes operations through [`async_graphql::Executor::execute_stream`] (static or
//! dynamic schemas). Pick a runtime through an adapter crate (`subscope-tokio`,
//! `subscope-smol`, `subscope-async-std`, or the `subscope` facade); this crate names none.
//!
//! # Serving
//! - [`Server::serve`] accepts from an [`rt::Listener`] and serves each connection in a
//!   task of the [`rt::Runtime`] (a timer and a spawner).
//! - [`Server::serve_io`] serves one byte stream you accepted yourself (the HTTP upgrade
//!   included), and resolves to why it ended.
//! - [`Server::serve_websocket`] serves a socket another HTTP server upgraded, through
//!   subscope's own [`WebSocket`] contract (`subscope-axum` does this for axum).
//! - [`Hooks`] decide who gets in ([`Hooks::on_connect`] sees the upgrade request's headers
//!   in [`ConnectionInfo`]) and observe every ending; [`Config`] holds the timeouts and
//!   limits; [`Gauges`] count everything, Prometheus text included.
//!
//! # Serving over a custom transport
//! Anything that moves [`websocket::Message`]s is a transport. Here, an in-memory one
//! (a test double, or the seam for a QUIC or in-process bridge) serves a real schema:
//!
//! ```
//! use std::pin::Pin;
//! use std::task::{Context, Poll};
//! use std::time::Instant;
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! use futures_lite::Stream;
//! use subscope_core::rt::{BoxSleep, BoxTask, Sleep, Spawn, Timer};
//! use subscope_core::websocket::{Message, WebSocketError};
//! use subscope_core::{CloseReason, Server, Subprotocol, UpgradeRequest};
//!
//! struct Query;
//! #[Object]
//! impl Query {
//!     async fn hello(&self) -> &str { "world" }
//! }
//!
//! /// Messages in from a channel, messages out to a channel.
//! struct Channels {
//!     inbound: Pin<Box<async_channel::Receiver<Message>>>,
//!     outbound: async_channel::Sender<Message>,
//! }
//! impl Stream for Channels {
//!     type Item = Result<Message, WebSocketError>;
//!     fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
//!         self.inbound.as_mut().poll_next(cx).map(|m| m.map(Ok))
//!     }
//! }
//! impl futures_sink::Sink<Message> for Channels {
//!     type Error = WebSocketError;
//!     fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
//!         Poll::Ready(Ok(()))
//!     }
//!     fn start_send(self: Pin<&mut Self>, m: Message) -> Result<(), Self::Error> {
//!         self.outbound.try_send(m).map_err(|_| WebSocketError::Closed)
//!     }
//!     fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
//!         Poll::Ready(Ok(()))
//!     }
//!     fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
//!         Poll::Ready(Ok(()))
//!     }
//! }
//!
//! /// A runtime whose sleeps never fire and which spawns nothing (this example needs neither).
//! #[derive(Clone)]
//! struct Inline;
//! struct Never;
//! impl Future for Never {
//!     type Output = ();
//!     fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> { Poll::Pending }
//! }
//! impl Sleep for Never {
//!     fn reset(self: Pin<&mut Self>, _: Instant) {}
//! }
//! impl Timer for Inline {
//!     fn now(&self) -> Instant { Instant::now() }
//!     fn sleep_until(&self, _: Instant) -> BoxSleep { Box::pin(Never) }
//! }
//! impl Spawn for Inline {
//!     fn spawn(&self, _: BoxTask) {}
//! }
//!
//! let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
//! let server = Server::builder(Inline, schema).build();
//! let (to_server, inbound) = async_channel::unbounded();
//! let (outbound, from_server) = async_channel::unbounded();
//! let connection = server.serve_websocket(
//!     Channels { inbound: Box::pin(inbound), outbound },
//!     Some(Subprotocol::GraphqlTransportWs),
//!     UpgradeRequest::default(),
//! );
//! let text = |t: &str| Message::Text(t.to_owned());
//! let client = async {
//!     to_server.send(text(r#"{"type":"connection_init"}"#)).await.unwrap();
//!     let query = r#"{"id":"1","type":"subscribe","payload":{"query":"{ hello }"}}"#;
//!     to_server.send(text(query)).await.unwrap();
//!     let mut got = Vec::new();
//!     for _ in 0..3 {
//!         got.push(from_server.recv().await.unwrap());
//!     }
//!     to_server.send(Message::Close(None)).await.unwrap();
//!     got
//! };
//! let (reason, got) = futures_lite::future::block_on(futures_lite::future::zip(connection, client));
//! assert_eq!(got[0], text(r#"{"type":"connection_ack"}"#));
//! assert_eq!(got[1], text(r#"{"id":"1","type":"next","payload":{"data":{"hello":"world"}}}"#));
//! assert_eq!(got[2], text(r#"{"id":"1","type":"complete"}"#));
//! assert_eq!(reason, CloseReason::ClientClosed { code: 1005, reason: String::new() });
//! ```
//!
//! # The guarantee
//! Every operation stream is dropped, and [`Hooks::on_complete`] has run for it, on every
//! way a connection can end: client `complete`/`stop`, stream end, close frame, EOF, TCP
//! reset, keepalive or write timeout, protocol violation, server shutdown, and the
//! connection future being dropped from outside (children are dropped synchronously in
//! that `Drop`). [`Server::shutdown`] returns only after every connection future is gone.
//! Outside it: `mem::forget`, tasks a resolver spawns itself, `panic = "abort"`, process
//! exit.
//!
//! # Design
//! A WebSocket connection is one future: `subscope-protocol`'s sans-IO state machine
//! driven by a hand-written poll loop (the session) that owns the socket, one resettable
//! sleep, and the connection's scope of operation streams (polled round-robin in the
//! connection's own task, each with its own waker). An HTTP stream's operations live in a
//! reservation its response body owns. Every transport takes each operation's outcome from
//! the one operation policy and only frames it. Nothing is spawned per operation, no wall
//! clock is read directly, and there is no TLS. `ARCHITECTURE.md` has the whole map.
//!
//! # Cancel safety
//! Dropping any future returned by [`Server`] drops what it owns, operations first.
//!
//! # Features
//! - `http` (default): the standalone server on hyper ([`Server::serve`],
//!   [`Server::serve_io`], the HTTP transports, [`Server::serve_http`] and
//!   [`Server::serve_upgrade`] for other hyper-based servers). Without it, a server is
//!   served through [`Server::serve_websocket`] on a socket another server upgraded.
//! - `deflate` (default): permessage-deflate ([`Config::deflate`], the `subscope-deflate`
//!   crate as [`deflate`]).
//!
//! No feature selects a runtime.
//!
//! # Stability
//! 0.x: breaking changes come with a minor version bump and a changelog entry. The public
//! enums and option structs are `#[non_exhaustive]`, so adding a close reason, an end
//! reason, a message kind or a setting is not a breaking change; match them with a `_`
//! arm. The wire behaviour is specified by `docs/PROTOCOL.md` section 4, and a change to
//! it is treated as breaking. async-graphql, async-tungstenite and http are public
//! dependencies (re-exported below); a major bump of one of them is a breaking release of
//! subscope.

#![deny(rustdoc::broken_intra_doc_links)]
// With a default feature off, the crate docs still name what it would bring.
#![cfg_attr(
    not(all(feature = "http", feature = "deflate")),
    allow(rustdoc::broken_intra_doc_links)
)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

mod bounds;
#[cfg(feature = "http")]
mod compression;
mod config;
mod documents;
mod gauges;
mod hooks;
mod lifecycle;
mod operation;
#[cfg(feature = "http")]
mod over_http;
#[cfg(feature = "http")]
mod reservations;
pub mod rt;
mod scope;
mod server;
mod sessions;
mod share;
mod share_key;
mod state;
mod sync;
#[cfg(feature = "tls")]
pub mod tls;
mod token;
pub mod topics;
mod variables;
pub mod websocket;
mod ws_session;

pub use config::Config;
pub use gauges::{GaugeSnapshot, Gauges};
pub use hooks::{Accept, ConnectionInfo, Hooks, NoHooks, Reject, Renewal, UpgradeRequest};
#[cfg(feature = "http")]
pub use over_http::{HttpBody, is_websocket_upgrade};
#[cfg(feature = "http")]
pub use server::Served;
pub use server::{HandshakeError, Server, ServerBuilder};
pub use sessions::Session;
pub use share_key::ShareKey;
pub use token::OperationToken;
pub use topics::{
    Delivery, EventId, Fanout, History, MemoryTopics, Missed, Overflow, Resume, Resumer,
    Subscription, Topics,
};
pub use websocket::WebSocket;

/// permessage-deflate (RFC 7692): the `subscope-deflate` crate.
#[cfg(feature = "deflate")]
pub use subscope_deflate as deflate;
pub use subscope_protocol::close;
pub use subscope_protocol::{
    CloseKind, CloseReason, EndReason, InvalidMessage, Rate, Subprotocol, Transport, negotiate,
    truncate_reason,
};

/// The GraphQL engine subscope executes with, re-exported so users name the same version.
#[doc(no_inline)]
pub use async_graphql;
/// The WebSocket implementation of the standalone server (see [`websocket::Tungstenite`]).
#[doc(no_inline)]
pub use async_tungstenite;
/// The HTTP types of [`UpgradeRequest`] and [`ConnectionInfo`].
#[doc(no_inline)]
pub use http;
