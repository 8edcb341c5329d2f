//! The messages of both WebSocket subprotocols, subprotocol-neutral: parsing a client's
//! JSON, what can be wrong with it, and the outbound JSON envelope.

use async_graphql::Request;
use serde_json::{Map, Value};

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

/// What was wrong with an inbound message. Carried by [`crate::CloseReason::InvalidMessage`]
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
    /// An `id` longer than [`crate::Settings::max_id_length`].
    #[error("id too long")]
    IdTooLong,
    /// A `connection_init`/`ping`/`pong` payload that is not an object or null.
    #[error("payload must be an object or null")]
    BadPayload,
    /// A `connection_init` larger than [`crate::Settings::max_init_size`].
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

/// Parses the JSON object common to both protocols and returns it with its `type`.
pub(crate) fn parse_object(text: &str) -> Result<(Map<String, Value>, String), InvalidMessage> {
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
pub(crate) fn take_id(map: &mut Map<String, Value>) -> Result<String, InvalidMessage> {
    match map.remove("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id),
        _ => Err(InvalidMessage::BadId),
    }
}

/// An optional payload that must be an object or null when present.
pub(crate) fn take_object_payload(
    map: &mut Map<String, Value>,
) -> Result<Option<Value>, InvalidMessage> {
    match map.remove("payload") {
        None => Ok(None),
        Some(v @ (Value::Null | Value::Object(_))) => Ok(Some(v)),
        Some(_) => Err(InvalidMessage::BadPayload),
    }
}

/// The operation payload of `subscribe`/`start`, checked field by field.
pub(crate) fn take_request(map: &mut Map<String, Value>) -> Result<Box<Request>, InvalidMessage> {
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
