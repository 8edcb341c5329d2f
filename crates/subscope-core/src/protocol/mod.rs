//! The two subprotocols: negotiation, inbound decoding and outbound encoding.
//!
//! Each codec maps its own message names to one internal command and rejects
//! the other protocol's names; everything protocol-specific about the wire lives in
//! [`transport_ws`] and [`legacy`].

use std::borrow::Cow;

use async_graphql::{Request, Response, ServerError};
use serde_json::{Map, Value};

pub mod legacy;
pub mod transport_ws;

/// A GraphQL-over-WebSocket subprotocol, named by its `Sec-WebSocket-Protocol` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subprotocol {
    /// `graphql-transport-ws`: the current protocol (npm `graphql-ws` library).
    GraphqlTransportWs,
    /// `graphql-ws`: the legacy Apollo `subscriptions-transport-ws` protocol.
    GraphqlWs,
}

impl Subprotocol {
    /// Both subprotocols, modern first.
    pub const ALL: [Self; 2] = [Self::GraphqlTransportWs, Self::GraphqlWs];

    /// The `Sec-WebSocket-Protocol` token.
    pub fn token(self) -> &'static str {
        match self {
            Self::GraphqlTransportWs => "graphql-transport-ws",
            Self::GraphqlWs => "graphql-ws",
        }
    }

    /// The subprotocol with exactly this token (case-sensitive), if any.
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.token() == token)
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

/// Why an inbound text could not be decoded. The text is short and safe to show the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) Cow<'static, str>);

impl DecodeError {
    pub(crate) fn new(text: impl Into<Cow<'static, str>>) -> Self {
        Self(text.into())
    }
}

/// Parses the JSON object common to both protocols and returns it with its `type`.
fn parse_object(text: &str) -> Result<(Map<String, Value>, String), DecodeError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|_| DecodeError::new("Invalid message received: not JSON"))?;
    let Value::Object(mut map) = value else {
        return Err(DecodeError::new("Invalid message received: not an object"));
    };
    match map.remove("type") {
        Some(Value::String(ty)) if !ty.is_empty() => Ok((map, ty)),
        Some(_) => Err(DecodeError::new(
            "Invalid message received: type must be a non-empty string",
        )),
        None => Err(DecodeError::new("Invalid message received: missing type")),
    }
}

/// A required non-empty string `id`.
fn take_id(map: &mut Map<String, Value>) -> Result<String, DecodeError> {
    match map.remove("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id),
        _ => Err(DecodeError::new(
            "Invalid message received: id must be a non-empty string",
        )),
    }
}

/// An optional payload that must be an object or null when present.
fn take_object_payload(map: &mut Map<String, Value>) -> Result<Option<Value>, DecodeError> {
    match map.remove("payload") {
        None => Ok(None),
        Some(v @ (Value::Null | Value::Object(_))) => Ok(Some(v)),
        Some(_) => Err(DecodeError::new(
            "Invalid message received: payload must be an object or null",
        )),
    }
}

/// The operation payload of `subscribe`/`start`, checked field by field.
fn take_request(map: &mut Map<String, Value>) -> Result<Box<Request>, DecodeError> {
    let Some(Value::Object(mut payload)) = map.remove("payload") else {
        return Err(DecodeError::new(
            "Invalid message received: payload must be an object",
        ));
    };
    let Some(Value::String(query)) = payload.remove("query") else {
        return Err(DecodeError::new(
            "Invalid message received: query must be a string",
        ));
    };
    let mut request = Request::new(query);
    match payload.remove("operationName") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => request = request.operation_name(name),
        Some(_) => {
            return Err(DecodeError::new(
                "Invalid message received: operationName must be a string or null",
            ));
        }
    }
    match payload.remove("variables") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Object(_)) => {
            request = request.variables(async_graphql::Variables::from_json(v));
        }
        Some(_) => {
            return Err(DecodeError::new(
                "Invalid message received: variables must be an object or null",
            ));
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
            return Err(DecodeError::new(
                "Invalid message received: extensions must be an object or null",
            ));
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

/// The errors sent when the per-connection subscription limit is reached.
/// The error an operation ends with when a response exceeds `max_response_size`.
pub(crate) fn too_large_error() -> Vec<ServerError> {
    vec![ServerError::new("Response too large", None)]
}

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
