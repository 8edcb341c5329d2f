//! The runtime-free engine of subscope: GraphQL subscriptions over WebSocket that never
//! leak.
//!
//! subscope speaks both GraphQL-over-WebSocket subprotocols, `graphql-transport-ws` and the
//! legacy `graphql-ws`, exactly as `docs/PROTOCOL.md` section 4 specifies, and executes
//! operations through [`async_graphql::Executor::execute_stream`] (static or dynamic
//! schemas). Pick a runtime through an adapter crate (`subscope-tokio`, or the `subscope`
//! facade); this crate names none.
//!
//! # Design overview
//! - [`protocol`]: the two codecs and subprotocol negotiation.
//! - [`Machine`]: the per-connection state machine, sans IO: events in, frames, hook
//!   calls, operation starts/stops and deadlines out. No socket, clock or future.
//! - [`ChildSet`]: the scope that owns a connection's operation streams inside the
//!   connection future, polled round-robin with a budget, each with its own waker.
//! - The driver (private) runs one connection: it owns the socket, the scope and one
//!   timer, in a single hand-written poll loop; [`Server`] adds the accept loop, the
//!   handshake, connection tracking and graceful shutdown.
//! - [`rt`]: the seam adapters implement ([`rt::Timer`], [`rt::Runtime`]).
//!
//! It does not spawn tasks for operations, read the wall clock directly, or do TLS.
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
//! # Cancel safety
//! Dropping any future returned by [`Server`] drops what it owns, operations first.

pub mod children;
pub mod close;
pub mod config;
pub mod driver;
pub mod gauges;
pub mod hooks;
pub mod machine;
mod operation;
pub mod protocol;
pub mod rt;
pub mod server;
mod sync;
pub mod topics;
mod variables;

pub use children::{ChildEvent, ChildScope, ChildSet};
pub use close::{CloseKind, CloseReason, truncate_reason};
pub use config::{Config, Rate};
pub use driver::Transport;
pub use gauges::{GaugeSnapshot, Gauges};
pub use hooks::{Accept, ConnectionInfo, EndReason, Hooks, NoHooks, Reject};
pub use machine::{ConnectOutcome, Machine, Output};
pub use operation::OperationToken;
pub use protocol::{Subprotocol, negotiate};
pub use server::{HandshakeError, Server, ServerBuilder, handshake, websocket_config};
pub use topics::{Delivery, Fanout, MemoryTopics, Missed, Overflow, Subscription, Topics};

/// Re-exported so users name the same versions subscope uses.
pub use async_graphql;
pub use async_tungstenite;
