//! GraphQL over HTTP on the same endpoint as the WebSocket: graphql-sse (distinct and
//! single-connection modes), Apollo's multipart subscriptions, and plain GraphQL over HTTP
//! for queries and mutations (`docs/PROTOCOL.md` 4.6).
//!
//! Every HTTP operation runs through the same [`Operation`] as a WebSocket one (the same
//! hooks, limits, gauges, sharing and leak checks), and is owned by its response: an event
//! stream's body owns its operations, so however the response ends (the client resets or
//! closes, a write stalls past `write_timeout`, the stream ends, a `DELETE`, shutdown, the
//! connection future dropped) they are dropped and `on_complete` runs exactly once.

pub(crate) mod h2;
mod io;
mod request;
mod stream;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Executor, Request as GqlRequest};
use bytes::Bytes;
use futures_lite::{FutureExt, StreamExt};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, LengthLimitError, Limited};

pub(crate) use io::{ConnectionEnd, HyperIo, HyperTimer, Prefixed, UpgradedIo};
pub(crate) use upgrade::{Outcome, accept_connect, accept_upgrade, is_extended_connect};

pub(crate) use self::request::Wants;
use self::request::{Params, Refusal};
use self::stream::{EventStream, StreamAuth};
use crate::documents::Documents;
use crate::lifecycle::{Admission, EndHooks, Slot};
use crate::operation::Operation;
use crate::reservations::{self, AddError, Phase};
use crate::rt::Runtime;
use crate::state::State;
use crate::variables::operation_type;
use crate::{CloseReason, ConnectionInfo, EndReason, Hooks, Transport};
use subscope_protocol::http_frame::{self, Format};
use subscope_protocol::policy::{self, OperationEvent, OperationState, Verdict};

pub use request::is_websocket_upgrade;
pub(crate) use request::wants;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every HTTP response subscope produces: a whole JSON document, or an event
/// stream (SSE, multipart) that owns its operations.
pub struct HttpBody(Kind);

enum Kind {
    Full(Option<Bytes>),
    Stream(Pin<Box<dyn http_body::Body<Data = Bytes, Error = Infallible> + Send>>),
}

impl HttpBody {
    fn full(bytes: impl Into<Bytes>) -> Self {
        Self(Kind::Full(Some(bytes.into())))
    }

    fn empty() -> Self {
        Self(Kind::Full(None))
    }
}

impl std::fmt::Debug for HttpBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::Full(b) => f.debug_tuple("HttpBody::Full").field(b).finish(),
            Kind::Stream(_) => f.write_str("HttpBody::Stream"),
        }
    }
}

impl http_body::Body for HttpBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(body) => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.0 {
            Kind::Full(bytes) => {
                http_body::SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Stream(body) => body.size_hint(),
        }
    }
}

const ALLOW: &str = "GET, POST, PUT, DELETE";
const HTML: &str = "text/html; charset=utf-8";
/// The GraphiQL page ([`crate::Config::graphiql`]): static, it derives every URL from its
/// own location.
const GRAPHIQL: &str = include_str!("graphiql.html");
/// Prometheus's text exposition format.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const ALLOW_HEADERS: &str =
    "content-type, authorization, x-graphql-event-stream-token, last-event-id";

