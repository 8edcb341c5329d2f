//! The [`Dialect`] each WebSocket subprotocol implements in its own module.
//!
//! A dialect is a subprotocol's codec *and* its WebSocket-specific policy: how it names
//! messages, and how it answers what differs between subprotocols (an invalid message, a
//! reused id, a `stop`, a rejected init, keep-alive messages). The state machine asks the
//! dialect and never branches on the subprotocol, so a third subprotocol is one new module
//! here. What happens to an *operation* is not a dialect's call: that is
//! [`crate::policy`], shared with the HTTP transports.

use async_graphql::ServerError;
use serde_json::Value;

use crate::message::{Inbound, InvalidMessage};
use crate::{CloseReason, Subprotocol};

mod legacy;
mod transport_ws;

use legacy::Legacy;
use transport_ws::TransportWs;

/// The codec and policy of `protocol`.
pub(crate) fn of(protocol: Subprotocol) -> &'static dyn Dialect {
    match protocol {
        Subprotocol::GraphqlWs => &Legacy,
        Subprotocol::GraphqlTransportWs => &TransportWs,
    }
}

/// What a dialect answers: a frame to send first, then perhaps the close.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub(crate) frame: Option<String>,
    pub(crate) close: Option<CloseReason>,
}

impl Reply {
    pub(crate) fn close(reason: CloseReason) -> Self {
        Self {
            frame: None,
            close: Some(reason),
        }
    }

    pub(crate) fn frame_then_close(frame: String, reason: CloseReason) -> Self {
        Self {
            frame: Some(frame),
            close: Some(reason),
        }
    }
}

/// What happens to a `subscribe` whose id is live.
#[derive(Debug)]
pub(crate) enum Duplicate {
    /// The connection closes.
    Close(CloseReason),
    /// The live operation is stopped (this frame tells the client), and the new one starts.
    Replace(String),
}

/// A subprotocol's codec and policy; see the module docs.
pub(crate) trait Dialect: Sync {
    /// One client text frame.
    fn decode(&self, text: &str) -> Result<Inbound, InvalidMessage>;
    /// The answer to an invalid message (a too-long id or init included).
    fn invalid(&self, kind: InvalidMessage) -> Reply;
    /// The answer to a binary frame.
    fn binary(&self) -> Reply;
    /// The answer to a second `connection_init`.
    fn second_init(&self) -> Reply;
    /// `connection_ack`, with the hook's payload.
    fn ack(&self, payload: Option<&Value>) -> String;
    /// The keep-alive message sent at the ack and every keepalive interval, if the
    /// subprotocol has one.
    fn keepalive(&self) -> Option<String>;
    /// The answer to an init `on_connect` refused.
    fn rejected(&self, message: &str) -> Reply;
    /// The answer to an init `on_connect` failed on (an error or a panic).
    fn failed(&self) -> Reply;
    /// The answer to a `subscribe` whose id is live.
    fn duplicate(&self, id: &str) -> Duplicate;
    /// The answer to the client's `complete`/`stop` of a live operation, if any.
    fn stopped(&self, id: &str) -> Option<String>;
    /// The answer to a protocol-level `ping`.
    fn pong(&self, payload: Option<&Value>) -> Option<String>;
    /// One execution result, already serialized (`payload` is its JSON).
    fn next(&self, id: &str, payload: &str) -> String;
    /// An operation's errors (non-empty).
    fn error(&self, id: &str, errors: &[ServerError]) -> String;
    /// An operation that finished by itself.
    fn complete(&self, id: &str) -> String;
}
