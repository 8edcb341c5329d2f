//! The generic server: accept loop, handshake with subprotocol negotiation, connection
//! tasks, and a graceful shutdown that returns only when every connection is gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_graphql::Executor;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use http::{HeaderValue, StatusCode};
use tracing::Instrument;

use crate::driver::{ConnectionParts, Driver, close_frame, close_handshake};
use crate::machine::Machine;
use crate::operation::Sharing;
use crate::rt::{Listener, Runtime};
use crate::share::Shares;
use crate::sync::{Signal, Tracked, Tracker};
use crate::transport::{Transport, Tungstenite, websocket_config};
use crate::{
    CloseReason, Config, ConnectionInfo, Gauges, Hooks, NoHooks, Subprotocol, UpgradeRequest,
    negotiate,
};

/// A GraphQL-over-WebSocket server for one executor, on runtime `R`.
///
/// Cheap to clone (an `Arc`); every clone serves and shuts down the same server.
///
/// # The guarantee
/// When a connection's future returns, or is dropped, every operation it started has been
/// dropped and `on_complete` has run once for it. When [`Server::shutdown`] returns, that
/// holds for every connection of this server. Outside it: operations kept alive by
/// `mem::forget`, tasks a resolver spawns itself, and `panic = "abort"`.
pub struct Server<E, H, R> {
    inner: Arc<Inner<E, H, R>>,
}

struct Inner<E, H, R> {
    executor: E,
    hooks: Arc<H>,
    runtime: R,
    config: Config,
    gauges: Arc<Gauges>,
    stop: Arc<Signal>,
    force: Arc<Signal>,
    tracker: Arc<Tracker>,
    next_id: AtomicU64,
    /// Shared executions of this server's operations.
    shares: Arc<Shares>,
}

impl<E, H, R> Clone for Server<E, H, R> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E, H, R> std::fmt::Debug for Server<E, H, R> {
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
}

