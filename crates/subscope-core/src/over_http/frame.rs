//! The bytes of each event on the wire: SSE events and Apollo multipart parts.

use async_graphql::{Response, ServerError};
use bytes::Bytes;

/// How a stream's events are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// graphql-sse, distinct connections: one operation, `next` with the result.
    Sse,
    /// graphql-sse, single connection: `next` with `{id, payload}`.
    SseSingle,
    /// Apollo multipart subscriptions.
    Multipart,
}

/// The response `Content-Type` of each format.
pub(crate) fn content_type(format: Format) -> &'static str {
    match format {
        Format::Sse | Format::SseSingle => "text/event-stream; charset=utf-8",
        Format::Multipart => "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"",
    }
}

// Every part is followed at once by the next delimiter: a multipart parser only knows a
// part is whole when it sees the delimiter after it, so a part sent without one would
// wait for the next event. The stream opens with the first delimiter; `--` after the
// last one closes it.
const DELIMITER: &str = "\r\n--graphql";
const PART: &str = "\r\ncontent-type: application/json\r\n\r\n";
const END: &str = "--\r\n";

/// The JSON of an execution result.
pub(crate) fn result_json(response: &Response) -> String {
    serde_json::to_string(response)
        .unwrap_or_else(|_| r#"{"errors":[{"message":"Internal server error"}]}"#.to_owned())
}

/// The JSON of a result that only has errors.
pub(crate) fn errors_json(errors: &[ServerError]) -> String {
    serde_json::json!({ "errors": errors }).to_string()
}

fn id_json(id: &str) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

/// One result (`payload` is an execution result's JSON).
pub(crate) fn next(format: Format, id: &str, payload: &str) -> String {
    match format {
        Format::Sse => format!("event: next\ndata: {payload}\n\n"),
        Format::SseSingle => format!(
            "event: next\ndata: {{\"id\":{},\"payload\":{payload}}}\n\n",
            id_json(id)
        ),
        Format::Multipart => format!("{PART}{{\"payload\":{payload}}}{DELIMITER}"),
    }
}

/// The end of one operation. Distinct SSE streams and multipart responses end with it.
pub(crate) fn complete(format: Format, id: &str) -> String {
    match format {
        Format::Sse => "event: complete\ndata: \n\n".to_owned(),
        Format::SseSingle => format!("event: complete\ndata: {{\"id\":{}}}\n\n", id_json(id)),
        Format::Multipart => END.to_owned(),
    }
}

/// A transport-level error (multipart only: `{"payload": null, "errors": [...]}`, then
/// the end); SSE streams carry such errors as a result.
pub(crate) fn fatal(format: Format, id: &str, errors: &[ServerError]) -> String {
    match format {
        Format::Multipart => format!(
            "{PART}{}{DELIMITER}{END}",
            serde_json::json!({ "payload": null, "errors": errors })
        ),
        _ => next(format, id, &errors_json(errors)) + &complete(format, id),
    }
}

/// What opens a stream, so proxies and browsers see the headers at once.
pub(crate) fn preamble(format: Format) -> Bytes {
    match format {
        Format::Sse | Format::SseSingle => heartbeat(format),
        Format::Multipart => Bytes::from(format!("{DELIMITER}{PART}{{}}{DELIMITER}")),
    }
}

/// A keep-alive that no client mistakes for data.
pub(crate) fn heartbeat(format: Format) -> Bytes {
    match format {
        Format::Sse | Format::SseSingle => Bytes::from_static(b":\n\n"),
        Format::Multipart => Bytes::from(format!("{PART}{{}}{DELIMITER}")),
    }
}

/// The clean end of a stream on server shutdown: multipart closes with a transport error
/// and its closing boundary; SSE streams just end (no `complete`: the operations did not
/// finish, and graphql-sse clients reconnect).
pub(crate) fn shutdown(format: Format) -> Option<Bytes> {
    match format {
        Format::Multipart => Some(Bytes::from(fatal(
            format,
            "",
            &[ServerError::new("Server is shutting down", None)],
        ))),
        Format::Sse | Format::SseSingle => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(next(Format::Sse, "", "{}"), "event: next\ndata: {}\n\n");
        assert_eq!(
            next(Format::SseSingle, "a\"", "{}"),
            "event: next\ndata: {\"id\":\"a\\\"\",\"payload\":{}}\n\n"
        );
        assert_eq!(complete(Format::Sse, ""), "event: complete\ndata: \n\n");
        assert_eq!(
            next(Format::Multipart, "", "{\"data\":1}"),
            "\r\ncontent-type: application/json\r\n\r\n{\"payload\":{\"data\":1}}\r\n--graphql"
        );
        assert!(fatal(Format::Multipart, "", &[]).ends_with("\r\n--graphql--\r\n"));
        assert_eq!(complete(Format::Multipart, ""), "--\r\n");
    }
}
