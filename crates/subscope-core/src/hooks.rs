//! The user-facing lifecycle hooks and what they exchange with the connection.

use std::future::Future;
use std::net::SocketAddr;

use async_graphql::{Data, Request, ServerError};
use serde_json::Value;

use crate::{CloseReason, EndReason, Transport};

/// What a server knows of a WebSocket's HTTP upgrade request: the URI, the headers and
/// the peer's address. The standalone server fills it in; pass one to
/// [`crate::Server::serve_websocket`] when another HTTP server did the upgrade.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UpgradeRequest {
    /// The request target (path and query; scheme and authority when the client sent them).
    pub uri: http::Uri,
    /// The request headers (`Cookie`, `Authorization`, `Origin`, `User-Agent`, ...).
    pub headers: http::HeaderMap,
    /// The peer's address, when the transport has one.
    pub peer: Option<SocketAddr>,
}

impl UpgradeRequest {
    /// An upgrade request with this URI and these headers, and no peer address.
    pub fn new(uri: http::Uri, headers: http::HeaderMap) -> Self {
        Self {
            uri,
            headers,
            peer: None,
        }
    }

    /// The same request, from `peer`.
    #[must_use]
    pub fn with_peer(mut self, peer: Option<SocketAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// The `Origin` header, if present and readable. Browsers always send it on a
    /// WebSocket upgrade; other clients usually do not.
    pub fn origin(&self) -> Option<&str> {
        origin_of(&self.headers)
    }
}

/// A request's `Origin` header, if present and readable.
pub(crate) fn origin_of(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
}

/// What a hook knows about the connection it is called for.
///
/// ```
/// use subscope_core::{ConnectionInfo, Subprotocol, UpgradeRequest};
/// let mut headers = http::HeaderMap::new();
/// headers.insert("cookie", "session=abc".parse().unwrap());
/// let request = UpgradeRequest::new("/graphql?room=1".parse().unwrap(), headers);
/// let conn = ConnectionInfo::new(7, Subprotocol::GraphqlTransportWs, request);
/// assert_eq!(conn.headers["cookie"], "session=abc");
/// assert_eq!(conn.uri.query(), Some("room=1"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// A process-unique number for this connection (stable in logs).
    pub id: u64,
    /// How it is carried: a WebSocket with its negotiated subprotocol, or one of the HTTP
    /// transports (a request, or a graphql-sse reservation and its stream).
    pub transport: Transport,
    /// The peer's address, when the transport has one.
    pub peer: Option<SocketAddr>,
    /// The upgrade request's URI.
    pub uri: http::Uri,
    /// The upgrade request's headers: read a cookie or a header in `on_connect`.
    pub headers: http::HeaderMap,
}

impl ConnectionInfo {
    /// Describes connection `id`, opened by `request`, carried by `transport` (a
    /// [`Subprotocol`](crate::Subprotocol) converts into [`Transport::WebSocket`]).
    pub fn new(id: u64, transport: impl Into<Transport>, request: UpgradeRequest) -> Self {
        Self {
            id,
            transport: transport.into(),
            peer: request.peer,
            uri: request.uri,
            headers: request.headers,
        }
    }
}

/// `on_connect` accepted the connection.
#[derive(Default)]
pub struct Accept {
    pub(crate) payload: Option<Value>,
    pub(crate) data: Data,
    pub(crate) valid_for: Option<std::time::Duration>,
}

impl std::fmt::Debug for Accept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accept")
            .field("payload", &self.payload)
            .field("valid_for", &self.valid_for)
            .finish_non_exhaustive()
    }
}

impl Accept {
    /// Accept with no ack payload and empty resolver data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Send this object as the `connection_ack` payload.
    #[must_use]
    pub fn ack_payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Make `value` available to every resolver of this connection through
    /// `ctx.data::<T>()` (async-graphql session data).
    #[must_use]
    pub fn data<T: std::any::Any + Send + Sync>(mut self, value: T) -> Self {
        self.data.insert(value);
        self
    }

    /// The authorization lasts `ttl` from now: then a WebSocket closes 4403 `Token expired`
    /// and each HTTP stream's operations end with a `TOKEN_EXPIRED` error (PROTOCOL.md 4.11).
    /// A graphql-transport-ws `ping` may renew it ([`Hooks::on_renew`]).
    #[must_use]
    pub fn valid_for(mut self, ttl: std::time::Duration) -> Self {
        self.valid_for = Some(ttl);
        self
    }
}

/// What [`Hooks::on_renew`] decided about a credential a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Renewal {
    /// Nothing changes (the payload carried no credential).
    Keep,
    /// The credential is valid: the authorization now lasts this long from now.
    Renew(std::time::Duration),
    /// The credential is not valid: the connection closes 4403 `Forbidden`.
    Refuse,
}

/// `on_connect` refused the connection.
///
/// On `graphql-transport-ws` the peer sees close 4403 `Forbidden` ([`Reject::forbidden`]) or
/// 4500 `Internal server error` ([`Reject::internal`]); on the legacy `graphql-ws` it sees
/// `connection_error` with the message, then close 1011.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection rejected: {message}")]
pub struct Reject {
    message: String,
    internal: bool,
    /// No credentials were given: HTTP answers 401 with this `WWW-Authenticate` challenge.
    challenge: Option<String>,
}

