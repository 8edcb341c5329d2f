//! The subprotocols: negotiation, the shared message parsing, and the [`Dialect`] each
//! subprotocol implements in its own module.
//!
//! A dialect is a subprotocol's codec *and* its policy: how it names messages, and how it
//! answers what differs between subprotocols (an invalid message, a reused id, a `stop`,
//! a rejected init, keep-alive messages). The state machine asks the dialect and never
//! branches on the subprotocol, so a third subprotocol is one new module here.

use async_graphql::{Request, Response, ServerError};
use serde_json::{Map, Value};

use crate::CloseReason;

mod legacy;
mod transport_ws;

pub(crate) use legacy::Legacy;
pub(crate) use transport_ws::TransportWs;

/// The protocol a connection speaks: one of the two GraphQL-over-WebSocket subprotocols
/// (named by their `Sec-WebSocket-Protocol` token), or one of the HTTP transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subprotocol {
    /// `graphql-transport-ws`: the current protocol (npm `graphql-ws` library).
    GraphqlTransportWs,
    /// `graphql-ws`: the legacy Apollo `subscriptions-transport-ws` protocol.
    GraphqlWs,
    /// GraphQL over Server-Sent Events (the `graphql-sse` protocol, either mode).
    GraphqlSse,
    /// Apollo's multipart HTTP subscriptions.
    Multipart,
    /// Plain GraphQL over HTTP (one request, one JSON response).
    GraphqlHttp,
}

impl Subprotocol {
    /// Both subprotocols, modern first.
    pub const ALL: [Self; 2] = [Self::GraphqlTransportWs, Self::GraphqlWs];

    /// The `Sec-WebSocket-Protocol` token (for the HTTP transports, a name for logs:
    /// `graphql-sse`, `multipart`, `graphql-http`).
    pub fn token(self) -> &'static str {
        match self {
            Self::GraphqlTransportWs => "graphql-transport-ws",
            Self::GraphqlWs => "graphql-ws",
            Self::GraphqlSse => "graphql-sse",
            Self::Multipart => "multipart",
            Self::GraphqlHttp => "graphql-http",
        }
    }

    /// Whether this is a WebSocket subprotocol (rather than an HTTP transport).
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::GraphqlTransportWs | Self::GraphqlWs)
    }

    /// The WebSocket subprotocol with exactly this token (case-sensitive), if any.
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.token() == token)
    }

    /// The codec and policy of this subprotocol.
    pub(crate) fn dialect(self) -> &'static dyn Dialect {
        match self {
            Self::GraphqlWs => &Legacy,
            // Only WebSocket connections have a state machine; HTTP never asks.
            _ => &TransportWs,
        }
    }
}

impl std::fmt::Display for Subprotocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.token())
    }
}

/// Picks the subprotocol for a handshake: the first token the client offered (in its
/// order, across every `Sec-WebSocket-Protocol` header line) that is in `enabled`.
/// Matching is exact and case-sensitive; whitespace around commas is ignored.
///
/// ```
/// use subscope_core::{negotiate, Subprotocol};
/// let all = &Subprotocol::ALL;
/// assert_eq!(negotiate(["graphql-ws, graphql-transport-ws"], all), Some(Subprotocol::GraphqlWs));
/// assert_eq!(negotiate(["foo", " graphql-transport-ws "], all), Some(Subprotocol::GraphqlTransportWs));
/// assert_eq!(negotiate(["graphql-TransPort-ws"], all), None);
/// ```
pub fn negotiate<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    enabled: &[Subprotocol],
) -> Option<Subprotocol> {
    header_values
        .into_iter()
        .flat_map(|line| line.split(','))
        .filter_map(|token| Subprotocol::from_token(token.trim()))
        .find(|p| enabled.contains(p))
}

/// One client message, protocol-neutral.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// `connection_init`.
    Init { payload: Option<Value> },
    /// `ping` (modern only); `payload` is `Some` when the key was present.
    Ping { payload: Option<Value> },
    /// `pong` (modern only).
    Pong,
    /// `subscribe` (modern) or `start` (legacy).
    Subscribe { id: String, request: Box<Request> },
    /// `complete` (modern) or `stop` (legacy).
    Complete { id: String },
    /// `connection_terminate` (legacy only).
    Terminate,
}

