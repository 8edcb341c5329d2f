//! What an HTTP request asks for: the response format (from `Accept`) and the GraphQL
//! request (from the query string or a JSON body), with the 4xx answers of
//! `docs/PROTOCOL.md` 4.6 for everything malformed.

use async_graphql::{Request, Variables};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};

use crate::UpgradeRequest;
use serde_json::{Map, Value};

/// The header that carries a single-connection stream token.
pub(crate) const TOKEN_HEADER: &str = "x-graphql-event-stream-token";

/// The response format a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wants {
    /// `text/event-stream`: graphql-sse.
    EventStream,
    /// `multipart/mixed;subscriptionSpec=...`: Apollo's multipart subscriptions.
    Multipart,
    /// `multipart/mixed` without `subscriptionSpec` (nor `deferSpec`): incremental
    /// delivery, each part an execution result.
    Mixed,
    /// `application/graphql-response+json`.
    GraphqlResponse,
    /// `application/json` (also `*/*`, `application/*` and no `Accept` at all).
    Json,
}

/// Whether `Accept` lists `text/html` (a browser navigating to the endpoint).
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let media = range.split(';').next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case("text/html")
        })
}

/// Whether the URL query has parameter `name` (a GET GraphQL request has `query`).
pub(crate) fn has_query_param(query: Option<&str>, name: &str) -> bool {
    query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == name))
}

/// Reads `Accept`: the streaming formats win over the JSON ones, whatever their order
/// (a client that can take a stream asked for it); `None` means nothing we serve (406).
pub(crate) fn wants(headers: &HeaderMap) -> Option<Wants> {
    let mut ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .peekable();
    if ranges.peek().is_none() {
        return Some(Wants::Json);
    }
    let mut best: Option<Wants> = None;
    for range in ranges {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_owned(),
                )
            })
            .collect();
        if params
            .iter()
            .any(|(k, v)| k == "q" && v.parse::<f32>().is_ok_and(|q| q <= 0.0))
        {
            continue;
        }
        let this = match media.as_str() {
            "text/event-stream" => Wants::EventStream,
            // Only Apollo's subscription spec; `deferSpec` alone is incremental delivery,
            // which we do not serve (such clients also offer application/json).
            "multipart/mixed" if params.iter().any(|(k, _)| k == "subscriptionspec") => {
                Wants::Multipart
            }
            "multipart/mixed" if !params.iter().any(|(k, _)| k == "deferspec") => Wants::Mixed,
            "application/graphql-response+json" => Wants::GraphqlResponse,
            "application/json" | "application/*" | "*/*" => Wants::Json,
            _ => continue,
        };
        best = Some(match best {
            Some(b) if rank(b) <= rank(this) => b,
            _ => this,
        });
    }
    best
}

fn rank(w: Wants) -> u8 {
    match w {
        Wants::EventStream => 0,
        Wants::Multipart => 1,
        Wants::Mixed => 2,
        Wants::GraphqlResponse => 3,
        Wants::Json => 4,
    }
}

/// A request refused before any GraphQL work: its status and the one error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// The `Allow` header of a 405.
    pub(crate) allow: Option<&'static str>,
    /// The `WWW-Authenticate` header of a 401.
    pub(crate) challenge: Option<String>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
            challenge: None,
        }
    }

    /// A 401 with its `WWW-Authenticate` challenge.
    pub(crate) fn unauthorized(message: impl Into<String>, challenge: String) -> Self {
        Self {
            challenge: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    /// A 405 naming the methods that would do.
    pub(crate) fn method_not_allowed(message: impl Into<String>, allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(StatusCode::METHOD_NOT_ALLOWED, message)
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The GraphQL request parameters of the GraphQL-over-HTTP spec.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pub(crate) query: String,
    pub(crate) operation_name: Option<String>,
    pub(crate) variables: Option<Map<String, Value>>,
    pub(crate) extensions: Option<Map<String, Value>>,
}

impl Params {
    /// From the query string of a `GET` (`variables` and `extensions` are JSON).
    pub(crate) fn from_query(query: Option<&str>) -> Result<Self, Refusal> {
        let mut fields = Map::new();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let value = match &*key {
                "variables" | "extensions" => serde_json::from_str(&value)
                    .map_err(|_| Refusal::bad(format!("{key} must be a JSON object")))?,
                "query" | "operationName" => Value::String(value.into_owned()),
                _ => continue,
            };
            fields.insert(key.into_owned(), value);
        }
        Self::from_object(fields)
    }

    /// From a JSON body.
    pub(crate) fn from_body(body: &[u8]) -> Result<Self, Refusal> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => Self::from_object(fields),
            Ok(_) => Err(Refusal::bad("body must be a JSON object")),
            Err(e) => Err(Refusal::bad(format!("body is not JSON: {e}"))),
        }
    }

    fn from_object(mut fields: Map<String, Value>) -> Result<Self, Refusal> {
        let query = match fields.remove("query") {
            Some(Value::String(q)) => q,
            None | Some(Value::Null) => return Err(Refusal::bad("query is missing")),
            Some(_) => return Err(Refusal::bad("query must be a string")),
        };
        let operation_name = match fields.remove("operationName") {
            Some(Value::String(n)) => Some(n),
            None | Some(Value::Null) => None,
            Some(_) => return Err(Refusal::bad("operationName must be a string")),
        };
        let object = |key: &str, v: Option<Value>| match v {
            Some(Value::Object(m)) => Ok(Some(m)),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(Refusal::bad(format!("{key} must be an object"))),
        };
        let variables = object("variables", fields.remove("variables"))?;
        let extensions = object("extensions", fields.remove("extensions"))?;
        Ok(Self {
            query,
            operation_name,
            variables,
            extensions,
        })
    }

    /// `extensions.operationId` (single-connection mode), as a string.
    pub(crate) fn operation_id(&self) -> Option<String> {
        match self.extensions.as_ref()?.get("operationId")? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The async-graphql request.
    pub(crate) fn into_request(self) -> Request {
        let mut request = Request::new(self.query);
        if let Some(name) = self.operation_name {
            request = request.operation_name(name);
        }
        if let Some(vars) = self.variables {
            request = request.variables(Variables::from_json(Value::Object(vars)));
        }
        if let Some(ext) = self.extensions {
            for (k, v) in ext {
                if let Ok(v) = async_graphql::Value::from_json(v) {
                    request.extensions.insert(k, v);
                }
            }
        }
        request
    }
}

