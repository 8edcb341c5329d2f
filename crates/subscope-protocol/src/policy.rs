//! The one operation policy: what each thing an operation yields becomes, on every
//! transport.
//!
//! WebSocket (both subprotocols), SSE (both modes), multipart and plain GraphQL over HTTP
//! feed the events of an operation through [`decide`] and only *frame* the [`Verdict`]: a
//! request error, a refusal (an empty one included), an oversized response, a panic and
//! the end are decided here once, so the same input gives the same outcome everywhere.

use std::borrow::Cow;

use async_graphql::{Response, ServerError};

use crate::EndReason;

/// Something an operation yielded, as a transport saw it.
#[derive(Debug, Clone, Copy)]
#[allow(clippy::exhaustive_enums)] // every consumer must handle each one: adding one is breaking
pub enum OperationEvent<'a> {
    /// One execution result.
    Response(&'a Response),
    /// One execution result already serialized (a shared execution's event).
    Serialized(&'a str),
    /// A shared execution failed before executing, with these errors.
    RequestError(&'a [ServerError]),
    /// `on_subscribe` refused the operation with these errors (possibly none).
    Refused(&'a [ServerError]),
    /// The stream ended by itself.
    Finished,
    /// The stream panicked (it has been dropped).
    Panicked,
}

/// What the transport must tell its peer about an operation.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::exhaustive_enums)] // every consumer must handle each one: adding one is breaking
pub enum Verdict<'a> {
    /// A result to send: the JSON of an execution result. The operation goes on.
    Next(Cow<'a, str>),
    /// The operation is over: stop its stream (if still live), end it with `reason`, and
    /// tell the peer `errors` (non-empty) in the transport's way; no `complete` follows on
    /// WebSocket.
    Fail {
        /// Why it ended, as `on_complete` sees it.
        reason: EndReason,
        /// What the peer is told.
        errors: Vec<ServerError>,
    },
    /// The operation finished by itself: tell the peer it is complete.
    Complete,
}

/// What the policy remembers of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperationState {
    /// Whether a result has been delivered (an error-only result after that is an event,
    /// not a request error).
    streaming: bool,
}

impl OperationState {
    /// A fresh operation: no result delivered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a result has been delivered.
    pub fn is_streaming(self) -> bool {
        self.streaming
    }
}

/// Decides what `event` of an operation in `state` becomes. `max_response_size` bounds
/// the JSON of one result (the execution result itself, not a transport's envelope, so
/// the limit means the same on every transport).
pub fn decide<'a>(
    state: &mut OperationState,
    event: OperationEvent<'a>,
    max_response_size: usize,
) -> Verdict<'a> {
    let payload: Cow<'a, str> = match event {
        OperationEvent::Response(response) => {
            if !state.streaming && is_request_error(response) {
                // Failed before execution (syntax, validation, unknown operation).
                return Verdict::Fail {
                    reason: EndReason::RequestError,
                    errors: response.errors.clone(),
                };
            }
            Cow::Owned(result_json(response))
        }
        OperationEvent::Serialized(json) => Cow::Borrowed(json),
        OperationEvent::RequestError(errors) => {
            return Verdict::Fail {
                reason: EndReason::RequestError,
                errors: non_empty(errors),
            };
        }
        OperationEvent::Refused(errors) => {
            return Verdict::Fail {
                reason: EndReason::Refused,
                errors: non_empty(errors),
            };
        }
        OperationEvent::Finished => return Verdict::Complete,
        OperationEvent::Panicked => {
            // The caller logs it with its connection and id.
            return Verdict::Fail {
                reason: EndReason::Panicked,
                errors: internal_error(),
            };
        }
    };
    if payload.len() > max_response_size {
        tracing::warn!(
            bytes = payload.len(),
            limit = max_response_size,
            "response larger than max_response_size: operation ended"
        );
        return Verdict::Fail {
            reason: EndReason::ResponseTooLarge,
            errors: too_large_error(),
        };
    }
    state.streaming = true;
    Verdict::Next(payload)
}

/// A refusal or failure with no errors still tells the peer something.
fn non_empty(errors: &[ServerError]) -> Vec<ServerError> {
    if errors.is_empty() {
        internal_error()
    } else {
        errors.to_vec()
    }
}

/// The JSON of an execution result.
pub fn result_json(response: &Response) -> String {
    serde_json::to_string(response)
        .unwrap_or_else(|_| r#"{"errors":[{"message":"Internal server error"}]}"#.to_owned())
}

/// Whether the first response of an operation reports a request error found before
/// execution (syntax, validation, unknown operation): no data, and no error carries a
/// resolver path.
pub fn is_request_error(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// The errors sent when a child stream panicked.
pub fn internal_error() -> Vec<ServerError> {
    vec![ServerError::new("Internal server error", None)]
}

/// The error an operation ends with when a response exceeds `max_response_size`.
pub fn too_large_error() -> Vec<ServerError> {
    vec![ServerError::new("Response too large", None)]
}

/// The errors sent when the per-connection subscription limit is reached.
pub fn limit_error() -> Vec<ServerError> {
    vec![ServerError::new("Subscription limit reached", None)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_error() -> Response {
        Response::from_errors(vec![ServerError::new("Unknown field", None)])
    }

    #[test]
    fn request_error_only_before_the_first_result() {
        let mut state = OperationState::new();
        let failed = request_error();
        let verdict = decide(&mut state, OperationEvent::Response(&failed), 1024);
        assert!(matches!(
            verdict,
            Verdict::Fail {
                reason: EndReason::RequestError,
                ..
            }
        ));
        let mut state = OperationState::new();
        let ok = Response::new(async_graphql::Value::from(1));
        assert!(matches!(
            decide(&mut state, OperationEvent::Response(&ok), 1024),
            Verdict::Next(_)
        ));
        assert!(state.is_streaming());
        // The same error-only result is now an event of a running subscription.
        assert!(matches!(
            decide(&mut state, OperationEvent::Response(&failed), 1024),
            Verdict::Next(_)
        ));
    }

    #[test]
    fn an_empty_refusal_is_an_internal_error() {
        let verdict = decide(
            &mut OperationState::new(),
            OperationEvent::Refused(&[]),
            1024,
        );
        assert_eq!(
            verdict,
            Verdict::Fail {
                reason: EndReason::Refused,
                errors: internal_error()
            }
        );
    }

    #[test]
    fn the_limit_bounds_the_result_itself() {
        let json = r#"{"data":{"x":"0123456789"}}"#;
        let mut state = OperationState::new();
        assert_eq!(
            decide(&mut state, OperationEvent::Serialized(json), json.len()),
            Verdict::Next(Cow::Borrowed(json))
        );
        assert_eq!(
            decide(&mut state, OperationEvent::Serialized(json), json.len() - 1),
            Verdict::Fail {
                reason: EndReason::ResponseTooLarge,
                errors: too_large_error()
            }
        );
    }

    #[test]
    fn panics_and_ends() {
        let mut state = OperationState::new();
        assert_eq!(
            decide(&mut state, OperationEvent::Panicked, 1),
            Verdict::Fail {
                reason: EndReason::Panicked,
                errors: internal_error()
            }
        );
        assert_eq!(
            decide(&mut state, OperationEvent::Finished, 1),
            Verdict::Complete
        );
    }
}
