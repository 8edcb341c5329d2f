//! The bytes of each HTTP transport on the wire: SSE events, Apollo multipart parts and
//! plain JSON responses, framing what [`crate::policy`] decided.

use async_graphql::ServerError;

use crate::EndReason;

/// How a stream's events are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)] // every consumer must handle each one: adding one is breaking
pub enum Format {
    /// graphql-sse, distinct connections: one operation, `next` with the result.
    Sse,
    /// graphql-sse, single connection: `next` with `{id, payload}`.
    SseSingle,
    /// Apollo multipart subscriptions.
    Multipart,
    /// GraphQL over HTTP incremental delivery (`multipart/mixed` without
    /// `subscriptionSpec`): each part an execution result with `hasNext`, the last part
    /// `{"hasNext":false}`. No heartbeats: every part is a result to such clients.
    Mixed,
}

/// The response `Content-Type` of each format.
pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Sse | Format::SseSingle => "text/event-stream; charset=utf-8",
        Format::Multipart => "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"",
        Format::Mixed => "multipart/mixed; boundary=\"graphql\"",
    }
}

// Every part is followed at once by the next delimiter: a multipart parser only knows a
// part is whole when it sees the delimiter after it, so a part sent without one would
// wait for the next event. The stream opens with the first delimiter; `--` after the
// last one closes it.
const DELIMITER: &str = "\r\n--graphql";
const PART: &str = "\r\ncontent-type: application/json\r\n\r\n";
const END: &str = "--\r\n";
/// An incremental-delivery part's head.
const MIXED_PART: &str = "\r\ncontent-type: application/json; charset=utf-8\r\n\r\n";

/// `result` (a JSON object) with `"hasNext": has_next` added, as incremental delivery
/// frames every part.
fn with_has_next(result: &str, has_next: bool) -> String {
    let body = result.trim_end();
    match body.strip_suffix('}') {
        Some(open) if open.trim_end().ends_with('{') => format!("{open}\"hasNext\":{has_next}}}"),
        Some(open) => format!("{open},\"hasNext\":{has_next}}}"),
        None => format!("{{\"hasNext\":{has_next}}}"),
    }
}

/// The JSON of a result that only has errors.
pub fn errors_json(errors: &[ServerError]) -> String {
    serde_json::json!({ "errors": errors }).to_string()
}

fn id_json(id: &str) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

/// One result (`payload` is an execution result's JSON).
pub fn next(format: Format, id: &str, payload: &str) -> String {
    next_event(format, id, payload, None)
}

/// One result with the id of the topic event it came from: on distinct SSE connections
/// also an `id:` line, which a browser sends back as `Last-Event-ID` when it reconnects.
pub fn next_event(format: Format, id: &str, payload: &str, event_id: Option<&str>) -> String {
    match format {
        Format::Sse => match event_id.filter(|e| !e.contains(['\n', '\r'])) {
            Some(event_id) => format!("id: {event_id}\nevent: next\ndata: {payload}\n\n"),
            None => format!("event: next\ndata: {payload}\n\n"),
        },
        Format::SseSingle => format!(
            "event: next\ndata: {{\"id\":{},\"payload\":{payload}}}\n\n",
            id_json(id)
        ),
        Format::Multipart => format!("{PART}{{\"payload\":{payload}}}{DELIMITER}"),
        Format::Mixed => format!("{MIXED_PART}{}{DELIMITER}", with_has_next(payload, true)),
    }
}

/// The end of one operation. Distinct SSE streams and multipart responses end with it.
pub fn complete(format: Format, id: &str) -> String {
    match format {
        Format::Sse => "event: complete\ndata: \n\n".to_owned(),
        Format::SseSingle => format!("event: complete\ndata: {{\"id\":{}}}\n\n", id_json(id)),
        Format::Multipart => END.to_owned(),
        Format::Mixed => format!("{MIXED_PART}{{\"hasNext\":false}}{DELIMITER}{END}"),
    }
}

/// A transport-level error (multipart only: `{"payload": null, "errors": [...]}`, then
/// the end); SSE streams carry such errors as a result.
pub fn fatal(format: Format, id: &str, errors: &[ServerError]) -> String {
    match format {
        Format::Multipart => format!(
            "{PART}{}{DELIMITER}{END}",
            serde_json::json!({ "payload": null, "errors": errors })
        ),
        Format::Mixed => format!(
            "{MIXED_PART}{}{DELIMITER}{END}",
            serde_json::json!({ "errors": errors, "hasNext": false })
        ),
        _ => next(format, id, &errors_json(errors)) + &complete(format, id),
    }
}