/// A whole response: `status`, `Content-Type`, `body`.
fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<HttpBody> {
    let mut response = Response::new(HttpBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json; charset=utf-8";

/// The HTTP service of one server: answers every GraphQL HTTP request that is not a
/// WebSocket upgrade. `Server::serve_http` and the standalone server's connections hand
/// requests to it; it reads the server's [`State`] and never the `Server` itself.
pub(crate) struct Http<E, H: Hooks, R> {
    inner: Arc<State<E, H, R>>,
}

impl<E, H: Hooks, R> Http<E, H, R> {
    /// The service of the server whose state this is.
    pub(crate) fn new(inner: Arc<State<E, H, R>>) -> Self {
        Self { inner }
    }
}

impl<E: Executor, H: Hooks, R: Runtime> Http<E, H, R> {
    /// Answers one request (see `Server::serve_http`); `ending` is the standalone
    /// connection's verdict, `None` under another HTTP server.
    pub(crate) async fn serve<B>(
        self,
        request: Request<B>,
        peer: Option<SocketAddr>,
        ending: Option<Arc<ConnectionEnd>>,
    ) -> Response<HttpBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let inner = &self.inner;
        inner.gauges.count_http_request();
        if request.method() == Method::GET {
            // Probes for orchestrators: alive while it serves; ready until shutdown begins.
            match request.uri().path() {
                "/healthz" => return response(StatusCode::OK, TEXT, "ok"),
                "/readyz" if inner.is_ready() => return response(StatusCode::OK, TEXT, "ready"),
                "/readyz" => {
                    return response(StatusCode::SERVICE_UNAVAILABLE, TEXT, "shutting down");
                }
                "/metrics" if inner.config.metrics => {
                    return response(
                        StatusCode::OK,
                        PROMETHEUS,
                        inner.gauges.snapshot().to_prometheus(),
                    );
                }
                _ => {}
            }
        }
        // The standalone server routes by path; under another server, that server did.
        if ending.is_some() && request.uri().path() != inner.config.graphql_path {
            return self.refuse(Refusal::new(StatusCode::NOT_FOUND, "Not found"));
        }
        if inner.config.graphiql
            && request.method() == Method::GET
            && request::wants_html(request.headers())
            && !request::has_query_param(request.uri().query(), "query")
        {
            // A browser opening the endpoint: the IDE, whose requests come back here.
            return response(StatusCode::OK, HTML, GRAPHIQL);
        }
        let (parts, body) = request.into_parts();
        let origin = crate::hooks::origin_of(&parts.headers);
        if !self.inner.allows_origin(origin, peer) {
            // Cross-site requests with the user's cookies: refused like a WebSocket upgrade.
            return self.refuse(Refusal::new(StatusCode::FORBIDDEN, "Origin not allowed"));
        }
        let origin = origin.and_then(|o| HeaderValue::from_str(o).ok());
        let mut response = if parts.method == Method::OPTIONS {
            preflight()
        } else {
            match self.route(&parts, body, peer, ending).await {
                Ok(response) => response,
                Err(refusal) => self.refuse(refusal),
            }
        };
        if let Some(origin) = origin {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(header::VARY, HeaderValue::from_static("origin"));
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        response
    }

    fn refuse(&self, refusal: Refusal) -> Response<HttpBody> {
        self.inner.gauges.count_http_refused();
        tracing::debug!(status = refusal.status.as_u16(), message = %refusal.message, "http request refused");
        let body = serde_json::json!({ "errors": [{ "message": refusal.message }] }).to_string();
        let mut response = response(refusal.status, JSON, body);
        let headers = response.headers_mut();
        if let Some(allow) = refusal.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(challenge) = refusal
            .challenge
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if refusal.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }

    async fn route<B>(
        &self,
        parts: &Parts,
        body: B,
        peer: Option<SocketAddr>,
        ending: Option<Arc<ConnectionEnd>>,
    ) -> Result<Response<HttpBody>, Refusal>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let query = parts.uri.query();
        let token = request::token(&parts.headers, query);
        let wants = wants(&parts.headers);
        match parts.method {
            Method::PUT => self.reserve(parts, peer).await,
            Method::DELETE => {
                let token =
                    token.ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, "Stream not found"))?;
                self.stop_operation(&token, query)
            }
            Method::GET | Method::POST => match (token, wants) {
                (Some(token), Some(Wants::EventStream)) => self.open_stream(&token, ending),
                (Some(token), _) => {
                    let params = self.read_params(parts, body).await?;
                    self.add_operation(&token, params, parts)
                }
                (None, None) => Err(Refusal::new(
                    StatusCode::NOT_ACCEPTABLE,
                    "Accept one of text/event-stream, multipart/mixed;subscriptionSpec=\"1.0\", \
                     multipart/mixed, application/graphql-response+json, application/json",
                )),
                (None, Some(wants)) => {
                    let params = self.read_params(parts, body).await?;
                    match wants {
                        Wants::EventStream => {
                            self.stream(Format::Sse, params, parts, peer, ending).await
                        }
                        Wants::Multipart => {
                            self.stream(Format::Multipart, params, parts, peer, ending)
                                .await
                        }
                        Wants::Mixed => {
                            self.stream(Format::Mixed, params, parts, peer, ending)
                                .await
                        }
                        Wants::Json | Wants::GraphqlResponse => {
                            self.plain(wants, params, parts, peer).await
                        }
                    }
                }
            },
            _ => Err(Refusal::method_not_allowed(
                format!("Method {} not allowed", parts.method),
                ALLOW,
            )),
        }
    }

    async fn read_params<B>(&self, parts: &Parts, body: B) -> Result<Params, Refusal>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if parts.method == Method::GET {
            return Params::from_query(parts.uri.query());
        }
        if !request::is_json_body(&parts.headers) {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ));
        }
        let limit = self.inner.config.max_message_size;
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request body larger than {limit} bytes"),
                ));
            }
            Err(_) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "Could not read the request body",
                ));
            }
        };
        Params::from_body(&bytes)
    }

    fn connection_info(
        &self,
        transport: Transport,
        parts: &Parts,
        peer: Option<SocketAddr>,
    ) -> Arc<ConnectionInfo> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let request = request::detached_request(&parts.uri, &parts.headers).with_peer(peer);
        Arc::new(ConnectionInfo::new(id, transport, request))
    }

    fn end_guard(&self, conn: &Arc<ConnectionInfo>, stream: bool) -> EndHooks<H> {
        let slot = if stream {
            Slot::HttpStream
        } else {
            Slot::Request
        };
        EndHooks::new(
            Arc::clone(conn),
            &self.inner.hooks,
            &self.inner.gauges,
            slot,
        )
    }

    /// A stream slot, or 503.
    fn stream_slot(&self) -> Result<(), Refusal> {
        let inner = &self.inner;
        if inner.stop.is_raised() {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Server is shutting down",
            ));
        }
        if inner
            .gauges
            .try_open_http_stream(inner.config.max_http_streams)
        {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many streams: try again later",
            ))
        }
    }

    /// Runs `on_connect` (no payload: HTTP carries its credentials in headers).
    async fn connect(
        &self,
        conn: &Arc<ConnectionInfo>,
        end: &mut EndHooks<H>,
    ) -> Result<(Arc<Data>, Option<Instant>), Refusal> {
        let hooks = Arc::clone(&self.inner.hooks);
        let outcome = std::panic::AssertUnwindSafe(hooks.on_connect(conn, None))
            .catch_unwind()
            .await;
        let admission = Admission::of(outcome, conn.id);
        end.reason = admission.close_reason();
        match admission {
            Admission::Accepted(accept) => {
                end.accepted = true;
                let valid_until = accept.valid_for.map(|ttl| self.inner.runtime.now() + ttl);
                Ok((Arc::new(accept.data), valid_until))
            }
            Admission::Refused(message, None) => Err(Refusal::new(StatusCode::FORBIDDEN, &message)),
            Admission::Refused(message, Some(challenge)) => {
                Err(Refusal::unauthorized(&message, challenge))
            }
            Admission::Failed => Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
            )),
        }
    }

    fn operation(
        &self,
        id: &str,
        request: GqlRequest,
        session: &Arc<Data>,
        conn: &Arc<ConnectionInfo>,
    ) -> Operation<H> {
        let inner = &self.inner;
        Operation::start(
            id.to_owned(),
            request,
            inner.config.detect_leaks,
            &inner.executor,
            Some(Arc::clone(session)),
            conn,
            &inner.hooks,
            &inner.gauges,
            &inner.sharing,
        )
    }

    fn event_stream(
        &self,
        reservation: Arc<reservations::Reservation<H>>,
        format: Format,
        ending: Option<Arc<ConnectionEnd>>,
    ) -> Response<HttpBody> {
        let inner = &self.inner;
        let stop = inner.stop_for(reservation.conn.id);
        let registered = inner.sessions.register(
            Arc::clone(&reservation.conn),
            Arc::clone(&reservation.session),
        );
        let auth = StreamAuth {
            revoked: Box::pin(Arc::clone(&registered.revoked).wait()),
            registered,
            expiry: reservation
                .valid_until
                .map(|at| inner.runtime.sleep_until(at)),
            gauges: Arc::clone(&inner.gauges),
        };
        let body = EventStream::new(
            reservation,
            format,
            inner.runtime.clone(),
            // Incremental delivery has no heartbeat part: every part is a result.
            inner
                .config
                .http_heartbeat
                .filter(|_| format != Format::Mixed),
            stop,
            ending,
            inner.config.max_response_size_bytes(),
            inner.config.sse_retry,
            auth,
        );
        let mut response = Response::new(HttpBody(Kind::Stream(Box::pin(body))));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(http_frame::content_type(format)),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // nginx buffers responses unless told not to.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }

    /// A distinct SSE stream or a multipart response: one operation, its results, the end.
    async fn stream(
        &self,
        format: Format,
        params: Params,
        parts: &Parts,
        peer: Option<SocketAddr>,
        ending: Option<Arc<ConnectionEnd>>,
    ) -> Result<Response<HttpBody>, Refusal> {
        let transport = match format {
            Format::Multipart | Format::Mixed => Transport::Multipart,
            _ => Transport::SseDistinct,
        };
        self.stream_slot()?;
        let conn = self.connection_info(transport, parts, peer);
        let mut end = self.end_guard(&conn, true);
        let (session, valid_until) = self.connect(&conn, &mut end).await?;
        let id = params.operation_id().unwrap_or_else(|| "1".to_owned());
        let mut request = params.into_request();
        if format == Format::Sse
            && let Some(last) = parts.headers.get("last-event-id")
        {
            // What a browser's EventSource sends when it reconnects; it wins over
            // `extensions.lastEventId`. A value that is not text fails as a malformed id.
            let last = String::from_utf8_lossy(last.as_bytes()).trim().to_owned();
            if !last.is_empty() {
                request
                    .extensions
                    .insert("lastEventId".to_owned(), async_graphql::Value::String(last));
            }
        }
        if parts.method == Method::GET && is_mutation(&request, &self.inner.sharing.documents) {
            end.reason = Some(CloseReason::Finished);
            return Err(mutation_over_get());
        }
        // A distinct stream is never pending: it opens at once.
        let reservation = self
            .inner
            .reservations
            .reserve(
                Arc::clone(&conn),
                session,
                valid_until,
                end,
                false,
                self.inner.tracker.token(),
                usize::MAX,
            )
            .map_err(|_end| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "Try again later"))?;
        let start = || self.operation(&id, request, &reservation.session, &conn);
        if reservation.add(id.clone(), usize::MAX, start).is_err() {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Server is shutting down",
            ));
        }
        reservation.open().map_err(|_| {
            Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "Server is shutting down")
        })?;
        Ok(self.event_stream(reservation, format, ending))
    }

    /// Plain GraphQL over HTTP: one operation, one JSON response.
    async fn plain(
        &self,
        wants: Wants,
        params: Params,
        parts: &Parts,
        peer: Option<SocketAddr>,
    ) -> Result<Response<HttpBody>, Refusal> {
        let conn = self.connection_info(Transport::GraphqlHttp, parts, peer);
        let mut end = self.end_guard(&conn, false);
        // A plain request is answered at once: its authorization cannot outlive it.
        let (session, _) = self.connect(&conn, &mut end).await?;
        end.reason = Some(CloseReason::Finished);
        let request = params.into_request();
        match operation_type(&request, &self.inner.sharing.documents) {
            Some(OperationType::Mutation) if parts.method == Method::GET => {
                return Err(mutation_over_get());
            }
            Some(OperationType::Subscription) => {
                return Err(Refusal::new(
                    StatusCode::NOT_ACCEPTABLE,
                    "A subscription streams: send Accept: text/event-stream or \
                     multipart/mixed;subscriptionSpec=\"1.0\"",
                ));
            }
            _ => {}
        }
        let (content_type, strict) = match wants {
            Wants::GraphqlResponse => (GRAPHQL_RESPONSE, true),
            _ => (JSON, false),
        };
        let mut op = self.operation("1", request, &session, &conn);
        let max = self.inner.config.max_response_size_bytes();
        // One result decides: the same policy as every other transport, a panic included
        // (on WebSocket and SSE the scope catches it; here nothing else would).
        let item = std::panic::AssertUnwindSafe(op.next()).catch_unwind().await;
        let mut state = OperationState::new();
        let verdict = match &item {
            Ok(item) => item
                .as_ref()
                .map(|item| policy::decide(&mut state, item.event(), max)),
            Err(_panic) => {
                tracing::warn!(conn = conn.id, "operation panicked");
                Some(policy::decide(&mut state, OperationEvent::Panicked, max))
            }
        };
        let reason = match &verdict {
            Some(Verdict::Fail { reason, .. }) => reason.clone(),
            _ => EndReason::Completed,
        };
        let plain = http_frame::plain(verdict.as_ref(), strict);
        op.finish(reason);
        drop(end);
        let status =
            StatusCode::from_u16(plain.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Ok(response(status, content_type, plain.body))
    }

    /// Single-connection mode: `PUT` reserves a stream and answers its token.
    async fn reserve(
        &self,
        parts: &Parts,
        peer: Option<SocketAddr>,
    ) -> Result<Response<HttpBody>, Refusal> {
        self.stream_slot()?;
        let conn = self.connection_info(Transport::SseSingle, parts, peer);
        let mut end = self.end_guard(&conn, true);
        let (session, valid_until) = self.connect(&conn, &mut end).await?;
        let inner = &self.inner;
        let reserved = inner.reservations.reserve(
            conn,
            session,
            valid_until,
            end,
            true,
            inner.tracker.token(),
            inner.config.max_pending_reservations,
        );
        let reservation = match reserved {
            Ok(r) => r,
            Err(mut end) => {
                end.reason = Some(CloseReason::ConnectionLimit);
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many stream reservations not opened yet: try again later",
                ));
            }
        };
        // Not opened within the handshake timeout (or by shutdown): closed.
        let expiry = {
            let reservation = Arc::clone(&reservation);
            let stop = Arc::clone(&inner.stop);
            let timeout = inner.config.handshake_timeout;
            let sleep = timeout.map(|t| inner.runtime.sleep(t));
            async move {
                let expired = async {
                    match sleep {
                        Some(s) => s.await,
                        None => futures_lite::future::pending().await,
                    }
                    CloseReason::InitTimeout
                };
                let stopped = async {
                    Arc::clone(&stop).wait().await;
                    CloseReason::ServerShutdown
                };
                let reason = futures_lite::future::or(expired, stopped).await;
                if reservation.phase() == Phase::Reserved {
                    tracing::debug!(conn = reservation.conn.id, reason = %reason, "stream reservation closed before it was opened");
                    reservation.close(reason);
                }
            }
        };
        inner.runtime.spawn(Box::pin(expiry));
        Ok(response(
            StatusCode::CREATED,
            TEXT,
            reservation.token.clone(),
        ))
    }

    fn reservation(&self, token: &str) -> Result<Arc<reservations::Reservation<H>>, Refusal> {
        self.inner
            .reservations
            .get_tokened(token)
            .filter(|r| r.phase() != Phase::Closed)
            .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, "Stream not found"))
    }

    /// Single-connection mode: the stream of a reservation, once.
    fn open_stream(
        &self,
        token: &str,
        ending: Option<Arc<ConnectionEnd>>,
    ) -> Result<Response<HttpBody>, Refusal> {
        let reservation = self.reservation(token)?;
        match reservation.open() {
            Ok(()) => Ok(self.event_stream(reservation, Format::SseSingle, ending)),
            Err(Phase::Open) => Err(Refusal::new(StatusCode::CONFLICT, "Stream already open")),
            Err(_) => Err(Refusal::new(StatusCode::NOT_FOUND, "Stream not found")),
        }
    }

    /// Single-connection mode: an operation for a reservation's stream, answered 202.
    fn add_operation(
        &self,
        token: &str,
        params: Params,
        parts: &Parts,
    ) -> Result<Response<HttpBody>, Refusal> {
        let reservation = self.reservation(token)?;
        let id = params
            .operation_id()
            .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "Operation ID is missing"))?;
        if id.len() > self.inner.config.protocol.max_id_length {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Operation ID is too long",
            ));
        }
        let request = params.into_request();
        if parts.method == Method::GET && is_mutation(&request, &self.inner.sharing.documents) {
            return Err(mutation_over_get());
        }
        let start = || self.operation(&id, request, &reservation.session, &reservation.conn);
        match reservation.add(
            id.clone(),
            self.inner.config.protocol.max_subscriptions,
            start,
        ) {
            Ok(()) => {
                let mut response = Response::new(HttpBody::empty());
                *response.status_mut() = StatusCode::ACCEPTED;
                Ok(response)
            }
            Err(AddError::Gone) => Err(Refusal::new(StatusCode::NOT_FOUND, "Stream not found")),
            Err(AddError::Duplicate) => Err(Refusal::new(
                StatusCode::CONFLICT,
                "Operation with ID already exists",
            )),
            Err(AddError::Full) => Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Subscription limit reached",
            )),
        }
    }

    /// Single-connection mode: `DELETE ?operationId=` stops one operation.
    fn stop_operation(
        &self,
        token: &str,
        query: Option<&str>,
    ) -> Result<Response<HttpBody>, Refusal> {
        let reservation = self.reservation(token)?;
        let id = request::query_param(query, "operationId")
            .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "Operation ID is missing"))?;
        reservation.remove(&id, EndReason::ClientStopped);
        Ok(Response::new(HttpBody::empty()))
    }
}

fn preflight() -> Response<HttpBody> {
    let mut response = Response::new(HttpBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

fn is_mutation(request: &GqlRequest, documents: &Documents) -> bool {
    operation_type(request, documents) == Some(OperationType::Mutation)
}

fn mutation_over_get() -> Refusal {
    Refusal::method_not_allowed("Cannot perform a mutation over GET: use POST", "POST")
}
