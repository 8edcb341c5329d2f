//! `graphql-ws`, the legacy Apollo protocol: its message names, and its policy of
//! reporting problems in-band (`connection_error`, `complete`) and keeping the socket open
//! where the protocol allows it.

use async_graphql::ServerError;
use serde_json::{Value, json};

use super::{Dialect, Duplicate, Reply};
use crate::CloseReason;
use crate::message::{
    Inbound, InvalidMessage, encode, encode_raw, parse_object, take_id, take_object_payload,
    take_request,
};

/// The legacy `graphql-ws` dialect.
#[derive(Debug)]
pub(crate) struct Legacy;

impl Dialect for Legacy {
    fn decode(&self, text: &str) -> Result<Inbound, InvalidMessage> {
        decode(text)
    }

    fn invalid(&self, kind: InvalidMessage) -> Reply {
        // Reported, and the socket stays open.
        Reply {
            frame: Some(connection_error(&format!(
                "Invalid message received: {kind}"
            ))),
            close: None,
        }
    }

    fn binary(&self) -> Reply {
        Reply::close(CloseReason::BinaryFrame)
    }

    fn second_init(&self) -> Reply {
        Reply::frame_then_close(
            connection_error("Too many initialisation requests"),
            CloseReason::TooManyInitRequests,
        )
    }

    fn ack(&self, payload: Option<&Value>) -> String {
        encode(None, "connection_ack", payload)
    }

    fn keepalive(&self) -> Option<String> {
        Some(ka())
    }

    fn rejected(&self, message: &str) -> Reply {
        Reply::frame_then_close(connection_error(message), CloseReason::LegacyInitRejected)
    }

    fn failed(&self) -> Reply {
        Reply::frame_then_close(
            connection_error("Internal server error"),
            CloseReason::LegacyInitFailed,
        )
    }

    fn duplicate(&self, id: &str) -> Duplicate {
        // The old operation stops (its `complete` first), then the new one starts.
        Duplicate::Replace(complete(id))
    }

    fn stopped(&self, id: &str) -> Option<String> {
        Some(complete(id))
    }

    fn pong(&self, _payload: Option<&Value>) -> Option<String> {
        // The legacy protocol has no `ping` message (it never decodes one).
        None
    }

    fn next(&self, id: &str, payload: &str) -> String {
        encode_raw(id, "data", payload)
    }

    fn error(&self, id: &str, errors: &[ServerError]) -> String {
        error(id, errors)
    }

    fn complete(&self, id: &str) -> String {
        complete(id)
    }
}

/// Decodes one client text frame. Modern-only and server-only types are invalid here.
fn decode(text: &str) -> Result<Inbound, InvalidMessage> {
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
        _ => Err(InvalidMessage::UnknownType),
    }
}

/// `connection_error` with `{"message": ...}`.
fn connection_error(message: &str) -> String {
    encode(
        None,
        "connection_error",
        Some(json!({ "message": message })),
    )
}

/// The keep-alive message.
fn ka() -> String {
    encode::<()>(None, "ka", None)
}

/// `error` carrying a single error object (the first one).
fn error(id: &str, errors: &[ServerError]) -> String {
    encode(Some(id), "error", errors.first())
}

/// `complete` for an operation that finished or was stopped.
fn complete(id: &str) -> String {
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
