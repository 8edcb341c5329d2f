//! The standalone server (feature `http`): the accept loop, one connection per accepted
//! socket (TLS when configured, then hyper's HTTP/2 or HTTP/1.1) answering GraphQL over
//! HTTP and the WebSocket upgrade (RFC 6455, or RFC 8441 on HTTP/2), the upgraded socket's
//! WebSocket stack, and entry points for other hyper-based servers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_graphql::Executor;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::Role;
use bytes::Bytes;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};

use super::h1_stream::First;
use super::socket::{Conn, sniff_preface};
use super::{HandshakeError, Server};
use crate::bounds::HTTP_BUFFER;
use crate::compression::{Agreed, Deflated};
use crate::over_http::{
    ConnectionEnd, Http, HttpBody, HyperIo, HyperTimer, Outcome, Prefixed, UpgradedIo,
    accept_connect, accept_upgrade, h2, is_extended_connect, is_websocket_upgrade,
};
use crate::rt::{Listener, Runtime};
use crate::websocket::{Tungstenite, WebSocketError, websocket_config};
use crate::{CloseReason, Hooks};

impl<E: Executor, H: Hooks, R: Runtime> Server<E, H, R> {
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

    /// Serves one already-accepted stream: the TLS handshake when `Config::tls` is set
    /// (bounded, with the first bytes, by the handshake timeout), then HTTP/2 (ALPN `h2`
    /// or the cleartext preface: every stream a request, or a WebSocket by RFC 8441) or
    /// HTTP/1.1 (requests, or the WebSocket upgrade: Origin check, subprotocol
    /// negotiation, then the connection). Counted by shutdown. Resolves to what it served
    /// ([`Served`]), or to why it could serve nothing.
    /// `io`'s `poll_close` must half-close (see [`Listener::Io`]).
    ///
    /// # Cancel safety
    /// Dropping the future drops every operation of the connection before `drop` returns.
    pub fn serve_io<S>(
        &self,
        io: S,
        peer: Option<SocketAddr>,
    ) -> impl Future<Output = Result<Served, HandshakeError>> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let server = self.clone();
        let task = async move {
            let inner = &server.inner;
            let (io, h2) = server.prepare(io, peer).await?;
            if h2 {
                return Box::pin(server.h2_phase(io, peer)).await;
            }
            // A first request that opens an event stream is served without hyper's
            // buffers (see `h1_stream`); hyper serves everything else.
            let io = match Box::pin(server.first_request(io, peer)).await {
                First::Hyper(io) => io,
                First::Ended(result) => return result,
            };
            // The HTTP phase in its own allocation: hyper's connection state is freed
            // before a WebSocket runs, instead of sizing this task for its lifetime.
            let (served, next) = Box::pin(server.http_phase(io, peer)).await;
            match next {
                Some(Outcome::Upgrade {
                    on_upgrade,
                    protocol,
                    request,
                    deflate,
                }) => {
                    let upgraded = on_upgrade.await.map_err(|e| {
                        HandshakeError::WebSocket(WebSocketError::Other(Box::new(e)))
                    })?;
                    let Ok(parts) = upgraded.downcast::<HyperIo<Prefixed<Conn<S>>, R>>() else {
                        unreachable!("the upgraded socket is the one we served")
                    };
                    let socket = Prefixed::new(parts.read_buf, parts.io.io);
                    let ws = server.websocket(socket, deflate.as_ref()).await;
                    let request = (*request).with_peer(peer);
                    let (reason, ws) = server
                        .connection(Tungstenite::from(ws), protocol, request, |r, ws| (r, ws))
                        .await;
                    if reason.sends_close_frame() {
                        // Our close frame is out; let the peer's unread bytes drain so the
                        // kernel does not answer them with a reset that would eat it.
                        let linger = lingering_close(into_socket(ws));
                        let bound = inner.runtime.sleep(inner.config.close_timeout);
                        future::or(linger, bound).await;
                    }
                    Ok(Served::WebSocket(reason))
                }
                Some(Outcome::OriginRefused(origin)) => {
                    server.inner.refused_origin(&origin, peer);
                    Err(HandshakeError::OriginNotAllowed { origin })
                }
                None => match served {
                    Err(e) if e.is_timeout() => {
                        tracing::debug!(?peer, "no complete request within the handshake timeout");
                        Err(HandshakeError::TimedOut)
                    }
                    Err(e) => {
                        tracing::debug!(?peer, error = %e, "http connection failed");
                        Err(HandshakeError::Http(e.to_string()))
                    }
                    Ok(()) => Ok(Served::Http),
                },
            }
        };
        self.track(task, Ok(Served::WebSocket(CloseReason::Dropped)))
    }

    /// The socket's first bytes, within the handshake timeout: the TLS handshake when TLS
    /// is configured, then HTTP/2 (ALPN `h2`, or the cleartext preface) or HTTP/1.1.
    async fn prepare<S>(
        &self,
        io: S,
        peer: Option<SocketAddr>,
    ) -> Result<(Prefixed<Conn<S>>, bool), HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let inner = &self.inner;
        let handshake = async {
            #[cfg(feature = "tls")]
            let mut conn = match &inner.config.tls {
                Some(tls) => tls.accept(io).await.map_err(|e| {
                    inner.gauges.count_tls_failure();
                    tracing::debug!(?peer, error = %e, "TLS handshake failed");
                    HandshakeError::Tls(e)
                })?,
                None => Conn::Plain(io),
            };
            #[cfg(not(feature = "tls"))]
            let mut conn = Conn::Plain(io);
            if conn.alpn_h2() {
                return Ok((Prefixed::new(Bytes::new(), conn), true));
            }
            let (first, h2) = sniff_preface(&mut conn)
                .await
                .map_err(|e| HandshakeError::Http(e.to_string()))?;
            Ok((Prefixed::new(Bytes::from(first), conn), h2))
        };
        let Some(limit) = inner.config.handshake_timeout else {
            return handshake.await;
        };
        let timeout = async {
            inner.runtime.sleep(limit).await;
            tracing::debug!(
                ?peer,
                "no TLS handshake or first bytes within the handshake timeout"
            );
            Err(HandshakeError::TimedOut)
        };
        future::or(handshake, timeout).await
    }

    /// Serves HTTP/2 on `io` until the connection ends: every request as on HTTP/1.1,
    /// WebSocket over extended CONNECT (RFC 8441), each stream's task inside this future.
    async fn h2_phase<S>(
        &self,
        io: Prefixed<Conn<S>>,
        peer: Option<SocketAddr>,
    ) -> Result<Served, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let inner = &self.inner;
        let runtime = inner.runtime.clone();
        let ending = Arc::new(ConnectionEnd::default());
        let tasks = h2::StreamTasks::default();
        let stalls = h2::Stalls::default();
        let write_timeout = inner.config.protocol.write_timeout;
        let io = HyperIo::new(io, runtime.clone(), write_timeout, Arc::clone(&ending));
        // Cleared before the connection and its streams drop (see the rebinding below),
        // so the streams dropped with this future read `Dropped`, not a client's reset.
        let alive = h2::Alive::new();
        let service = {
            let (server, ending, tasks, stalls, alive) = (
                self.clone(),
                Arc::clone(&ending),
                tasks.clone(),
                stalls.clone(),
                Arc::clone(&alive.0),
            );
            hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                let (server, tasks, stalls, alive) = (
                    server.clone(),
                    tasks.clone(),
                    stalls.clone(),
                    Arc::clone(&alive),
                );
                // This stream's verdict, under the connection's.
                let end = Arc::new(ConnectionEnd::stream_of(&ending));
                async move {
                    let runtime = server.inner.runtime.clone();
                    let watch = |b| stalls.watch(b, runtime, Arc::clone(&end), alive);
                    if is_extended_connect(&request)
                        && request.uri().path() == server.inner.config.graphql_path
                    {
                        let response = server.connect_h2(&mut request, peer, &tasks);
                        return Ok::<_, Infallible>(response.map(watch));
                    }
                    let response = Http::new(Arc::clone(&server.inner))
                        .serve(request, peer, Some(Arc::clone(&end)))
                        .await;
                    Ok(response.map(watch))
                }
            })
        };
        let mut builder = http2::Builder::new(tasks.clone());
        builder
            .timer(HyperTimer(runtime.clone()))
            .enable_connect_protocol()
            .max_concurrent_streams(h2::MAX_STREAMS)
            .initial_stream_window_size(h2::RECV_WINDOW)
            .initial_connection_window_size(h2::RECV_WINDOW)
            .max_header_list_size(h2::MAX_HEADER_LIST)
            // What hyper buffers per stream for a slow reader, as on HTTP/1.1.
            .max_send_buf_size(HTTP_BUFFER)
            .keep_alive_interval(inner.config.protocol.keepalive_interval);
        if let Some(timeout) = inner.config.protocol.keepalive_timeout {
            builder.keep_alive_timeout(timeout);
        }
        let mut conn = std::pin::pin!(builder.serve_connection(io, service));
        let stop = inner.stop_for(inner.next_id.fetch_add(1, Ordering::Relaxed));
        let stuck = async {
            match write_timeout {
                Some(limit) => stalls.stuck(&runtime, limit).await,
                None => future::pending().await,
            }
        };
        let mut stuck = std::pin::pin!(stuck);
        let mut streams = std::pin::pin!(tasks.run());
        let mut stop = std::pin::pin!(stop);
        // Rebound last, so dropped first: locals drop in reverse order.
        let _alive = alive;
        let mut stopping = false;
        let served = future::poll_fn(|cx| {
            use std::task::Poll;
            if !stopping && stop.as_mut().poll(cx).is_ready() {
                // GOAWAY: no new streams; the open ones end as shutdown ends them.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            if let Poll::Ready(served) = conn.as_mut().poll(cx) {
                return Poll::Ready(Some(served));
            }
            let _ = streams.as_mut().poll(cx);
            if stuck.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        match served {
            Some(Ok(())) => Ok(Served::Http),
            Some(Err(e)) => {
                // A protocol error (a flood, a malformed frame: hyper sent GOAWAY) or the
                // socket failed: the peer is gone for every stream still open.
                ending.set(CloseReason::PeerGone);
                tracing::debug!(?peer, error = %e, "http/2 connection failed");
                Err(HandshakeError::Http(e.to_string()))
            }
            None => {
                ending.set(CloseReason::WriteTimeout);
                inner.gauges.count_h2_stalled();
                tracing::warn!(
                    ?peer,
                    "an HTTP/2 stream's flow-control window stayed shut past the write timeout: connection cut"
                );
                Err(HandshakeError::Http(
                    "flow-control window never opened".into(),
                ))
            }
        }
    }

    /// Answers an RFC 8441 WebSocket on one HTTP/2 stream; the WebSocket then runs in
    /// the connection's own scope.
    fn connect_h2(
        &self,
        request: &mut http::Request<Incoming>,
        peer: Option<SocketAddr>,
        tasks: &h2::StreamTasks,
    ) -> http::Response<HttpBody> {
        let (response, outcome) = accept_connect(&self.inner.config, request);
        if let Some(task) = self.websocket_after_upgrade(outcome, peer) {
            tasks.push(task);
        }
        response
    }

    /// Serves HTTP/1.1 on `io` until the connection ends or is upgraded; returns hyper's
    /// verdict and what an upgrade request left to do.
    async fn http_phase<S>(
        &self,
        io: Prefixed<Conn<S>>,
        peer: Option<SocketAddr>,
    ) -> (Result<(), hyper::Error>, Option<Outcome>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let server = self;
        let inner = &self.inner;
        let ending = Arc::new(ConnectionEnd::default());
        let outcome: Arc<Mutex<Option<Outcome>>> = Arc::default();
        let io = HyperIo::new(
            io,
            inner.runtime.clone(),
            inner.config.protocol.write_timeout,
            Arc::clone(&ending),
        );
        let service = {
            let (server, ending, outcome) =
                (server.clone(), Arc::clone(&ending), Arc::clone(&outcome));
            hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                let (server, ending, outcome) =
                    (server.clone(), Arc::clone(&ending), Arc::clone(&outcome));
                async move {
                    // An upgrade elsewhere than the GraphQL path is answered like any
                    // request there (404, or a probe).
                    if is_websocket_upgrade(request.headers())
                        && request.uri().path() == server.inner.config.graphql_path
                    {
                        let (response, next) = accept_upgrade(&server.inner.config, &mut request);
                        if let Some(next) = next {
                            *outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(next);
                        }
                        return Ok::<_, Infallible>(response);
                    }
                    Ok(Http::new(Arc::clone(&server.inner))
                        .serve(request, peer, Some(ending))
                        .await)
                }
            })
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(HyperTimer(inner.runtime.clone()))
            // Also bounds how long an idle keep-alive connection waits for a request.
            .header_read_timeout(inner.config.handshake_timeout)
            // What hyper may hold for a slow reader before it stops polling the body
            // (its default is ~408 KiB): with one batch in flight, an HTTP stream's
            // outbound memory stays near the WebSocket driver's bound. Also the largest
            // request head.
            .max_buf_size(HTTP_BUFFER);
        let mut conn = std::pin::pin!(builder.serve_connection(io, service).with_upgrades());
        // Its own point of the drain window: an idle keep-alive connection stays open until
        // then, so a probe on it reads `/readyz` 503 rather than a closed socket.
        let stop = inner.stop_for(inner.next_id.fetch_add(1, Ordering::Relaxed));
        let served = future::or(async { Some(conn.as_mut().await) }, async {
            stop.await;
            None
        })
        .await;
        let served = match served {
            Some(served) => served,
            None => {
                // Idle keep-alive connections close now; streams end by themselves.
                conn.as_mut().graceful_shutdown();
                conn.as_mut().await
            }
        };
        let next = outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        (served, next)
    }

    /// Answers a WebSocket upgrade request another hyper-based HTTP server received (axum,
    /// or hyper itself), exactly as the standalone server answers it: RFC 6455's checks,
    /// the Origin allow-list, the subprotocol, permessage-deflate when
    /// [`Config::deflate`](crate::Config::deflate) is on. Send the returned response; when it is
    /// `101 Switching Protocols`, the connection runs on the server's runtime once the HTTP
    /// server hands the socket over (hyper's `OnUpgrade`, which hyper and axum put in the
    /// request's extensions when serving with upgrades).
    pub fn serve_upgrade<B>(
        &self,
        mut request: http::Request<B>,
        peer: Option<SocketAddr>,
    ) -> http::Response<HttpBody> {
        let (response, outcome) = accept_upgrade(&self.inner.config, &mut request);
        if let Some(task) = self.websocket_after_upgrade(outcome, peer) {
            self.inner.runtime.spawn(task);
        }
        response
    }

    /// What an answered upgrade (HTTP/1.1's, or RFC 8441's on an HTTP/2 stream) leaves to
    /// run: once hyper hands the stream over, the WebSocket on it (`None` when there is
    /// nothing to run; a refused origin is counted and logged here). The caller decides
    /// where the task runs: the runtime, or the HTTP/2 connection's own scope.
    fn websocket_after_upgrade(
        &self,
        outcome: Option<Outcome>,
        peer: Option<SocketAddr>,
    ) -> Option<crate::rt::BoxTask> {
        match outcome? {
            Outcome::Upgrade {
                on_upgrade,
                protocol,
                request,
                deflate,
            } => {
                let server = self.clone();
                Some(Box::pin(async move {
                    let upgraded = match on_upgrade.await {
                        Ok(upgraded) => upgraded,
                        Err(e) => {
                            tracing::debug!(?peer, error = %e, "the upgrade did not complete");
                            return;
                        }
                    };
                    let ws = server
                        .websocket(UpgradedIo(upgraded), deflate.as_ref())
                        .await;
                    let request = (*request).with_peer(peer);
                    server
                        .serve_websocket(Tungstenite::from(ws), protocol, request)
                        .await;
                }))
            }
            Outcome::OriginRefused(origin) => {
                self.inner.refused_origin(&origin, peer);
                None
            }
        }
    }

    /// The server's side of a WebSocket on an upgraded `socket`: with the agreed
    /// permessage-deflate (or plain) under tungstenite, configured by [`websocket_config`].
    async fn websocket<S>(&self, socket: S, agreed: Option<&Agreed>) -> WebSocketStream<Deflated<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let inner = &self.inner;
        #[cfg(feature = "deflate")]
        let socket = match (agreed, &inner.config.deflate) {
            (Some(agreed), Some(settings)) => Deflated::new(
                socket,
                subscope_deflate::Side::Server,
                agreed,
                settings,
                inner.config.max_message_size,
            )
            .counting(Arc::clone(&inner.gauges) as Arc<dyn subscope_deflate::Stats>),
            _ => Deflated::plain(socket),
        };
        #[cfg(not(feature = "deflate"))]
        let socket = {
            let _: Option<&Agreed> = agreed; // uninhabited without the feature
            Deflated::plain(socket)
        };
        let config = websocket_config(&inner.config);
        WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await
    }

    /// Answers one GraphQL HTTP request that is not a WebSocket upgrade: graphql-sse
    /// (both modes), Apollo multipart subscriptions, or plain GraphQL over HTTP, chosen by
    /// method, `Accept` and the stream token (`docs/PROTOCOL.md` 4.6). For HTTP servers
    /// of your own (`subscope-axum` uses it); the standalone server calls it itself.
    ///
    /// The returned body owns the request's operations: drop it, and they are dropped.
    /// Under another server there is no write timeout of subscope's: a client that stops
    /// reading holds its stream until that server drops it (or shutdown's grace ends).
    pub fn serve_http<B>(
        &self,
        request: http::Request<B>,
        peer: Option<SocketAddr>,
    ) -> impl Future<Output = http::Response<HttpBody>> + Send + 'static
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Http::new(Arc::clone(&self.inner)).serve(request, peer, None)
    }

    /// [`Server::serve`] until `signal` completes, then [`Server::shutdown`] with `grace`;
    /// resolves to the signal's output once every connection has been dropped. With an
    /// adapter's `shutdown_signal()` (Ctrl-C, or SIGTERM on Unix) a whole server is:
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use subscope_core::{Hooks, Server, rt::{Listener, Runtime}};
    /// # async fn run<E: async_graphql::Executor, H: Hooks, R: Runtime, L: Listener>(
    /// #     server: Server<E, H, R>,
    /// #     listener: L, // e.g. subscope::smol::TcpListener::bind("127.0.0.1:8000").await?
    /// #     shutdown_signal: impl Future<Output = std::io::Result<()>> + Send,
    /// # ) -> std::io::Result<()> {
    /// // shutdown_signal: e.g. subscope::smol::shutdown_signal()
    /// server.serve_with_shutdown(listener, shutdown_signal, Duration::from_secs(5)).await
    /// # }
    /// ```
    ///
    /// Any future can be the signal (a channel's receive, a test's trigger), and its
    /// output comes back: an `io::Result<()>` from the signal's installation stays
    /// visible. The signal is what ends this future: a shutdown started through another
    /// handle stops accepting at once, but this future still waits for `signal`.
    ///
    /// # Cancel safety
    /// As [`Server::serve`]: dropping it stops accepting (and, if it was shutting down,
    /// stops waiting; the connections still end with the server).
    pub fn serve_with_shutdown<L, S>(
        &self,
        listener: L,
        signal: S,
        grace: Duration,
    ) -> impl Future<Output = S::Output> + Send + use<E, H, R, L, S>
    where
        L: Listener,
        S: Future + Send,
        S::Output: Send,
    {
        let serving = self.serve(listener);
        let server = self.clone();
        let stopping = async move {
            let output = signal.await;
            tracing::info!("shutdown signal: closing every connection");
            server.shutdown(grace).await;
            output
        };
        async move { future::zip(serving, stopping).await.1 }
    }
}