impl Reject {
    /// The client is not allowed in (bad or missing credentials).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            internal: false,
            challenge: None,
        }
    }

    /// The client gave no credentials: over HTTP, 401 with a `WWW-Authenticate` header
    /// carrying `challenge` (e.g. `Bearer`, or `Bearer realm="api"`); over WebSocket the
    /// same as [`Reject::forbidden`] (4403; the upgrade has happened already).
    pub fn unauthorized(message: impl Into<String>, challenge: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            internal: false,
            challenge: Some(challenge.into()),
        }
    }

    /// The hook could not decide (a backend failed). The message is logged, not sent on
    /// `graphql-transport-ws`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            internal: true,
            challenge: None,
        }
    }

    /// The `WWW-Authenticate` challenge of an [`Reject::unauthorized`] refusal.
    pub fn challenge(&self) -> Option<&str> {
        self.challenge.as_deref()
    }

    /// The message given to the constructor.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this is an internal failure rather than a refusal.
    pub fn is_internal(&self) -> bool {
        self.internal
    }
}

/// Lifecycle hooks. Every method has a default, so implement only what you need.
///
/// Guarantees: `on_complete` runs exactly once for every operation whose `subscribe`/`start`
/// was accepted (id reserved), on every ending path, right after its stream was dropped;
/// `on_disconnect` (only if the connection was acknowledged) and then `on_close` (always)
/// run after every operation of the connection has been dropped and completed.
///
/// The synchronous hooks may run inside `Drop` (when a connection future is dropped from
/// outside): they must not block or call back into the connection. A panic in one of them
/// is caught, logged through `tracing` and counted
/// ([`crate::GaugeSnapshot::hook_panics`]); it never aborts the process or disturbs other
/// connections.
///
/// ```
/// use subscope_core::{Accept, ConnectionInfo, Hooks, Reject};
/// struct Auth;
/// impl Hooks for Auth {
///     async fn on_connect(
///         &self,
///         _conn: &ConnectionInfo,
///         payload: Option<serde_json::Value>,
///     ) -> Result<Accept, Reject> {
///         let token = payload.as_ref().and_then(|p| p.get("token")).and_then(|t| t.as_str());
///         match token {
///             Some("secret") => Ok(Accept::new().data(String::from("alice"))),
///             _ => Err(Reject::forbidden("bad token")),
///         }
///     }
/// }
/// ```
pub trait Hooks: Send + Sync + 'static {
    /// Runs on `connection_init` with its payload. Accept (optionally with an ack payload
    /// and resolver data) or reject. A panic here counts as an internal failure.
    fn on_connect(
        &self,
        conn: &ConnectionInfo,
        payload: Option<Value>,
    ) -> impl Future<Output = Result<Accept, Reject>> + Send {
        let _ = (conn, payload);
        async { Ok(Accept::new()) }
    }

    /// Runs before an operation executes; may rewrite the request or refuse it with errors
    /// (sent as the operation's `error` message). While it runs the operation is live: a
    /// client `complete` or a connection end drops this future and nothing is sent.
    fn on_subscribe(
        &self,
        conn: &ConnectionInfo,
        id: &str,
        request: Request,
    ) -> impl Future<Output = Result<Request, Vec<ServerError>>> + Send {
        let _ = (conn, id);
        async { Ok(request) }
    }

    /// Whether this operation may share one execution with identical ones, and what
    /// "identical" means: return a [`crate::ShareKey`] (the request's document, operation
    /// name and variables, plus whatever of the connection's context your resolvers read),
    /// or `None` (the default) to execute it alone. Runs after `on_subscribe`, on the
    /// request it returned, and only for subscriptions: a query or mutation always executes
    /// by itself. The shared execution runs with the session data of the operation that
    /// started it; a later one joins at its next event.
    fn share_key(&self, conn: &ConnectionInfo, request: &Request) -> Option<crate::ShareKey> {
        let _ = (conn, request);
        None
    }

    /// A graphql-transport-ws client sent a `ping` with `payload` while acknowledged (the
    /// `pong` echoing it goes out regardless): renew the authorization if the payload
    /// carries a valid credential, refuse it (close 4403) if it carries an invalid one, or
    /// keep it (the default).
    fn on_renew(
        &self,
        conn: &ConnectionInfo,
        payload: Value,
    ) -> impl Future<Output = Renewal> + Send {
        let _ = (conn, payload);
        async { Renewal::Keep }
    }

    /// Exactly once per accepted operation, right after its stream was dropped.
    fn on_complete(&self, conn: &ConnectionInfo, id: &str, reason: &EndReason) {
        let _ = (conn, id, reason);
    }

    /// After every operation has been dropped, if the connection had been acknowledged.
    fn on_disconnect(&self, conn: &ConnectionInfo, reason: &CloseReason) {
        let _ = (conn, reason);
    }

    /// Always, last, after every operation has been dropped and the socket released.
    fn on_close(&self, conn: &ConnectionInfo, reason: &CloseReason) {
        let _ = (conn, reason);
    }
}

/// Hooks that accept every connection and operation and observe nothing.
#[derive(Debug, Clone, Copy, Default)]
#[allow(
    clippy::exhaustive_structs,
    reason = "a unit struct users construct by name"
)]
pub struct NoHooks;

impl Hooks for NoHooks {}
