//! `graphql-transport-ws`: the message names of the current protocol.

use async_graphql::{Response, ServerError};
use serde_json::Value;

use super::{
    DecodeError, Inbound, encode, parse_object, take_id, take_object_payload, take_request,
};

/// Decodes one client text frame. Server-only and legacy-only types are invalid here.
pub(crate) fn decode(text: &str) -> Result<Inbound, DecodeError> {
    let (mut map, ty) = parse_object(text)?;
    match ty.as_str() {
        "connection_init" => Ok(Inbound::Init {
            payload: take_object_payload(&mut map)?,
        }),
        "ping" => Ok(Inbound::Ping {
            payload: take_object_payload(&mut map)?,
        }),
        "pong" => {
            take_object_payload(&mut map)?;
            Ok(Inbound::Pong)
        }
        "subscribe" => {
            let id = take_id(&mut map)?;
            let request = take_request(&mut map)?;
            Ok(Inbound::Subscribe { id, request })
        }
        "complete" => Ok(Inbound::Complete {
            id: take_id(&mut map)?,
        }),
        _ => Err(DecodeError::new(
            "Invalid message received: unknown message type",
        )),
    }
}

/// `connection_ack`, with the hook's payload when it gave one.
pub(crate) fn ack(payload: Option<&Value>) -> String {
    encode(None, "connection_ack", payload)
}

/// `pong`, echoing the ping's payload (no key when the ping had none).
pub(crate) fn pong(payload: Option<&Value>) -> String {
    encode(None, "pong", payload)
}

/// `next` carrying one execution result.
pub(crate) fn next(id: &str, response: &Response) -> String {
    encode(Some(id), "next", Some(response))
}

/// `error` carrying a non-empty array of errors.
pub(crate) fn error(id: &str, errors: &[ServerError]) -> String {
    encode(Some(id), "error", Some(errors))
}

/// `complete` for an operation that finished.
pub(crate) fn complete(id: &str) -> String {
    encode::<()>(Some(id), "complete", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_server_and_legacy_types() {
        for text in [
            r#"{"type":"next","id":"1","payload":{}}"#,
            r#"{"type":"error","id":"1","payload":[]}"#,
            r#"{"type":"connection_ack"}"#,
            r#"{"type":"start","id":"1","payload":{"query":"{a}"}}"#,
            r#"{"type":"stop","id":"1"}"#,
            r#"{"type":"connection_terminate"}"#,
            r#"{"type":"ka"}"#,
            r#"{"type":""}"#,
            r#"{"id":"1"}"#,
            r#"[1]"#,
            r#"nope"#,
            r#"{"type":"subscribe","id":"","payload":{"query":"{a}"}}"#,
            r#"{"type":"connection_init","payload":"token"}"#,
            r#"{"type":"complete","id":5}"#,
        ] {
            assert!(decode(text).is_err(), "{text}");
        }
    }

    #[test]
    fn pong_echoes_payload_presence() {
        assert_eq!(pong(None), r#"{"type":"pong"}"#);
        let p = serde_json::json!({"a":1});
        assert_eq!(pong(Some(&p)), r#"{"type":"pong","payload":{"a":1}}"#);
        match decode(r#"{"type":"ping","payload":null}"#) {
            Ok(Inbound::Ping { payload }) => assert_eq!(payload, Some(Value::Null)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn complete_has_id_and_no_payload() {
        assert_eq!(complete("a\"b"), r#"{"id":"a\"b","type":"complete"}"#);
    }
}
