//! What subscope's smol and async-std adapters share, in one copy: both runtimes drive
//! IO and timers on the [`async-io`](https://docs.rs/async-io) reactor, so both use its
//! timer as subscope's [`Sleep`], and [`async-signal`](https://docs.rs/async-signal) (the
//! smol project's signal crate, also on async-io) for [`shutdown_signal`].
//!
//! Applications use these through `subscope-smol` or `subscope-async-std` (or the
//! `subscope` facade's `smol` and `async_std` modules), which re-export
//! [`shutdown_signal`].

#![deny(rustdoc::broken_intra_doc_links)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;
use subscope_core::rt::{BoxSleep, Sleep};

/// An async-io timer completing at `deadline`, as a [`Sleep`] that moves in place.
pub fn sleep_until(deadline: Instant) -> BoxSleep {
    Box::pin(AsyncIoSleep(async_io::Timer::at(deadline)))
}

/// async-io's timer, moved in place by [`Sleep::reset`].
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

/// The signals [`shutdown_signal`] waits for.
#[cfg(unix)]
const SHUTDOWN_SIGNALS: [Signal; 2] = [Signal::Int, Signal::Term];
#[cfg(not(unix))]
const SHUTDOWN_SIGNALS: [Signal; 1] = [Signal::Int];

/// Completes on the first Ctrl-C (`SIGINT`) or, on Unix, `SIGTERM` that arrives after
/// this call, for `Server::serve_with_shutdown`. The handlers are installed by this call
/// (so a signal that arrives before the first poll counts), and while they are, those
/// signals no longer end the process on their own.
///
/// Runs on the async-io reactor, so it works under smol, async-std or any executor. An
/// error is the handlers' installation failing; the future then resolves to it at once.
///
/// ```no_run
/// # async_io::block_on(async {
/// subscope_async_io::shutdown_signal().await?;
/// println!("shutting down");
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub fn shutdown_signal() -> impl Future<Output = io::Result<()>> + Send + 'static {
    let signals = Signals::new(SHUTDOWN_SIGNALS);
    async move {
        let received = signals?.next().await;
        match received {
            Some(Ok(signal)) => {
                tracing::info!(?signal, "shutdown signal received");
                Ok(())
            }
            Some(Err(err)) => Err(err),
            None => Err(io::Error::other("the signal stream ended")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reset_sleep_fires_at_its_new_deadline() {
        let start = Instant::now();
        let mut sleep = sleep_until(start + Duration::from_secs(60));
        sleep.as_mut().reset(start + Duration::from_millis(20));
        async_io::block_on(sleep.as_mut());
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(20), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    }
}