/// What was wrong with an inbound message. Carried by [`CloseReason::InvalidMessage`]
/// (the close reason on the wire stays `Invalid message received`) and, on the legacy
/// subprotocol, shown in the `connection_error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMessage {
    /// The text is not JSON.
    #[error("not JSON")]
    NotJson,
    /// The JSON is not an object.
    #[error("not an object")]
    NotAnObject,
    /// No `type` field.
    #[error("missing type")]
    MissingType,
    /// `type` is not a non-empty string.
    #[error("type must be a non-empty string")]
    BadType,
    /// A `type` this subprotocol does not accept from a client.
    #[error("unknown message type")]
    UnknownType,
    /// `id` is missing or not a non-empty string.
    #[error("id must be a non-empty string")]
    BadId,
    /// An `id` longer than [`crate::Config::max_id_length`].
    #[error("id too long")]
    IdTooLong,
    /// A `connection_init`/`ping`/`pong` payload that is not an object or null.
    #[error("payload must be an object or null")]
    BadPayload,
    /// A `connection_init` larger than [`crate::Config::max_init_size`].
    #[error("connection_init too large")]
    InitTooLarge,
    /// A `subscribe`/`start` payload that is not an object.
    #[error("payload must be an object")]
    BadOperation,
    /// `query` is missing or not a string.
    #[error("query must be a string")]
    BadQuery,
    /// `operationName` is not a string or null.
    #[error("operationName must be a string or null")]
    BadOperationName,
    /// `variables` is not an object or null.
    #[error("variables must be an object or null")]
    BadVariables,
    /// `extensions` is not an object or null.
    #[error("extensions must be an object or null")]
    BadExtensions,
    /// A binary frame (subscope's subprotocols are text-only).
    #[error("binary frame")]
    Binary,
    /// A text frame that is not valid UTF-8.
    #[error("text frame is not valid UTF-8")]
    InvalidUtf8,
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
    /// One execution result.
    fn next(&self, id: &str, response: &Response) -> String;
    /// One execution result already serialized (a shared execution's event).
    fn next_raw(&self, id: &str, payload: &str) -> String;
    /// An operation's errors (non-empty).
    fn error(&self, id: &str, errors: &[ServerError]) -> String;
    /// An operation that finished by itself.
    fn complete(&self, id: &str) -> String;
}

/// Parses the JSON object common to both protocols and returns it with its `type`.
fn parse_object(text: &str) -> Result<(Map<String, Value>, String), InvalidMessage> {
    let value: Value = serde_json::from_str(text).map_err(|_| InvalidMessage::NotJson)?;
    let Value::Object(mut map) = value else {
        return Err(InvalidMessage::NotAnObject);
    };
    match map.remove("type") {
        Some(Value::String(ty)) if !ty.is_empty() => Ok((map, ty)),
        Some(_) => Err(InvalidMessage::BadType),
        None => Err(InvalidMessage::MissingType),
    }
}

/// A required non-empty string `id`.
fn take_id(map: &mut Map<String, Value>) -> Result<String, InvalidMessage> {
    match map.remove("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id),
        _ => Err(InvalidMessage::BadId),
    }
}

/// An optional payload that must be an object or null when present.
fn take_object_payload(map: &mut Map<String, Value>) -> Result<Option<Value>, InvalidMessage> {
    match map.remove("payload") {
        None => Ok(None),
        Some(v @ (Value::Null | Value::Object(_))) => Ok(Some(v)),
        Some(_) => Err(InvalidMessage::BadPayload),
    }
}