impl<E: Executor, R: Runtime> ServerBuilder<E, NoHooks, R> {
    /// A builder for `executor` (a `Schema` or `dynamic::Schema`) on `runtime`.
    pub fn new(runtime: R, executor: E) -> Self {
        Self {
            executor,
            hooks: NoHooks,
            runtime,
            config: Config::default(),
            gauges: None,
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

    /// The server.
    pub fn build(self) -> Server<E, H, R> {
        let gauges = self.gauges.unwrap_or_default();
        Server {
            inner: Arc::new(Inner {
                executor: self.executor,
                hooks: Arc::new(self.hooks),
                runtime: self.runtime,
                shares: Shares::new(self.config.shared_delivery, Arc::clone(&gauges)),
                config: self.config,
                gauges,
                stop: Arc::default(),
                force: Arc::default(),
                tracker: Arc::default(),
                next_id: AtomicU64::new(1),
            }),
        }
    }
}

impl<E: Executor, R: Runtime> Server<E, NoHooks, R> {
    /// Starts a [`ServerBuilder`] for `executor` on `runtime`.
    pub fn builder(runtime: R, executor: E) -> ServerBuilder<E, NoHooks, R> {
        ServerBuilder::new(runtime, executor)
    }
}

impl<E: Executor, H: Hooks, R: Runtime> Server<E, H, R> {
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

    /// Accepts connections from `listener` until [`Server::shutdown`] is called, serving
    /// each in its own task; resolves once shutdown was requested. Accept errors (out of
    /// file descriptors and the like) are logged and retried after 50 ms, never returned.
    ///
    /// # Cancel safety
    /// Dropping this future stops accepting; connections already accepted keep running
    /// until they end or the server shuts down.
    pub fn serve<L: Listener>(
        &self,
        mut listener: L,
    ) -> impl Future<Output = ()> + Send + use<E, H, R, L> {
        let server = self.clone();
        // The accept loop counts as a live task, so shutdown cannot return while it could
        // still spawn a connection.
        let token = self.inner.tracker.token();
        async move {
            let _token = token;
            let inner = &server.inner;
            loop {
                let stopped = async {
                    Arc::clone(&inner.stop).wait().await;
                    None
                };
                let accepted = async { Some(listener.accept().await) };
                match future::or(stopped, accepted).await {
                    None => return,
                    Some(Ok((io, peer))) => server.spawn_io(io, peer),
                    Some(Err(err)) => {
                        // Out of file descriptors and friends: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        inner.runtime.sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }

    /// Serves one already-accepted stream in a new task (HTTP upgrade included). The task's
    /// outcome is logged; use [`Server::serve_io`] to await it yourself.
    pub fn spawn_io<S>(&self, io: S, peer: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let task = self.serve_io(io, peer);
        self.inner.runtime.spawn(Box::pin(async move {
            let _ = task.await;
        }));
    }

    /// Serves one already-accepted stream: HTTP upgrade (bounded by the handshake
    /// timeout), Origin check, subprotocol negotiation, then the connection. Counted by
    /// shutdown. Resolves to why the connection ended, or to why there never was one.
    ///
    /// # Cancel safety
    /// Dropping the future drops every operation of the connection before `drop` returns.
    pub fn serve_io<S>(
        &self,
        io: S,
        peer: Option<SocketAddr>,
    ) -> impl Future<Output = Result<CloseReason, HandshakeError>> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let server = self.clone();
        let task = async move {
            let inner = &server.inner;
            let handshake = handshake(io, &inner.config);
            let timeout = async {
                match inner.config.handshake_timeout {
                    Some(limit) => inner.runtime.sleep(limit).await,
                    None => future::pending().await,
                }
                Err(HandshakeError::TimedOut)
            };
            match future::or(handshake, timeout).await {
                Ok((ws, protocol, request)) => {
                    let request = request.with_peer(peer);
                    let (reason, ws) = server.connection(ws, protocol, request).await;
                    if reason.sends_close_frame() {
                        // Our close frame is out; let the peer's unread bytes drain so the
                        // kernel does not answer them with a reset that would eat it.
                        let linger = lingering_close(ws.into_inner().into_inner());
                        let bound = inner.runtime.sleep(inner.config.close_timeout);
                        future::or(linger, bound).await;
                    }
                    Ok(reason)
                }
                Err(err) => {
                    if let HandshakeError::OriginNotAllowed { origin } = &err {
                        server.refused_origin(origin, peer);
                    } else {
                        tracing::debug!(?peer, error = %err, "handshake failed");
                    }
                    Err(err)
                }
            }
        };
        self.track(task, Ok(CloseReason::Dropped))
    }

    /// Serves a socket that is already a WebSocket (for servers that do the upgrade
    /// themselves). `protocol` is the negotiated subprotocol; `None` closes 4406. Check the
    /// Origin before upgrading with [`Server::check_origin`].
    ///
    /// # Cancel safety
    /// Dropping the future drops every operation before `drop` returns.
    pub fn serve_websocket<T: Transport>(
        &self,
        ws: T,
        protocol: Option<Subprotocol>,
        request: UpgradeRequest,
    ) -> impl Future<Output = CloseReason> + Send + use<T, E, H, R> {
        // Tracked like `serve_io`, so shutdown waits for sockets another server upgraded.
        let connection = self.connection(ws, protocol, request);
        self.track(async move { connection.await.0 }, CloseReason::Dropped)
    }

    /// Applies [`Config::allowed_origins`] to an upgrade request another HTTP server
    /// received: `Err` means answer HTTP 403 and do not upgrade (the refusal is already
    /// counted in [`crate::GaugeSnapshot::origins_refused`] and logged).
    pub fn check_origin(&self, request: &UpgradeRequest) -> Result<(), HandshakeError> {
        let origin = request.origin();
        if self.inner.config.is_origin_allowed(origin) {
            return Ok(());
        }
        let origin = origin.unwrap_or_default().to_owned();
        self.refused_origin(&origin, request.peer);
        Err(HandshakeError::OriginNotAllowed { origin })
    }

    fn refused_origin(&self, origin: &str, peer: Option<SocketAddr>) {
        self.inner.gauges.count_origin_refused();
        tracing::info!(?peer, origin, "upgrade refused (403): origin not allowed");
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

    /// Runs one WebSocket connection; returns why it ended and the socket.
    fn connection<T: Transport>(
        &self,
        mut ws: T,
        protocol: Option<Subprotocol>,
        request: UpgradeRequest,
    ) -> impl Future<Output = (CloseReason, T)> + Send + use<T, E, H, R> {
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
                return (reason, ws);
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
            let machine = Machine::new(protocol, &inner.config, inner.runtime.now());
            let parts = ConnectionParts {
                executor: inner.executor.clone(),
                hooks: Arc::clone(&inner.hooks),
                gauges: Arc::clone(&inner.gauges),
                timer: inner.runtime.clone(),
                close_timeout: inner.config.close_timeout,
                detect_leaks: inner.config.detect_leaks,
                sharing: Sharing {
                    shares: Arc::clone(&inner.shares),
                    identical: inner.config.share_identical,
                },
                stop: Box::pin(Arc::clone(&inner.stop).wait()),
                span: span.clone(),
            };
            Driver::new(ws, machine, conn, parts)
                .run()
                .instrument(span)
                .await
        }
    }

    /// Graceful shutdown: stop accepting; close every connection 1001 `Going away` (each
    /// drops its operations first); wait up to `grace` for them to finish; then drop
    /// whatever remains. Returns only when every connection future of this server has been
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
                inner.runtime.sleep(grace).await;
                false
            };
            if !future::or(drained, waited).await {
                tracing::info!(
                    remaining = inner.tracker.live(),
                    "grace period over: dropping remaining connections"
                );
                inner.force.raise();
                inner.tracker.wait().await;
            }
        }
    }
}

/// Half-closes our side, then reads and discards until the peer closes too.
async fn lingering_close<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    if io.close().await.is_err() {
        return;
    }
    let mut sink = [0u8; 8192];
    while let Ok(1..) = io.read(&mut sink).await {}
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
    WebSocket(#[source] crate::transport::TransportError),
}

/// What the upgrade callback learned.
#[derive(Default)]
struct Seen {
    protocol: Option<Subprotocol>,
    request: UpgradeRequest,
    refused_origin: Option<String>,
}

/// Performs the HTTP upgrade: checks the Origin, picks the subprotocol, keeps the request.
async fn handshake<S>(
    io: S,
    config: &Config,
) -> Result<(Tungstenite<S>, Option<Subprotocol>, UpgradeRequest), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut seen = Seen::default();
    // The callback's error type is tungstenite's own HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        let upgrade = UpgradeRequest::new(request.uri().clone(), request.headers().clone());
        if !config.is_origin_allowed(upgrade.origin()) {
            seen.refused_origin = Some(upgrade.origin().unwrap_or_default().to_owned());
            let mut refusal = ErrorResponse::new(Some("Origin not allowed".to_owned()));
            *refusal.status_mut() = StatusCode::FORBIDDEN;
            return Err(refusal);
        }
        let offered = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let protocol = negotiate(offered, &config.subprotocols);
        if let Some(p) = protocol {
            response.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static(p.token()),
            );
        }
        seen.protocol = protocol;
        seen.request = upgrade;
        Ok(response)
    };
    // The callback borrows `seen` until the upgrade is done; then it is read.
    let result = async_tungstenite::accept_hdr_async_with_config(
        io,
        callback,
        Some(websocket_config(config)),
    )
    .await;
    match result {
        Ok(ws) => Ok((Tungstenite::from(ws), seen.protocol, seen.request)),
        Err(_) if seen.refused_origin.is_some() => Err(HandshakeError::OriginNotAllowed {
            origin: seen.refused_origin.unwrap_or_default(),
        }),
        Err(err) => Err(HandshakeError::WebSocket(err.into())),
    }
}
