//! tokio adapter for subscope: [`TokioRuntime`] supplies the timer (tokio's clock, so a
//! paused test clock works), the spawner and the TCP listener.
//!
//! ```no_run
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! # struct Query;
//! # #[Object] impl Query { async fn hello(&self) -> &str { "world" } }
//! # async fn run() -> std::io::Result<()> {
//! let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
//! let server = subscope_tokio::server(schema).build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! let serving = tokio::spawn({
//!     let server = server.clone();
//!     async move { server.serve(listener).await }
//! });
//! tokio::signal::ctrl_c().await?;
//! server.shutdown(std::time::Duration::from_secs(5)).await; // every subscription dropped
//! # let _ = serving.await;
//! # Ok(()) }
//! ```
//!
//! Operations run inside their connection's task (subscope's in-task scope), so the
//! runtime's parallelism comes from many connections. This crate starts no threads.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use async_graphql::Executor;
use async_tungstenite::tokio::TokioAdapter;
use subscope_core::rt::{BoxTask, Runtime, Sleep, Timer};
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

impl Timer for TokioRuntime {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

impl Runtime for TokioRuntime {
    type Listener = tokio::net::TcpListener;
    type Io = TokioAdapter<tokio::net::TcpStream>;

    fn spawn(&self, task: BoxTask) {
        // Detached on purpose: the server tracks and ends its tasks itself.
        match &self.handle {
            Some(handle) => drop(handle.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Io, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        // Small frames are the norm: do not wait to coalesce them.
        stream.set_nodelay(true)?;
        Ok((TokioAdapter::new(stream), peer))
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
