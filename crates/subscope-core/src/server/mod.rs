//! The server: its builder, the WebSocket connection task every host shares, and a graceful
//! shutdown that returns only when every connection is gone. The standalone hosting (accept
//! loop, hyper, the upgrade) is [`standalone`] (feature `http`).

#[cfg(feature = "http")]
mod h1_stream;
#[cfg(feature = "http")]
pub(crate) mod socket;
#[cfg(feature = "http")]
mod standalone;
#[cfg(feature = "http")]
pub use standalone::Served;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_graphql::Executor;
use futures_lite::future;
use tracing::Instrument;

use crate::documents::Documents;
use crate::operation::Sharing;
use crate::rt::Runtime;
use crate::share::Shares;
use crate::state::State;
use crate::sync::Tracked;
use crate::websocket::{WebSocket, WebSocketError};
use crate::ws_session::{ConnectionParts, WsSession, close_frame, close_handshake};
use crate::{
    CloseReason, Config, ConnectionInfo, Gauges, Hooks, NoHooks, Subprotocol, UpgradeRequest,
};
use subscope_protocol::Machine;

/// A GraphQL subscription server (WebSocket, and with feature `http` the HTTP transports)
/// for one GraphQL schema `E` (any
/// [`async_graphql::Executor`]: a `Schema` or a `dynamic::Schema`), on runtime `R`.
///
/// Cheap to clone (an `Arc`); every clone serves and shuts down the same server.
///
/// # The guarantee
/// When a connection's future returns, or is dropped, every operation it started has been
/// dropped and `on_complete` has run once for it. When [`Server::shutdown`] returns, that
/// holds for every connection of this server. Outside it: operations kept alive by
/// `mem::forget`, tasks a resolver spawns itself, and `panic = "abort"`.
pub struct Server<E, H: Hooks, R> {
    pub(crate) inner: Arc<State<E, H, R>>,
}

