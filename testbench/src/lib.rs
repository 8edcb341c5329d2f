//! A hand-polled test bench for subscope's connection driver.
//!
//! Plain `#[test]` functions drive one real connection (the real [`subscope::Server`],
//! driver, machine and tungstenite codec, and the demo schema) with no runtime, no socket
//! and no wall clock:
//!
//! - [`ManualClock`]: time moves only on [`ManualClock::advance`]; it is also the bench's
//!   [`subscope::rt::Runtime`].
//! - [`Pipe`]: an in-memory duplex byte stream; the test plays the client and can split or
//!   batch its frames, stall or fail the server's writes, bound either direction like a TCP
//!   window, end the input or reset the connection.
//! - [`Bench`]: owns the connection future and polls it by hand until it has nothing left
//!   to do; the demo's live-stream counter and the gauges probe which children are alive.
//!
//! Modelled on quinn's in-memory test pair and tokio-util's hand-polled tests: every
//! outcome is a deterministic function of the script.

mod bench;
mod clock;
mod pipe;
pub mod wire;

pub use bench::{Bench, BenchBuilder, BenchHooks, DEFAULT_WINDOW, PanicIn, Record};
pub use clock::ManualClock;
pub use pipe::Pipe;
pub use wire::Frame;
