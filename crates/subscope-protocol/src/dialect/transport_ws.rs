//! `graphql-transport-ws`, the current protocol: its message names, and its policy of
//! closing the socket with a specific code for every protocol violation.

use async_graphql::ServerError;
use serde_json::Value;

use super::{Dialect, Duplicate, Reply};
use crate::CloseReason;
use crate::message::{
    Inbound, InvalidMessage, encode, encode_raw, parse_object, take_id, take_object_payload,
    take_request,
};

/// The `graphql-transport-ws` dialect.
#[derive(Debug)]
pub(crate) struct TransportWs;

impl Dialect for TransportWs {
    fn decode(&self, text: &str) -> Result<Inbound, InvalidMessage> {
        decode(text)
    }

    fn invalid(&self, kind: InvalidMessage) -> Reply {
        // The close reason is the reference text; the kind goes to hooks and the log.
        tracing::debug!(detail = %kind, "invalid message");
        Reply::close(CloseReason::InvalidMessage(kind))
    }

    fn binary(&self) -> Reply {
        self.invalid(InvalidMessage::Binary)
    }

    fn second_init(&self) -> Reply {
        Reply::close(CloseReason::TooManyInitRequests)
    }

    fn ack(&self, payload: Option<&Value>) -> String {
        encode(None, "connection_ack", payload)
    }

    fn keepalive(&self) -> Option<String> {
        // Liveness is WebSocket ping/pong; the subprotocol has no keep-alive message.
        None
    }

    fn rejected(&self, _message: &str) -> Reply {
        Reply::close(CloseReason::Forbidden)
    }

    fn failed(&self) -> Reply {
        Reply::close(CloseReason::InternalError)
    }

    fn duplicate(&self, id: &str) -> Duplicate {
        Duplicate::Close(CloseReason::DuplicateOperationId(id.to_owned()))
    }

    fn stopped(&self, _id: &str) -> Option<String> {
        // The client's `complete` needs no answer.
        None
    }

    fn pong(&self, payload: Option<&Value>) -> Option<String> {
        Some(pong(payload))
    }

    fn next(&self, id: &str, payload: &str) -> String {
        encode_raw(id, "next", payload)
    }

    fn error(&self, id: &str, errors: &[ServerError]) -> String {
        encode(Some(id), "error", Some(errors))
    }

    fn complete(&self, id: &str) -> String {
        complete(id)
    }
}

/// Decodes one client text frame. Server-only and legacy-only types are invalid here.
fn decode(text: &str) -> Result<Inbound, InvalidMessage> {
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
        _ => Err(InvalidMessage::UnknownType),
    }
}

/// `pong`, echoing the ping's payload (no key when the ping had none).
fn pong(payload: Option<&Value>) -> String {
    encode(None, "pong", payload)
}

/// `complete` for an operation that finished.
fn complete(id: &str) -> String {
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
