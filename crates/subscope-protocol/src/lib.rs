//! The GraphQL subscription protocols of subscope, sans IO: no socket, no clock, no
//! runtime, no HTTP stack, no compression.
//!
//! - [`Machine`]: one WebSocket connection's protocol state (both subprotocols,
//!   `graphql-transport-ws` and the legacy `graphql-ws`, each a dialect of one machine),
//!   deterministic: inputs carry `now`, outputs are pulled.
//! - [`policy`]: the one operation policy every transport follows (what a request error, a
//!   refusal, an oversized response, a panic and the end of an operation become).
//! - [`http_frame`]: the framing of the HTTP transports (graphql-sse in both modes, Apollo
//!   multipart, plain GraphQL over HTTP) for the policy's verdicts.
//! - [`CloseReason`] / [`EndReason`]: why a connection or an operation ended, and the close
//!   frame each maps to.
//!
//! The wire behaviour is `docs/PROTOCOL.md` section 4 of the subscope repository; a change
//! to it is a breaking change. `subscope-core` drives all of this over real sockets; the
//! fuzz targets drive it directly.
//!
//! ```
//! use std::time::Instant;
//! use subscope_protocol::{ConnectOutcome, Machine, Output, Settings, Subprotocol};
//!
//! let now = Instant::now();
//! let mut machine = Machine::new(Subprotocol::GraphqlTransportWs, &Settings::default(), now);
//! machine.handle_text(now, r#"{"type":"connection_init"}"#);
//! assert!(matches!(machine.poll_output(), Some(Output::Connect { .. })));
//! machine.handle_connect(now, ConnectOutcome::Accepted(None));
//! match machine.poll_output() {
//!     Some(Output::Text(ack)) => assert_eq!(ack, r#"{"type":"connection_ack"}"#),
//!     other => panic!("{other:?}"),
//! }
//! ```

#![deny(rustdoc::broken_intra_doc_links)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

pub mod bounds;
pub mod close;
mod dialect;
pub mod http_frame;
pub mod machine;
mod message;
pub mod policy;
mod settings;
mod subprotocol;

pub use close::{CloseKind, CloseReason, EndReason, truncate_reason};
pub use machine::{ConnectOutcome, Machine, Output};
pub use message::InvalidMessage;
pub use policy::{OperationEvent, OperationState, Verdict};
pub use settings::{Rate, Settings};
pub use subprotocol::{Subprotocol, Transport, negotiate};

/// The GraphQL engine whose request and response types the protocol carries.
#[doc(no_inline)]
pub use async_graphql;
