//! tokio adapter for subscope: [`TokioRuntime`] supplies the timer (tokio's clock, so a
//! paused test clock works) and the spawner; [`TcpListener`] accepts.
//!
//! ```no_run
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! # struct Query;
//! # #[Object] impl Query { async fn hello(&self) -> &str { "world" } }
//! # async fn run() -> std::io::Result<()> {
//! let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
//! let server = subscope_tokio::server(schema).build();
//! let listener = subscope_tokio::TcpListener::bind("127.0.0.1:8000").await?;
//! let serving = tokio::spawn(server.serve(listener));
//! tokio::signal::ctrl_c().await?;
//! server.shutdown(std::time::Duration::from_secs(5)).await; // every subscription dropped
//! # let _ = serving.await;
//! # Ok(()) }
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

use async_graphql::Executor;
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
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((TokioAdapter::new(stream), Some(peer)))
    }
}

/// A subscope server on tokio.
pub type Server<E, H = NoHooks> = subscope_core::Server<E, H, TokioRuntime>;

/// Starts building a server for `executor` on tokio.
pub fn server<E: Executor>(executor: E) -> ServerBuilder<E, NoHooks, TokioRuntime> {
    ServerBuilder::new(TokioRuntime::new(), executor)
}

/// Wraps a tokio stream you accepted yourself, for [`subscope_core::Server::serve_io`].
pub fn io<S>(stream: S) -> TokioAdapter<S> {
    TokioAdapter::new(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
