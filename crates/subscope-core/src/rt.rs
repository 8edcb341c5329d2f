//! The runtime seam: what an adapter supplies, split by who needs it. Nothing here names a
//! runtime.
//!
//! - [`Timer`] (a clock and resettable sleeps): every connection, and anything that backs
//!   off or times out (`subscope-redis`).
//! - [`Spawn`]: the server (one task per connection) and background workers.
//! - [`Runtime`]: both, which is all a [`crate::Server`] needs. Serving one stream you
//!   accepted yourself needs nothing more.
//! - [`Listener`]: accepting, and only [`crate::Server::serve`] takes one.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// A sleep whose deadline can be moved without allocating a new one.
///
/// A connection keeps one sleep for all its deadlines (init, ping, pong, write stall) and
/// moves it whenever the earliest one changes, which happens on every write block and
/// unblock; resetting in place keeps that off the allocator.
pub trait Sleep: Future<Output = ()> + Send + Sync {
    /// Completes at or after `deadline` instead (earlier or later than before). A sleep
    /// that already completed becomes pending again until the new deadline.
    fn reset(self: Pin<&mut Self>, deadline: Instant);
}

/// A boxed [`Sleep`], as returned by [`Timer::sleep_until`].
pub type BoxSleep = Pin<Box<dyn Sleep>>;

/// A boxed `Send` future with no output, as given to [`Spawn::spawn`].
pub type BoxTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A clock and sleeps. Every deadline subscope computes comes from [`Timer::now`], so a
/// virtual or paused clock works as long as `now` and `sleep_until` agree.
///
/// ```
/// use std::pin::Pin;
/// use std::task::{Context, Poll};
/// use std::time::Instant;
/// use subscope_core::rt::{BoxSleep, Sleep, Timer};
///
/// /// A sleep that never fires on its own.
/// struct Never;
/// impl Future for Never {
///     type Output = ();
///     fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> { Poll::Pending }
/// }
/// impl Sleep for Never {
///     fn reset(self: Pin<&mut Self>, _deadline: Instant) {}
/// }
///
/// /// A timer for tests whose clock stands still.
/// #[derive(Clone)]
/// struct Frozen(Instant);
/// impl Timer for Frozen {
///     fn now(&self) -> Instant { self.0 }
///     fn sleep_until(&self, _deadline: Instant) -> BoxSleep { Box::pin(Never) }
/// }
/// let t = Frozen(Instant::now());
/// assert_eq!(t.now(), t.now());
/// ```
pub trait Timer: Send + Sync + 'static {
    /// The current instant on this timer's clock.
    fn now(&self) -> Instant;
    /// A sleep that completes at or after `deadline` (never before).
    fn sleep_until(&self, deadline: Instant) -> BoxSleep;
    /// A sleep that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxSleep {
        self.sleep_until(self.now() + duration)
    }
}

/// Runs futures in the background.
///
/// subscope never relies on a spawned task's handle: a connection task ends itself when
/// told to, and shutdown waits for it through its own tracker, so detaching spawners
/// (tokio, async-std) are fine.
pub trait Spawn: Send + Sync + 'static {
    /// Runs `task` to completion in the background.
    fn spawn(&self, task: BoxTask);
}

/// Everything a [`crate::Server`] needs from an async runtime: a timer and a spawner.
/// Implemented for every `Clone` type that is both; `subscope-tokio`'s `TokioRuntime` and
/// its siblings are.
pub trait Runtime: Timer + Spawn + Clone {}

impl<T: Timer + Spawn + Clone> Runtime for T {}

/// A source of accepted byte streams, for [`crate::Server::serve`].
///
/// The adapters implement it for their runtime's TCP listener; implement it yourself for a
/// Unix socket, a TLS acceptor or an in-memory test listener.
pub trait Listener: Send + 'static {
    /// The accepted stream, as a futures-io stream. Its `poll_close` must shut down the
    /// write half (send FIN): after a close handshake the server closes, then drains until
    /// the peer's FIN, and a peer that waits for the server's FIN first (as RFC 6455 asks)
    /// would otherwise be held until the close timeout.
    type Io: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static;

    /// Accepts one connection, with the peer's address when it has one.
    ///
    /// An error is logged and retried after a short back-off (out of file descriptors and
    /// the like); it never stops the accept loop.
    fn accept(&mut self)
    -> impl Future<Output = io::Result<(Self::Io, Option<SocketAddr>)>> + Send;
}