/// Whether a request body is JSON (`application/json`, or any `+json` type).
pub(crate) fn is_json_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// A query-string parameter.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The single-connection token: the header, else the `token` parameter.
pub(crate) fn token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    match headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        Some(t) => Some(t.trim().to_owned()),
        None => query_param(query, "token"),
    }
}

/// The request's URI and headers as an [`UpgradeRequest`] that owns its bytes. hyper parses
/// both as views into its read buffer (8 KiB or more); a connection that keeps them
/// (`ConnectionInfo` lives as long as the connection) would keep that whole buffer alive.
pub(crate) fn detached_request(uri: &Uri, headers: &HeaderMap) -> UpgradeRequest {
    let uri = Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone());
    let mut owned = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let value = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        owned.append(name.clone(), value);
    }
    UpgradeRequest::new(uri, owned)
}

/// Whether a request asks for a WebSocket (`Connection: upgrade` and `Upgrade: websocket`,
/// any case, among any of the headers' tokens): how subscope tells an upgrade from a
/// request for [`crate::Server::serve_http`] on one endpoint.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("connection", "keep-alive, Upgrade".parse().unwrap());
/// headers.insert("upgrade", "websocket".parse().unwrap());
/// assert!(subscope_core::is_websocket_upgrade(&headers));
/// headers.remove("connection");
/// assert!(!subscope_core::is_websocket_upgrade(&headers));
/// ```
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Option<Wants> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        wants(&h)
    }

    #[test]
    fn accept_picks_the_stream_formats_first() {
        assert_eq!(wants(&HeaderMap::new()), Some(Wants::Json));
        assert_eq!(accept("text/event-stream"), Some(Wants::EventStream));
        assert_eq!(
            accept("application/json, multipart/mixed;subscriptionSpec=\"1.0\""),
            Some(Wants::Multipart)
        );
        assert_eq!(
            accept("multipart/mixed;deferSpec=20220824, application/json"),
            Some(Wants::Json)
        );
        assert_eq!(
            accept("application/graphql-response+json, application/json;q=0.9"),
            Some(Wants::GraphqlResponse)
        );
        assert_eq!(accept("*/*"), Some(Wants::Json));
        assert_eq!(accept("text/html"), None);
        assert_eq!(accept("text/event-stream;q=0"), None);
    }

    #[test]
    fn params_are_checked() {
        let p = Params::from_body(
            br#"{"query":"{ a }","variables":{"x":1},"extensions":{"operationId":"7"}}"#,
        )
        .unwrap();
        assert_eq!(p.operation_id().as_deref(), Some("7"));
        assert_eq!(
            Params::from_body(b"[]").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Params::from_body(b"{").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Params::from_body(br#"{"query":1}"#).unwrap_err().message,
            "query must be a string"
        );
        assert_eq!(
            Params::from_body(br#"{"query":"{ a }","variables":[]}"#)
                .unwrap_err()
                .message,
            "variables must be an object"
        );
        let p =
            Params::from_query(Some("query=%7B%20a%20%7D&variables=%7B%22x%22%3A1%7D")).unwrap();
        assert_eq!(p.query, "{ a }");
        assert!(Params::from_query(Some("variables=nope&query=x")).is_err());
        assert_eq!(
            Params::from_query(None).unwrap_err().message,
            "query is missing"
        );
    }
}
