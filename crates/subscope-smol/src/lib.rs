//! smol adapter for subscope: [`SmolRuntime`] supplies the timer (`async-io`), the spawner
//! (an `async-executor` you own) and the TCP listener (`async-net`).
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
//!     let listener = async_net::TcpListener::bind("127.0.0.1:8000").await?;
//!     server.serve(listener).await
//! }))
//! # .unwrap();
//! ```
//!
//! Connection tasks run on the executor you pass (never smol's global one, whose tasks are
//! never dropped). Operations run inside their connection's task, so they are dropped with
//! it whatever the executor does later. The first timer starts async-io's `async-io`
//! reactor thread; this crate starts no other thread.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_executor::Executor;
use async_graphql::Executor as GraphqlExecutor;
use subscope_core::rt::{BoxTask, Runtime, Sleep, Timer};
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

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(async move {
            async_io::Timer::at(deadline).await;
        })
    }
}

impl Runtime for SmolRuntime {
    type Listener = async_net::TcpListener;
    type Io = async_net::TcpStream;

    fn spawn(&self, task: BoxTask) {
        // Detached on purpose: the server tracks and ends its tasks itself.
        self.executor.spawn(task).detach();
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Io, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
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
