//! async-std adapter for subscope: [`AsyncStdRuntime`] supplies the timer (`async-io`, the
//! reactor async-std itself runs on) and the spawner (`async_std::task`); [`TcpListener`]
//! accepts, as [`TcpStream`]s that half-close like tokio's and smol's; [`shutdown_signal`]
//! waits for Ctrl-C.
//!
//! **async-std is discontinued upstream** (since 1.13.1; RUSTSEC-2025-0052): its authors
//! recommend [smol](https://crates.io/crates/smol), for which `subscope-smol` is the
//! successor adapter. This crate is kept, isolated, for applications that cannot move yet.
//!
//! ```no_run
//! use std::time::Duration;
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! # struct Query;
//! # #[Object] impl Query { async fn hello(&self) -> &str { "world" } }
//! fn main() -> std::io::Result<()> {
//!     async_std::task::block_on(async {
//!         let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
//!         let server = subscope_async_std::server(schema).build();
//!         let listener = subscope_async_std::TcpListener::bind("127.0.0.1:8000").await?;
//!         let signal = subscope_async_std::shutdown_signal(); // Ctrl-C or SIGTERM
//!         // Every subscription dropped when this returns.
//!         server.serve_with_shutdown(listener, signal, Duration::from_secs(5)).await
//!     })
//! }
//! ```
//!
//! A dropped async-std `JoinHandle` detaches its task, so subscope never relies on one:
//! operations live inside their connection's task and shutdown waits on its own tracker.
//! async-std starts its own executor threads on first use.

#![deny(rustdoc::broken_intra_doc_links)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use async_std::io::{Read, Write};
use subscope_core::rt::{BoxSleep, BoxTask, Listener, Spawn, Timer};
use subscope_core::{NoHooks, ServerBuilder};

pub use subscope_async_io::shutdown_signal;

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

    fn sleep_until(&self, deadline: Instant) -> BoxSleep {
        subscope_async_io::sleep_until(deadline)
    }
}

impl Spawn for AsyncStdRuntime {
    fn spawn(&self, task: BoxTask) {
        // Dropping the handle detaches; the server tracks and ends its tasks itself.
        drop(async_std::task::spawn(task));
    }
}

/// A TCP listener for [`subscope_core::Server::serve`]. Accepted sockets have
/// `TCP_NODELAY` set: subscription frames are small and should not wait to coalesce.
#[derive(Debug)]
pub struct TcpListener(async_std::net::TcpListener);

impl TcpListener {
    /// Binds to `addr`.
    pub async fn bind(addr: impl async_std::net::ToSocketAddrs) -> io::Result<Self> {
        async_std::net::TcpListener::bind(addr).await.map(Self)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// Accepts one connection, with `TCP_NODELAY` set and wrapped to half-close, for
    /// [`subscope_core::Server::serve_io`] or [`subscope_core::Server::spawn_io`] when you
    /// accept yourself.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((TcpStream(stream), peer))
    }

    /// The underlying listener back.
    pub fn into_inner(self) -> async_std::net::TcpListener {
        self.0
    }
}

impl From<async_std::net::TcpListener> for TcpListener {
    fn from(listener: async_std::net::TcpListener) -> Self {
        Self(listener)
    }
}

impl Listener for TcpListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, Option<SocketAddr>)> {
        let (stream, peer) = Self::accept(self).await?;
        Ok((stream, Some(peer)))
    }
}

/// An async-std TCP stream whose `poll_close` shuts down the write half (sends FIN), as
/// tokio's and smol's streams do. async-std's own `poll_close` only flushes, so the
/// server's FIN after a close handshake would wait for the close timeout. Wrap a stream
/// you accepted yourself with [`io()`] before [`subscope_core::Server::serve_io`].
#[derive(Debug)]
pub struct TcpStream(async_std::net::TcpStream);

impl TcpStream {
    /// The async-std stream back.
    pub fn into_inner(self) -> async_std::net::TcpStream {
        self.0
    }
}

impl From<async_std::net::TcpStream> for TcpStream {
    fn from(stream: async_std::net::TcpStream) -> Self {
        Self(stream)
    }
}

/// Wraps an async-std stream you accepted yourself, for
/// [`subscope_core::Server::serve_io`].
pub fn io(stream: async_std::net::TcpStream) -> TcpStream {
    TcpStream(stream)
}

impl Read for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_read_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read_vectored(cx, bufs)
    }
}

impl Write for TcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.0).poll_flush(cx))?;
        Poll::Ready(self.0.shutdown(Shutdown::Write))
    }
}

/// A subscope server on async-std.
pub type Server<E, H = NoHooks> = subscope_core::Server<E, H, AsyncStdRuntime>;

/// Starts building a server for `schema` (any `async_graphql::Executor`: a `Schema` or a
/// `dynamic::Schema`) on async-std.
pub fn server<S: async_graphql::Executor>(schema: S) -> ServerBuilder<S, NoHooks, AsyncStdRuntime> {
    ServerBuilder::new(AsyncStdRuntime, schema)
}
