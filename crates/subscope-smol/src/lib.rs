//! smol adapter for subscope: [`SmolRuntime`] supplies the timer (`async-io`) and the
//! spawner (an `async-executor` you own); [`TcpListener`] (`async-net`) accepts.
//!
//! ```no_run
//! use std::sync::Arc;
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! # struct Query;
//! # #[Object] impl Query { async fn hello(&self) -> &str { "world" } }
//! let ex = Arc::new(async_executor::Executor::new());
//! let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
//! let server = subscope_smol::server(subscope_smol::SmolRuntime::new(Arc::clone(&ex)), schema).build();
//! async_io::block_on(ex.run(async {
//!     let listener = subscope_smol::TcpListener::bind("127.0.0.1:8000").await?;
//!     server.serve(listener).await;
//!     std::io::Result::Ok(())
//! }))
//! # .unwrap();
//! ```
//!
//! Connection tasks run on the executor you pass (never smol's global one, whose tasks are
//! never dropped). Operations run inside their connection's task, so they are dropped with
//! it whatever the executor does later. The first timer starts async-io's `async-io`
//! reactor thread; this crate starts no other thread.

#![deny(rustdoc::broken_intra_doc_links)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_executor::Executor;
use async_graphql::Executor as GraphqlExecutor;
use subscope_core::rt::{BoxSleep, BoxTask, Listener, Sleep, Spawn, Timer};
use subscope_core::{NoHooks, ServerBuilder};

/// The smol runtime seam: connection tasks go to `executor`, which the application runs
/// (`executor.run(..)` on one or more threads).
#[derive(Debug, Clone)]
pub struct SmolRuntime {
    executor: Arc<Executor<'static>>,
}

impl SmolRuntime {
    /// Spawns connection tasks on `executor`.
    pub fn new(executor: Arc<Executor<'static>>) -> Self {
        Self { executor }
    }

    /// The executor connection tasks are spawned on.
    pub fn executor(&self) -> &Arc<Executor<'static>> {
        &self.executor
    }
}

impl Timer for SmolRuntime {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxSleep {
        Box::pin(AsyncIoSleep(async_io::Timer::at(deadline)))
    }
}

impl Spawn for SmolRuntime {
    fn spawn(&self, task: BoxTask) {
        // Detached on purpose: the server tracks and ends its tasks itself.
        self.executor.spawn(task).detach();
    }
}

/// async-io's timer (which both smol and async-std run on), moved in place.
#[derive(Debug)]
struct AsyncIoSleep(async_io::Timer);

impl Future for AsyncIoSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Sleep for AsyncIoSleep {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0.set_at(deadline);
    }
}

/// A TCP listener for [`subscope_core::Server::serve`]. Accepted sockets have
/// `TCP_NODELAY` set: subscription frames are small and should not wait to coalesce.
#[derive(Debug)]
pub struct TcpListener(async_net::TcpListener);

impl TcpListener {
    /// Binds to `addr`.
    pub async fn bind(addr: impl async_net::AsyncToSocketAddrs) -> io::Result<Self> {
        async_net::TcpListener::bind(addr).await.map(Self)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// The underlying listener back.
    pub fn into_inner(self) -> async_net::TcpListener {
        self.0
    }
}

impl From<async_net::TcpListener> for TcpListener {
    fn from(listener: async_net::TcpListener) -> Self {
        Self(listener)
    }
}

impl Listener for TcpListener {
    type Io = async_net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, Option<SocketAddr>)> {
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, Some(peer)))
    }
}

/// A subscope server on smol.
pub type Server<E, H = NoHooks> = subscope_core::Server<E, H, SmolRuntime>;

/// Starts building a server for `executor` (a GraphQL schema) on `runtime`.
pub fn server<E: GraphqlExecutor>(
    runtime: SmolRuntime,
    executor: E,
) -> ServerBuilder<E, NoHooks, SmolRuntime> {
    ServerBuilder::new(runtime, executor)
}