/// An operation that ended early with `errors` (a [`crate::Verdict::Fail`]): a request
/// error or a refusal is the operation's last result, then its end; an oversized response
/// or a panic is a transport error on multipart (`{"payload": null, ...}`, the end of the
/// response) and the same result-then-end on SSE.
pub fn failed(format: Format, id: &str, reason: &EndReason, errors: &[ServerError]) -> String {
    match reason {
        EndReason::ResponseTooLarge | EndReason::Panicked => fatal(format, id, errors),
        _ => next(format, id, &errors_json(errors)) + &complete(format, id),
    }
}

/// What opens a stream, so proxies and browsers see the headers at once: on SSE with
/// `retry` (milliseconds), the reconnection delay a browser should use.
pub fn preamble(format: Format, retry: Option<u64>) -> std::borrow::Cow<'static, str> {
    match (format, retry) {
        (Format::Sse | Format::SseSingle, Some(ms)) => format!("retry: {ms}\n\n").into(),
        (Format::Sse | Format::SseSingle, None) => heartbeat(format).into(),
        (Format::Multipart, _) => {
            "\r\n--graphql\r\ncontent-type: application/json\r\n\r\n{}\r\n--graphql".into()
        }
        (Format::Mixed, _) => "\r\n--graphql".into(),
    }
}

/// A keep-alive that no client mistakes for data.
pub fn heartbeat(format: Format) -> &'static str {
    match format {
        Format::Sse | Format::SseSingle => ":\n\n",
        Format::Multipart => "\r\ncontent-type: application/json\r\n\r\n{}\r\n--graphql",
        // Never sent: the stream turns heartbeats off for this format.
        Format::Mixed => "",
    }
}

/// The clean end of a stream on server shutdown: multipart closes with a transport error
/// and its closing boundary; SSE streams just end (no `complete`: the operations did not
/// finish, and graphql-sse clients reconnect).
pub fn shutdown(format: Format) -> Option<String> {
    match format {
        Format::Multipart | Format::Mixed => Some(fatal(
            format,
            "",
            &[ServerError::new("Server is shutting down", None)],
        )),
        Format::Sse | Format::SseSingle => None,
    }
}

/// A plain GraphQL-over-HTTP response: its status code and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plain {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: String,
}

/// Frames the one verdict of a plain GraphQL-over-HTTP request. `strict` is the
/// `application/graphql-response+json` media type, whose status codes say what failed
/// (400 for a request error, 403 for a refusal, 500 otherwise); `application/json`
/// answers 200 with the errors in the body. `None`: the operation ended without a result.
pub fn plain(verdict: Option<&crate::Verdict<'_>>, strict: bool) -> Plain {
    let (status, body) = match verdict {
        Some(crate::Verdict::Next(json)) => (200, json.to_string()),
        Some(crate::Verdict::Fail { reason, errors }) => {
            let status = match reason {
                EndReason::RequestError => 400,
                EndReason::Refused => 403,
                _ => 500,
            };
            // A request error has no `data` entry.
            (if strict { status } else { 200 }, errors_json(errors))
        }
        Some(crate::Verdict::Complete) | None => {
            (500, errors_json(&crate::policy::internal_error()))
        }
    };
    Plain { status, body }
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
        assert_eq!(
            next(Format::Mixed, "", "{\"data\":1}"),
            "\r\ncontent-type: application/json; charset=utf-8\r\n\r\n{\"data\":1,\"hasNext\":true}\r\n--graphql"
        );
        assert_eq!(with_has_next("{}", true), "{\"hasNext\":true}");
        assert!(complete(Format::Mixed, "").ends_with("{\"hasNext\":false}\r\n--graphql--\r\n"));
        assert!(fatal(Format::Mixed, "", &[]).ends_with("\"hasNext\":false}\r\n--graphql--\r\n"));
        assert_eq!(preamble(Format::Sse, Some(1000)), "retry: 1000\n\n");
        assert_eq!(
            next_event(Format::Sse, "", "{}", Some("1-2")),
            "id: 1-2\nevent: next\ndata: {}\n\n"
        );
        assert_eq!(
            next_event(Format::SseSingle, "a", "{}", Some("1-2")),
            next(Format::SseSingle, "a", "{}")
        );
        assert_eq!(
            preamble(Format::Multipart, None),
            format!("{DELIMITER}{PART}{{}}{DELIMITER}")
        );
        assert_eq!(
            heartbeat(Format::Multipart),
            format!("{PART}{{}}{DELIMITER}")
        );
    }
}
