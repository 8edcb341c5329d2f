//! async-std adapter for subscope: [`AsyncStdRuntime`] supplies the timer (`async-io`, the
//! reactor async-std itself runs on), the spawner (`async_std::task`) and the TCP listener.
//!
//! **async-std is discontinued upstream** (since 1.13.1; RUSTSEC-2025-0052): its authors
//! recommend [smol](https://crates.io/crates/smol), for which `subscope-smol` is the
//! successor adapter. This crate is kept, isolated, for applications that cannot move yet.
//!
//! ```no_run
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! # struct Query;
//! # #[Object] impl Query { async fn hello(&self) -> &str { "world" } }
//! let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
//! let server = subscope_async_std::server(schema).build();
//! async_std::task::block_on(async {
//!     let listener = async_std::net::TcpListener::bind("127.0.0.1:8000").await?;
//!     server.serve(listener).await
//! })
//! # .unwrap();
//! ```
//!
//! A dropped async-std `JoinHandle` detaches its task, so subscope never relies on one:
//! operations live inside their connection's task and shutdown waits on its own tracker.
//! async-std starts its own executor threads on first use.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use async_graphql::Executor;
use subscope_core::rt::{BoxTask, Runtime, Sleep, Timer};
use subscope_core::{NoHooks, ServerBuilder};

/// The async-std runtime seam.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct AsyncStdRuntime;

impl AsyncStdRuntime {
    /// The seam for async-std's global runtime.
    pub fn new() -> Self {
        Self
    }
}

impl Timer for AsyncStdRuntime {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(async move {
            async_io::Timer::at(deadline).await;
        })
    }
}

impl Runtime for AsyncStdRuntime {
    type Listener = async_std::net::TcpListener;
    type Io = async_std::net::TcpStream;

    fn spawn(&self, task: BoxTask) {
        // Dropping the handle detaches; the server tracks and ends its tasks itself.
        drop(async_std::task::spawn(task));
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Io, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }
}

/// A subscope server on async-std.
pub type Server<E, H = NoHooks> = subscope_core::Server<E, H, AsyncStdRuntime>;

/// Starts building a server for `executor` (a GraphQL schema) on async-std.
pub fn server<E: Executor>(executor: E) -> ServerBuilder<E, NoHooks, AsyncStdRuntime> {
    ServerBuilder::new(AsyncStdRuntime, executor)
}
