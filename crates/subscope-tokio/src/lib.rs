//! tokio adapter for subscope: [`TokioRuntime`] supplies the timer (tokio's clock, so a
//! paused test clock works) and the spawner; [`TcpListener`] accepts; [`shutdown_signal`]
//! waits for Ctrl-C.
//!
//! ```no_run
//! use std::time::Duration;
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! # struct Query;
//! # #[Object] impl Query { async fn hello(&self) -> &str { "world" } }
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
//!     let server = subscope_tokio::server(schema).build();
//!     let listener = subscope_tokio::TcpListener::bind("127.0.0.1:8000").await?;
//!     let signal = subscope_tokio::shutdown_signal(); // Ctrl-C or SIGTERM
//!     // Every subscription dropped when this returns.
//!     server.serve_with_shutdown(listener, signal, Duration::from_secs(5)).await
//! }
//! ```
//!
//! Operations run inside their connection's task (subscope's in-task scope), so the
//! runtime's parallelism comes from many connections. This crate starts no threads.

#![deny(rustdoc::broken_intra_doc_links)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_tungstenite::tokio::TokioAdapter;
use subscope_core::rt::{BoxSleep, BoxTask, Listener, Sleep, Spawn, Timer};
use subscope_core::{NoHooks, ServerBuilder};

/// The tokio runtime seam. The runtime needs IO and time enabled.
#[derive(Debug, Clone, Default)]
pub struct TokioRuntime {
    handle: Option<tokio::runtime::Handle>,
}

impl TokioRuntime {
    /// Spawns onto whichever tokio runtime is current when a connection is accepted.
    pub fn new() -> Self {
        Self { handle: None }
    }

    /// Spawns onto the runtime of `handle`, from any thread.
    pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
        Self {
            handle: Some(handle),
        }
    }
}

pin_project_lite::pin_project! {
    /// tokio's sleep, moved in place by [`Sleep::reset`].
    struct TokioSleep {
        #[pin]
        inner: tokio::time::Sleep,
    }
}

impl Future for TokioSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().inner.poll(cx)
    }
}

impl Sleep for TokioSleep {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        self.project().inner.reset(deadline.into());
    }
}

impl Timer for TokioRuntime {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxSleep {
        Box::pin(TokioSleep {
            inner: tokio::time::sleep_until(deadline.into()),
        })
    }
}

impl Spawn for TokioRuntime {
    fn spawn(&self, task: BoxTask) {
        // Detached on purpose: the server tracks and ends its tasks itself.
        match &self.handle {
            Some(handle) => drop(handle.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
}

/// A tokio TCP listener for [`subscope_core::Server::serve`]. Accepted sockets have
/// `TCP_NODELAY` set: subscription frames are small and should not wait to coalesce.
#[derive(Debug)]
pub struct TcpListener(tokio::net::TcpListener);

impl TcpListener {
    /// Binds to `addr`.
    pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> io::Result<Self> {
        tokio::net::TcpListener::bind(addr).await.map(Self)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// Accepts one connection, with `TCP_NODELAY` set and wrapped for
    /// [`subscope_core::Server::serve_io`] or [`subscope_core::Server::spawn_io`], when you
    /// accept yourself.
    pub async fn accept(&self) -> io::Result<(TokioAdapter<tokio::net::TcpStream>, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((TokioAdapter::new(stream), peer))
    }

    /// The tokio listener back.
    pub fn into_inner(self) -> tokio::net::TcpListener {
        self.0
    }
}

impl From<tokio::net::TcpListener> for TcpListener {
    fn from(listener: tokio::net::TcpListener) -> Self {
        Self(listener)
    }
}

impl Listener for TcpListener {
    type Io = TokioAdapter<tokio::net::TcpStream>;

    async fn accept(&mut self) -> io::Result<(Self::Io, Option<SocketAddr>)> {
        let (stream, peer) = Self::accept(self).await?;
        Ok((stream, Some(peer)))
    }
}

/// A subscope server on tokio.
pub type Server<E, H = NoHooks> = subscope_core::Server<E, H, TokioRuntime>;

/// Starts building a server for `schema` (any `async_graphql::Executor`: a `Schema` or a
/// `dynamic::Schema`) on tokio.
pub fn server<S: async_graphql::Executor>(schema: S) -> ServerBuilder<S, NoHooks, TokioRuntime> {
    ServerBuilder::new(TokioRuntime::new(), schema)
}

/// Completes on the first Ctrl-C (`SIGINT`) or, on Unix, `SIGTERM` after its first poll,
/// for [`subscope_core::Server::serve_with_shutdown`]: tokio's own signal handling (the
/// runtime needs its IO driver, as `#[tokio::main]` enables). An error is the handlers'
/// installation failing; the future then resolves to it at once.
pub async fn shutdown_signal() -> io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let terminated = async {
            terminate.recv().await;
            tracing::info!("SIGTERM received");
            Ok(())
        };
        futures_lite::future::or(tokio::signal::ctrl_c(), terminated).await
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Wraps a tokio stream you accepted yourself, for [`subscope_core::Server::serve_io`].
pub fn io<S>(stream: S) -> TokioAdapter<S> {
    TokioAdapter::new(stream)
}

// The test serves over HTTP: it needs the `http` feature.
#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Query;
    #[async_graphql::Object]
    impl Query {
        async fn hello(&self) -> &str {
            "world"
        }
    }

    /// The server serves until the signal, then ends; the output is the signal's, and the
    /// listener is gone afterwards.
    #[tokio::test]
    async fn serve_with_shutdown_serves_until_the_signal_and_returns_its_output() {
        let schema = async_graphql::Schema::new(
            Query,
            async_graphql::EmptyMutation,
            async_graphql::EmptySubscription,
        );
        let server = server(schema).build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<&str>();
        let signal = async move { stopped.await.expect("sender kept") };
        let serving =
            tokio::spawn(server.serve_with_shutdown(listener, signal, Duration::from_secs(5)));
        // Served while the signal is pending: a plain GraphQL request over HTTP.
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let body = r#"{"query":"{ hello }"}"#;
        let request = format!(
            "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             accept: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        client.read_to_string(&mut response).await.expect("read");
        assert!(
            response.contains(r#"{"data":{"hello":"world"}}"#),
            "{response}"
        );
        assert!(!serving.is_finished());
        stop.send("stopped").expect("serving");
        assert_eq!(serving.await.expect("join"), "stopped");
        assert_eq!(server.live_tasks(), 0);
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_sleep_fires_at_its_new_deadline() {
        let rt = TokioRuntime::new();
        let start = rt.now();
        let mut sleep = rt.sleep(Duration::from_secs(10));
        sleep.as_mut().reset(start + Duration::from_secs(1));
        sleep.as_mut().await;
        assert_eq!(rt.now() - start, Duration::from_secs(1));
        // Completed, then moved later: pending again until the new deadline.
        sleep.as_mut().reset(start + Duration::from_secs(3));
        sleep.as_mut().await;
        assert_eq!(rt.now() - start, Duration::from_secs(3));
    }
}