/// The operation payload of `subscribe`/`start`, checked field by field.
fn take_request(map: &mut Map<String, Value>) -> Result<Box<Request>, InvalidMessage> {
    let Some(Value::Object(mut payload)) = map.remove("payload") else {
        return Err(InvalidMessage::BadOperation);
    };
    let Some(Value::String(query)) = payload.remove("query") else {
        return Err(InvalidMessage::BadQuery);
    };
    let mut request = Request::new(query);
    match payload.remove("operationName") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => request = request.operation_name(name),
        Some(_) => {
            return Err(InvalidMessage::BadOperationName);
        }
    }
    match payload.remove("variables") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Object(_)) => {
            request = request.variables(async_graphql::Variables::from_json(v));
        }
        Some(_) => {
            return Err(InvalidMessage::BadVariables);
        }
    }
    match payload.remove("extensions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ext)) => {
            for (key, value) in ext {
                let value = async_graphql::Value::from_json(value).unwrap_or_default();
                request.extensions.insert(key, value);
            }
        }
        Some(_) => {
            return Err(InvalidMessage::BadExtensions);
        }
    }
    Ok(Box::new(request))
}

/// Whether the first response of an operation reports a request error found before
/// execution (syntax, validation, unknown operation): no data, and no error carries a
/// resolver path.
pub(crate) fn is_request_error(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// The errors sent when a child stream panicked.
pub(crate) fn internal_error() -> Vec<ServerError> {
    vec![ServerError::new("Internal server error", None)]
}

/// The error an operation ends with when a response exceeds `max_response_size`.
pub(crate) fn too_large_error() -> Vec<ServerError> {
    vec![ServerError::new("Response too large", None)]
}

/// The errors sent when the per-connection subscription limit is reached.
pub(crate) fn limit_error() -> Vec<ServerError> {
    vec![ServerError::new("Subscription limit reached", None)]
}

/// An outbound JSON message: `{"id"?, "type", "payload"?}`.
#[derive(serde::Serialize)]
struct Envelope<'a, P: serde::Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<P>,
}

/// `{"id":<id>,"type":<ty>,"payload":<payload>}` around JSON serialized elsewhere; the
/// same bytes `encode` writes for the same payload.
pub(crate) fn encode_raw(id: &str, ty: &'static str, payload: &str) -> String {
    let id = serde_json::to_string(id).unwrap_or_default();
    let mut out = String::with_capacity(id.len() + ty.len() + payload.len() + 32);
    out.push_str("{\"id\":");
    out.push_str(&id);
    out.push_str(",\"type\":\"");
    out.push_str(ty);
    out.push_str("\",\"payload\":");
    out.push_str(payload);
    out.push('}');
    out
}

pub(crate) fn encode<P: serde::Serialize>(
    id: Option<&str>,
    ty: &'static str,
    payload: Option<P>,
) -> String {
    // Serialising plain data into a String cannot fail (no map with non-string keys).
    serde_json::to_string(&Envelope { id, ty, payload }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_merges_lines_and_keeps_client_order() {
        let all = &Subprotocol::ALL;
        assert_eq!(
            negotiate(["x", "graphql-ws", "graphql-transport-ws"], all),
            Some(Subprotocol::GraphqlWs)
        );
        assert_eq!(
            negotiate(
                ["graphql-ws,graphql-transport-ws"],
                &[Subprotocol::GraphqlTransportWs]
            ),
            Some(Subprotocol::GraphqlTransportWs)
        );
        assert_eq!(negotiate(["graphql-transport-wsgibberish"], all), None);
        assert_eq!(negotiate(std::iter::empty(), all), None);
    }

    #[test]
    fn request_payload_is_checked_strictly() {
        let mut ok = serde_json::json!({"payload": {"query": "{a}", "operationName": null,
            "variables": {"x": 1}, "extensions": {"e": true}}})
        .as_object()
        .cloned()
        .unwrap_or_default();
        let req = take_request(&mut ok).expect("valid");
        assert_eq!(req.query, "{a}");
        assert!(req.extensions.contains_key("e"));
        for bad in [
            serde_json::json!({"payload": {"query": 1}}),
            serde_json::json!({"payload": {"query": "{a}", "variables": []}}),
            serde_json::json!({"payload": {"query": "{a}", "operationName": 3}}),
            serde_json::json!({"payload": "x"}),
            serde_json::json!({}),
        ] {
            let mut map = bad.as_object().cloned().unwrap_or_default();
            assert!(take_request(&mut map).is_err(), "{bad}");
        }
    }
}
