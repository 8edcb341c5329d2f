//! `graphql-ws`: the message names of the legacy Apollo protocol.

use async_graphql::{Response, ServerError};
use serde_json::{Value, json};

use super::{
    DecodeError, Inbound, encode, parse_object, take_id, take_object_payload, take_request,
};

/// Decodes one client text frame. Modern-only and server-only types are invalid here.
pub(crate) fn decode(text: &str) -> Result<Inbound, DecodeError> {
    let (mut map, ty) = parse_object(text)?;
    match ty.as_str() {
        // Some legacy clients put an id on connection_init; it is ignored.
        "connection_init" => Ok(Inbound::Init {
            payload: take_object_payload(&mut map)?,
        }),
        "start" => {
            let id = take_id(&mut map)?;
            let request = take_request(&mut map)?;
            Ok(Inbound::Subscribe { id, request })
        }
        "stop" => Ok(Inbound::Complete {
            id: take_id(&mut map)?,
        }),
        "connection_terminate" => Ok(Inbound::Terminate),
        _ => Err(DecodeError::new(
            "Invalid message received: unknown message type",
        )),
    }
}

/// `connection_ack`, with the hook's payload when it gave one.
pub(crate) fn ack(payload: Option<&Value>) -> String {
    encode(None, "connection_ack", payload)
}

/// `connection_error` with `{"message": ...}`.
pub(crate) fn connection_error(message: &str) -> String {
    encode(
        None,
        "connection_error",
        Some(json!({ "message": message })),
    )
}

/// The keep-alive message.
pub(crate) fn ka() -> String {
    encode::<()>(None, "ka", None)
}

/// `data` carrying one execution result.
pub(crate) fn data(id: &str, response: &Response) -> String {
    encode(Some(id), "data", Some(response))
}

/// `error` carrying a single error object (the first one).
pub(crate) fn error(id: &str, errors: &[ServerError]) -> String {
    encode(Some(id), "error", errors.first())
}

/// `complete` for an operation that finished or was stopped.
pub(crate) fn complete(id: &str) -> String {
    encode::<()>(Some(id), "complete", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_modern_types() {
        for text in [
            r#"{"type":"subscribe","id":"1","payload":{"query":"{a}"}}"#,
            r#"{"type":"complete","id":"1"}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"pong"}"#,
            r#"{"type":"data","id":"1","payload":{}}"#,
        ] {
            assert!(decode(text).is_err(), "{text}");
        }
        assert!(matches!(
            decode(r#"{"type":"connection_terminate"}"#),
            Ok(Inbound::Terminate)
        ));
    }

    #[test]
    fn error_is_a_single_object() {
        let errs = vec![ServerError::new("boom", None)];
        assert_eq!(
            error("7", &errs),
            r#"{"id":"7","type":"error","payload":{"message":"boom"}}"#
        );
        assert_eq!(ka(), r#"{"type":"ka"}"#);
    }
}
