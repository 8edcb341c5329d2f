//! The generic server: accept loop, handshake with subprotocol negotiation, connection
//! tasks, and a graceful shutdown that returns only when every connection is gone.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_graphql::Executor;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use tracing::Instrument;

use crate::driver::{ConnectionParts, Driver, Transport, close_frame, close_handshake};
use crate::machine::Machine;
use crate::rt::Runtime;
use crate::sync::{Signal, Tracked, Tracker};
use crate::{CloseReason, Config, ConnectionInfo, Gauges, Hooks, NoHooks, Subprotocol, negotiate};

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
        Server {
            inner: Arc::new(Inner {
                executor: self.executor,
                hooks: Arc::new(self.hooks),
                runtime: self.runtime,
                config: self.config,
                gauges: self.gauges.unwrap_or_default(),
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
    /// each in its own task. Returns `Ok(())` after shutdown was requested.
    ///
    /// # Cancel safety
    /// Dropping this future stops accepting; connections already accepted keep running
    /// until they end or the server shuts down.
    pub fn serve(
        &self,
        listener: R::Listener,
    ) -> impl Future<Output = io::Result<()>> + Send + use<E, H, R> {
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
                let accepted = async { Some(inner.runtime.accept(&listener).await) };
                match future::or(stopped, accepted).await {
                    None => return Ok(()),
                    Some(Ok((io, peer))) => server.spawn_io(io, Some(peer)),
                    Some(Err(err)) => {
                        // Out of file descriptors and friends: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        inner.runtime.sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }

    /// Serves one already-accepted stream in a new task (HTTP upgrade included).
    pub fn spawn_io<S>(&self, io: S, peer: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let task = self.serve_io(io, peer);
        self.inner.runtime.spawn(Box::pin(async move {
            task.await;
        }));
    }

    /// Serves one already-accepted stream: HTTP upgrade (bounded by the handshake
    /// timeout), subprotocol negotiation, then the connection. Counted by shutdown.
    ///
    /// # Cancel safety
    /// Dropping the future drops every operation of the connection before `drop` returns.
    pub fn serve_io<S>(
        &self,
        io: S,
        peer: Option<SocketAddr>,
    ) -> impl Future<Output = Option<CloseReason>> + Send + 'static
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
                Ok((ws, protocol)) => {
                    let (reason, ws) = server.connection(ws, protocol, peer).await;
                    if reason.sends_close_frame() {
                        // Our close frame is out; let the peer's unread bytes drain so the
                        // kernel does not answer them with a reset that would eat it.
                        let linger = lingering_close(ws.into_inner());
                        let bound = inner.runtime.sleep(inner.config.close_timeout);
                        future::or(linger, bound).await;
                    }
                    Some(reason)
                }
                Err(err) => {
                    tracing::debug!(?peer, error = %err, "handshake failed");
                    None
                }
            }
        };
        self.track(task, None)
    }

    /// Serves a socket that is already a WebSocket (for servers that do the upgrade
    /// themselves). `protocol` is the negotiated subprotocol; `None` closes 4406.
    ///
    /// # Cancel safety
    /// Dropping the future drops every operation before `drop` returns.
    pub fn serve_websocket<T: Transport>(
        &self,
        ws: T,
        protocol: Option<Subprotocol>,
        peer: Option<SocketAddr>,
    ) -> impl Future<Output = CloseReason> + Send + use<T, E, H, R> {
        // Tracked like `serve_io`, so shutdown waits for sockets another server upgraded.
        let connection = self.connection(ws, protocol, peer);
        self.track(async move { connection.await.0 }, CloseReason::Dropped)
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
        peer: Option<SocketAddr>,
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
            let conn = Arc::new(ConnectionInfo::new(id, peer, protocol));
            let span = tracing::debug_span!(
                "connection",
                id,
                subprotocol = %protocol,
                ?peer,
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

/// Why an HTTP upgrade failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The client did not finish the upgrade within the handshake timeout.
    #[error("handshake timed out")]
    TimedOut,
    /// The upgrade request was invalid or the socket failed.
    #[error("websocket handshake failed: {0}")]
    WebSocket(#[from] async_tungstenite::tungstenite::Error),
}

/// tungstenite's initial read buffer (it grows to hold the largest frame read).
pub(crate) const READ_BUFFER: usize = 8 * 1024;

/// Bytes tungstenite buffers before it writes to the socket (and the most it holds beyond
/// one frame once a write blocks).
pub(crate) const WRITE_BUFFER: usize = 128 * 1024;

/// The WebSocket settings subscope uses for a server socket.
pub fn websocket_config(config: &Config) -> WebSocketConfig {
    let max = config.max_message_size;
    // The driver refuses any response above `max_response_size` (the operation ends with
    // an error), so one frame of that size always fits behind a full write batch.
    let largest_frame = config.max_response_size.saturating_add(1024);
    WebSocketConfig::default()
        // tungstenite allocates its read buffer eagerly (128 KiB by default) for every
        // socket; subscription clients send small messages, and a larger one still fits
        // (the buffer grows for it), so idle connections stay cheap.
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        // Bounded outbound memory: what tungstenite may buffer beyond one batch.
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER.saturating_add(largest_frame))
}

/// Performs the HTTP upgrade and picks the subprotocol.
pub async fn handshake<S>(
    io: S,
    config: &Config,
) -> Result<(WebSocketStream<S>, Option<Subprotocol>), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let enabled = config.subprotocols.clone();
    let chosen = Arc::new(std::sync::Mutex::new(None));
    let slot = Arc::clone(&chosen);
    // The callback's error type is tungstenite's own HTTP response; it is never built here.
    #[allow(clippy::result_large_err)]
    let callback = move |request: &Request, mut response: Response| {
        let offered = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let protocol = negotiate(offered, &enabled);
        if let Some(p) = protocol {
            response.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static(p.token()),
            );
        }
        if let Ok(mut slot) = slot.lock() {
            *slot = protocol;
        }
        Ok::<_, ErrorResponse>(response)
    };
    let ws = async_tungstenite::accept_hdr_async_with_config(
        io,
        callback,
        Some(websocket_config(config)),
    )
    .await?;
    let protocol = chosen.lock().ok().and_then(|p| *p);
    Ok((ws, protocol))
}
