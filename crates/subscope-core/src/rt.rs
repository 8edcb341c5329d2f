//! The runtime seam: what an adapter supplies. Nothing here names a runtime.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// A boxed sleep returned by [`Timer::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>>;

/// A boxed `Send` future with no output, as given to [`Runtime::spawn`].
pub type BoxTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A clock and sleeps. Every deadline subscope computes comes from [`Timer::now`], so a
/// virtual or paused clock works as long as `now` and `sleep_until` agree.
///
/// ```
/// use std::time::Instant;
/// use subscope_core::rt::{Sleep, Timer};
///
/// /// A timer for tests whose sleeps never fire on their own.
/// #[derive(Clone)]
/// struct Frozen(Instant);
/// impl Timer for Frozen {
///     fn now(&self) -> Instant { self.0 }
///     fn sleep_until(&self, _deadline: Instant) -> Sleep { Box::pin(std::future::pending()) }
/// }
/// let t = Frozen(Instant::now());
/// assert_eq!(t.now(), t.now());
/// ```
pub trait Timer: Send + Sync + 'static {
    /// The current instant on this timer's clock.
    fn now(&self) -> Instant;
    /// A future that completes at or after `deadline` (never before).
    fn sleep_until(&self, deadline: Instant) -> Sleep;
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(self.now() + duration)
    }
}

/// Everything the generic server needs from an async runtime: a timer, a spawner and a
/// TCP listener. Implemented by `subscope-tokio`'s `TokioRuntime` and its siblings.
///
/// The server never relies on a spawned task's handle: a connection task ends itself when
/// told to, and shutdown waits for it through its own tracker, so detaching spawners
/// (tokio, async-std) are fine.
pub trait Runtime: Timer + Clone {
    /// The listening socket type.
    type Listener: Send + Sync + 'static;
    /// The accepted stream type, as a futures-io stream.
    type Io: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static;

    /// Runs `task` to completion in the background.
    fn spawn(&self, task: BoxTask);

    /// Accepts one connection.
    fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send + 'a;
}
