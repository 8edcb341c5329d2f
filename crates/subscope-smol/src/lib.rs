//! smol adapter for subscope: [`SmolRuntime`] supplies the timer (`async-io`) and the
//! spawner (an `async-executor`); [`TcpListener`] (`async-net`) accepts; [`run`] runs an
//! executor on every core for your `main`, and [`shutdown_signal`] waits for Ctrl-C.
//!
//! ```no_run
//! use std::time::Duration;
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! # struct Query;
//! # #[Object] impl Query { async fn hello(&self) -> &str { "world" } }
//! fn main() -> std::io::Result<()> {
//!     subscope_smol::run(|rt| async move {
//!         let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
//!         let server = subscope_smol::server(rt, schema).build();
//!         let listener = subscope_smol::TcpListener::bind("127.0.0.1:8000").await?;
//!         let signal = subscope_smol::shutdown_signal(); // Ctrl-C or SIGTERM
//!         // Every subscription dropped when this returns.
//!         server.serve_with_shutdown(listener, signal, Duration::from_secs(5)).await
//!     })
//! }
//! ```
//!
//! Connection tasks run on the executor of the [`SmolRuntime`] (never smol's global one,
//! whose tasks are never dropped); with your own executor, build it with
//! [`SmolRuntime::new`] and run it yourself. Operations run inside their connection's
//! task, so they are dropped with it whatever the executor does later. The first timer
//! starts async-io's `async-io` reactor thread; [`run`] starts the executor's threads;
//! this crate starts no other thread.

#![deny(rustdoc::broken_intra_doc_links)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use async_executor::Executor;
use subscope_core::rt::{BoxSleep, BoxTask, Listener, Spawn, Timer};
use subscope_core::{NoHooks, ServerBuilder};

pub use subscope_async_io::shutdown_signal;

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
        subscope_async_io::sleep_until(deadline)
    }
}

impl Spawn for SmolRuntime {
    fn spawn(&self, task: BoxTask) {
        // Detached on purpose: the server tracks and ends its tasks itself.
        self.executor.spawn(task).detach();
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

    /// Accepts one connection, with `TCP_NODELAY` set, for [`subscope_core::Server::serve_io`]
    /// or [`subscope_core::Server::spawn_io`] when you accept yourself.
    pub async fn accept(&self) -> io::Result<(async_net::TcpStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
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
        let (stream, peer) = Self::accept(self).await?;
        Ok((stream, Some(peer)))
    }
}

/// A subscope server on smol.
pub type Server<E, H = NoHooks> = subscope_core::Server<E, H, SmolRuntime>;

/// Starts building a server for `schema` (any `async_graphql::Executor`: a `Schema` or a
/// `dynamic::Schema`) on `runtime`.
pub fn server<S: async_graphql::Executor>(
    runtime: SmolRuntime,
    schema: S,
) -> ServerBuilder<S, NoHooks, SmolRuntime> {
    ServerBuilder::new(runtime, schema)
}

/// Runs `main` on a new executor with one thread per core (this one included), as
/// [`run_with_threads`] does.
pub fn run<F: Future>(main: impl FnOnce(SmolRuntime) -> F) -> F::Output {
    let threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    run_with_threads(threads, main)
}

/// Runs `main` on a new executor with `threads` threads: this one, which runs `main`'s
/// future (it need not be `Send`), and `threads - 1` workers. `main` gets the
/// [`SmolRuntime`] that spawns on that executor. When `main`'s future completes, the
/// workers stop and are joined, and its output is returned; tasks still on the executor
/// are dropped with it.
///
/// # Panics
/// If the OS cannot start a thread (as `std::thread::spawn`), or if `main` panics (after
/// the workers are joined).
pub fn run_with_threads<F: Future>(
    threads: NonZeroUsize,
    main: impl FnOnce(SmolRuntime) -> F,
) -> F::Output {
    let executor = Arc::new(Executor::new());
    let runtime = SmolRuntime::new(Arc::clone(&executor));
    std::thread::scope(|scope| {
        // Dropped when `main` returns or unwinds, before the scope joins the workers.
        let (stop, stopped) = async_channel::bounded::<()>(1);
        for _ in 1..threads.get() {
            let executor = &executor;
            let stopped = stopped.clone();
            std::thread::Builder::new()
                .name("subscope-smol".to_owned())
                .spawn_scoped(scope, move || {
                    async_io::block_on(executor.run(async {
                        let _ = stopped.recv().await;
                    }));
                })
                .expect("failed to start an executor thread");
        }
        let output = async_io::block_on(executor.run(main(runtime)));
        drop(stop);
        output
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::ThreadId;

    /// Tasks spawned through the runtime run (on a worker too), the output comes back and
    /// the workers are joined: `run_with_threads` returns at all.
    #[test]
    fn run_serves_spawned_tasks_and_returns_main_output() {
        let threads = NonZeroUsize::new(3).expect("3");
        let (main_thread, seen) = run_with_threads(threads, |rt| async move {
            let (tx, rx) = async_channel::unbounded::<ThreadId>();
            for _ in 0..64 {
                let tx = tx.clone();
                rt.spawn(Box::pin(async move {
                    let _ = tx.send(std::thread::current().id()).await;
                }));
            }
            drop(tx);
            let mut seen = Vec::new();
            while let Ok(id) = rx.recv().await {
                seen.push(id);
            }
            (std::thread::current().id(), seen)
        });
        assert_eq!(main_thread, std::thread::current().id());
        assert_eq!(seen.len(), 64);
    }

    #[test]
    fn the_listener_accepts_with_nodelay() {
        async_io::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let client = async_net::TcpStream::connect(addr);
            let (accepted, client) = futures_lite::future::zip(listener.accept(), client).await;
            let (stream, peer) = accepted.expect("accept");
            assert!(stream.nodelay().expect("nodelay"));
            assert_eq!(peer, client.expect("connect").local_addr().expect("addr"));
        });
    }
}