impl<E, H: Hooks, R> Clone for Server<E, H, R> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E, H: Hooks, R> std::fmt::Debug for Server<E, H, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.inner.config)
            .field("gauges", &self.inner.gauges.snapshot())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Server`].
#[derive(Debug)]
#[must_use]
pub struct ServerBuilder<E, H, R> {
    executor: E,
    hooks: H,
    runtime: R,
    config: Config,
    gauges: Option<Arc<Gauges>>,
    /// Topics to bind to the server's gauges at `build`.
    topics: Vec<TopicsBinding>,
}

/// Binds one topics instance to the server's gauges.
struct TopicsBinding(Box<dyn FnOnce(Arc<Gauges>) + Send>);

impl std::fmt::Debug for TopicsBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopicsBinding")
    }
}

impl<E: Executor, R: Runtime> ServerBuilder<E, NoHooks, R> {
    /// A builder for `schema` (a `Schema` or `dynamic::Schema`) on `runtime`.
    pub fn new(runtime: R, schema: E) -> Self {
        Self {
            executor: schema,
            hooks: NoHooks,
            runtime,
            config: Config::default(),
            gauges: None,
            topics: Vec::new(),
        }
    }
}

impl<E: Executor, H: Hooks, R: Runtime> ServerBuilder<E, H, R> {
    /// Lifecycle hooks (default: [`NoHooks`]).
    pub fn hooks<H2: Hooks>(self, hooks: H2) -> ServerBuilder<E, H2, R> {
        ServerBuilder {
            executor: self.executor,
            hooks,
            runtime: self.runtime,
            config: self.config,
            gauges: self.gauges,
            topics: self.topics,
        }
    }

    /// Timeouts and limits (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Count into these gauges (for example ones your schema also reads).
    pub fn gauges(mut self, gauges: Arc<Gauges>) -> Self {
        self.gauges = Some(gauges);
        self
    }

    /// Topics your schema's resolvers use: their dropped events, lags, gaps and replays
    /// count in this server's gauges (and its `/metrics`).
    pub fn topics<T: crate::Topics>(mut self, topics: &T) -> Self {
        let fanout = topics.fanout().clone();
        self.topics.push(TopicsBinding(Box::new(move |gauges| {
            fanout.count_into(gauges)
        })));
        self
    }

    /// The server.
    pub fn build(self) -> Server<E, H, R> {
        let gauges = self.gauges.unwrap_or_default();
        for bind in self.topics {
            (bind.0)(Arc::clone(&gauges));
        }
        Server {
            inner: Arc::new(State {
                executor: self.executor,
                hooks: Arc::new(self.hooks),
                runtime: self.runtime,
                sharing: Sharing {
                    shares: Shares::new(self.config.shared_delivery, Arc::clone(&gauges)),
                    identical: self.config.share_identical,
                    documents: Arc::new(Documents::new(
                        self.config.document_cache,
                        Arc::clone(&gauges),
                    )),
                },
                config: self.config,
                gauges,
                stop: Arc::default(),
                force: Arc::default(),
                tracker: Arc::default(),
                next_id: AtomicU64::new(1),
                #[cfg(feature = "http")]
                reservations: Arc::default(),
                sessions: Arc::default(),
            }),
        }
    }
}

impl<E: Executor, R: Runtime> Server<E, NoHooks, R> {
    /// Starts a [`ServerBuilder`] for `schema` on `runtime`.
    pub fn builder(runtime: R, schema: E) -> ServerBuilder<E, NoHooks, R> {
        ServerBuilder::new(runtime, schema)
    }
}

impl<E: Executor, H: Hooks, R: Runtime> Server<E, H, R> {
    /// Ends every live WebSocket connection and HTTP stream whose session `matches` (its
    /// connection, and the data `on_connect` accepted it with): WebSocket closes 4403
    /// `Forbidden`, each HTTP stream's operations get a final `TOKEN_REVOKED` error, then the
    /// stream ends. Returns how many it ended (a connection or stream counts one, whatever
    /// its operations). Each ends on its own task, right after this returns.
    ///
    /// ```
    /// # fn f<E: async_graphql::Executor, H: subscope_core::Hooks, R: subscope_core::rt::Runtime>(
    /// #     server: subscope_core::Server<E, H, R>) {
    /// #[derive(PartialEq)]
    /// struct UserId(u64);
    /// let ended = server.revoke(|session| session.data::<UserId>() == Some(&UserId(7)));
    /// # let _ = ended; }
    /// ```
    pub fn revoke(&self, matches: impl Fn(crate::Session<'_>) -> bool) -> usize {
        let ended = self.inner.sessions.revoke(matches);
        self.inner.gauges.count_revoked(ended);
        if ended > 0 {
            tracing::info!(ended, "sessions revoked");
        }
        ended
    }

    /// Whether the server accepts new work: `false` from the moment [`Server::shutdown`]
    /// begins (what `/readyz` answers).
    pub fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    /// The server's gauges.
    pub fn gauges(&self) -> &Arc<Gauges> {
        &self.inner.gauges
    }

    /// The runtime the server spawns connection tasks on.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }

    /// The server's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Connection tasks alive now (including ones still in the HTTP upgrade).
    pub fn live_tasks(&self) -> usize {
        self.inner.tracker.live()
    }

    /// Serves a socket that is already a WebSocket (for servers that do the upgrade
    /// themselves). `protocol` is the negotiated subprotocol; `None` closes 4406. Check the
    /// Origin before upgrading with [`Server::check_origin`].
    ///
    /// # Cancel safety
    /// Dropping the future drops every operation before `drop` returns.
    pub fn serve_websocket<T: WebSocket>(
        &self,
        ws: T,
        protocol: Option<Subprotocol>,
        request: UpgradeRequest,
    ) -> impl Future<Output = CloseReason> + Send + use<T, E, H, R> {
        // Tracked like `serve_io`, so shutdown waits for sockets another server upgraded.
        // `connection` maps its own output: wrapping it in another async block would hold
        // the connection future twice.
        let connection = self.connection(ws, protocol, request, |reason, _| reason);
        self.track(connection, CloseReason::Dropped)
    }

    /// Applies [`Config::allowed_origins`] to an upgrade request another HTTP server
    /// received: `Err` means answer HTTP 403 and do not upgrade (the refusal is already
    /// counted in [`crate::GaugeSnapshot::origins_refused`] and logged).
    pub fn check_origin(&self, request: &UpgradeRequest) -> Result<(), HandshakeError> {
        self.allow_origin(request.origin(), request.peer)
    }

    /// [`Server::check_origin`] for any request's `Origin`: upgrades and HTTP requests.
    fn allow_origin(
        &self,
        origin: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Result<(), HandshakeError> {
        if self.inner.allows_origin(origin, peer) {
            Ok(())
        } else {
            let origin = origin.unwrap_or_default().to_owned();
            Err(HandshakeError::OriginNotAllowed { origin })
        }
    }

    /// Counts `task` for shutdown, and lets shutdown's forced phase drop it (the future then
    /// resolves to `dropped`). The one place a connection future is tracked.
    fn track<F>(
        &self,
        task: F,
        dropped: F::Output,
    ) -> Tracked<impl Future<Output = F::Output> + use<F, E, H, R>>
    where
        F: Future + Send,
        F::Output: Send + 'static,
    {
        let force = Arc::clone(&self.inner.force).wait();
        let forced = async move {
            force.await;
            dropped
        };
        Tracked::new(future::or(forced, task), self.inner.tracker.token())
    }

    /// Runs one WebSocket connection; returns `finish` of why it ended and the socket.
    fn connection<T: WebSocket, O>(
        &self,
        mut ws: T,
        protocol: Option<Subprotocol>,
        request: UpgradeRequest,
        finish: fn(CloseReason, T) -> O,
    ) -> impl Future<Output = O> + Send + use<T, E, H, R, O> {
        let inner = Arc::clone(&self.inner);
        async move {
            let refuse = match protocol {
                None => Some(CloseReason::SubprotocolNotAcceptable),
                Some(_) if inner.stop.is_raised() => Some(CloseReason::ServerShutdown),
                Some(_)
                    if !inner
                        .gauges
                        .try_open_connection(inner.config.max_connections) =>
                {
                    Some(CloseReason::ConnectionLimit)
                }
                Some(_) => None,
            };
            let (Some(protocol), None) = (protocol, &refuse) else {
                let reason = refuse.unwrap_or(CloseReason::SubprotocolNotAcceptable);
                inner.gauges.count_close(reason.kind());
                let frame = Some(close_frame(&reason));
                let deadline = inner.runtime.sleep(inner.config.close_timeout);
                future::or(
                    close_handshake(&mut ws, Default::default(), frame),
                    deadline,
                )
                .await;
                return finish(reason, ws);
            };
            let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
            let conn = Arc::new(ConnectionInfo::new(id, protocol, request));
            let span = tracing::debug_span!(
                "connection",
                id,
                subprotocol = %protocol,
                peer = ?conn.peer,
                close_code = tracing::field::Empty,
                close_reason = tracing::field::Empty,
            );
            let machine = Machine::new(protocol, &inner.config.protocol, inner.runtime.now());
            let parts = ConnectionParts {
                executor: inner.executor.clone(),
                hooks: Arc::clone(&inner.hooks),
                gauges: Arc::clone(&inner.gauges),
                timer: inner.runtime.clone(),
                close_timeout: inner.config.close_timeout,
                detect_leaks: inner.config.detect_leaks,
                sharing: inner.sharing.clone(),
                stop: inner.stop_for(id),
                sessions: Arc::clone(&inner.sessions),
                span: span.clone(),
            };
            let (reason, ws) = WsSession::new(ws, machine, conn, parts)
                .run()
                .instrument(span)
                .await;
            finish(reason, ws)
        }
    }

    /// Graceful shutdown: stop accepting (readiness turns false); close every connection
    /// 1001 `Going away` and end every HTTP stream (each drops its operations first),
    /// spread over [`Config::drain`] if set; wait up to the drain window plus `grace` for
    /// them to finish; then drop whatever remains. Returns only when every connection future of this server has been
    /// dropped, so every operation's `Drop` and `on_complete` have run.
    pub fn shutdown(&self, grace: Duration) -> impl Future<Output = ()> + Send + use<E, H, R> {
        let inner = Arc::clone(&self.inner);
        async move {
            inner.stop.raise();
            let drained = async {
                inner.tracker.wait().await;
                true
            };
            let waited = async {
                inner.runtime.sleep(inner.config.drain + grace).await;
                false
            };
            if !future::or(drained, waited).await {
                tracing::info!(
                    remaining = inner.tracker.live(),
                    "grace period over: dropping remaining connections"
                );
                inner.force.raise();
                // HTTP streams whose body hyper no longer polls (a stuck peer under
                // another server): their operations are dropped from here.
                #[cfg(feature = "http")]
                inner.reservations.close_all(&CloseReason::ServerShutdown);
                inner.tracker.wait().await;
            }
        }
    }
}

/// Why a stream never became a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The client did not finish the upgrade within the handshake timeout.
    #[error("handshake timed out")]
    TimedOut,
    /// The upgrade came from a browser origin that [`Config::allowed_origins`] does not
    /// list; it was answered with HTTP 403.
    #[error("origin not allowed: {origin:?}")]
    OriginNotAllowed {
        /// The request's `Origin` header.
        origin: String,
    },
    /// The upgrade request was invalid or the socket failed.
    #[error("websocket handshake failed: {0}")]
    WebSocket(#[source] WebSocketError),
    /// The HTTP connection failed before it ended cleanly (a malformed request, a reset,
    /// an I/O error); the message is hyper's.
    #[error("http connection failed: {0}")]
    Http(String),
    /// The TLS handshake failed (the client's hello was not TLS, no shared protocol or
    /// cipher, a reset mid-handshake); the client got an alert when it could.
    #[cfg(feature = "tls")]
    #[error("tls handshake failed: {0}")]
    Tls(#[source] std::io::Error),
}