/// The WebSocket stack of an accepted socket, top to bottom: subscope's contract over
/// async-tungstenite, over permessage-deflate's frame rewriter (a pass-through when not
/// negotiated), over hyper's read-ahead bytes, over the socket.
type Stack<S> = Tungstenite<Deflated<Prefixed<Prefixed<Conn<S>>>>>;

/// The one way down from the WebSocket stack to the accepted socket, TLS included (to
/// linger on it).
fn into_socket<S>(ws: Stack<S>) -> Conn<S> {
    ws.into_inner() // async-tungstenite's stream
        .into_inner() // the deflate rewriter
        .into_inner() // hyper's read-ahead bytes in front
        .into_inner() // the bytes read to tell HTTP/1.1 from HTTP/2
        .into_inner()
}

/// Half-closes our side, then reads and discards until the peer closes too.
async fn lingering_close<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    if io.close().await.is_err() {
        return;
    }
    // On the heap, and only now: a buffer in the future itself would be part of every
    // connection's future for its whole life (async fn state is sized for its largest
    // await point), 8 KiB per idle connection.
    let mut sink = vec![0u8; 2048];
    while let Ok(1..) = io.read(&mut sink).await {}
}

/// What [`Server::serve_io`] served on one accepted stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Served {
    /// A WebSocket, which ended for this reason ([`CloseReason::Dropped`] when the future
    /// was dropped before it finished).
    WebSocket(CloseReason),
    /// HTTP requests and responses over HTTP/1.1 or HTTP/2 (GraphQL over HTTP, SSE,
    /// multipart, a refused upgrade, WebSockets on HTTP/2 streams), until the client
    /// closed the connection.
    Http,
}

impl Served {
    /// The WebSocket's close reason, if a WebSocket was served.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match self {
            Self::WebSocket(reason) => Some(reason),
            Self::Http => None,
        }
    }
}
