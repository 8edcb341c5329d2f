//! Test instruments for the socket-level suite: an in-process demo server with recording
//! hooks, and a blocking WebSocket client with deadlines.
//!
//! Every wait has a deadline and waits for an event (a frame, a hook call, a counter
//! reaching a value); nothing sleeps and hopes.

pub mod churn;
pub mod client;
pub mod h2client;
pub mod http;
pub mod load;
pub mod recorder;
pub mod server;

pub use client::{Client, Frame};
pub use recorder::{Recorder, RecordingHooks};
pub use server::{TestRuntime, TestServer};

use std::time::{Duration, Instant};

/// The default deadline for one expected event.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Waits until `cond` holds, checking every few milliseconds, or fails after `within`.
pub fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads from a raw TCP stream until the server drops it, and returns how long that took.
/// Fails if the server sends anything, or if nothing happens within [`DEADLINE`] (the
/// client's own read timeout is not mistaken for the server's doing).
pub fn expect_dropped_without_a_response(tcp: &mut std::net::TcpStream) -> Duration {
    use std::io::{ErrorKind, Read};
    let started = Instant::now();
    tcp.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    let mut buf = [0u8; 64];
    match tcp.read(&mut buf) {
        Ok(0) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the server did not drop the connection within {DEADLINE:?}")
        }
        Err(e) => panic!("unexpected read error {e}"),
        Ok(n) => panic!(
            "unexpected response {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
    started.elapsed()
}

/// Generates one `#[test]` per listed generic case and per compiled-in runtime, in a
/// module named for the runtime, so a failure names its runtime.
#[macro_export]
macro_rules! per_runtime {
    ($($case:ident),* $(,)?) => {
        #[cfg(feature = "rt-tokio")]
        mod tokio {
            $(
                #[test]
                fn $case() {
                    super::$case::<$crate::server::Tokio>();
                }
            )*
        }
        #[cfg(feature = "rt-smol")]
        mod smol {
            $(
                #[test]
                fn $case() {
                    super::$case::<$crate::server::Smol>();
                }
            )*
        }
        #[cfg(feature = "rt-async-std")]
        mod async_std {
            $(
                #[test]
                fn $case() {
                    super::$case::<$crate::server::AsyncStd>();
                }
            )*
        }
    };
}
