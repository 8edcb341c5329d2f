//! The settings the protocol layer enforces, with the defaults of `docs/PROTOCOL.md`
//! section 4. A server's own configuration (subscope-core's `Config`) holds one of these
//! and sets it through its own setters, which document each value in full.

use std::time::Duration;

/// A token-bucket rate: `per_second` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Rate {
    /// Messages per second, sustained.
    pub per_second: f64,
    /// Messages allowed at once after a quiet period.
    pub burst: f64,
}

impl Rate {
    /// `per_second` sustained, `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
        }
    }
}

/// Timeouts and limits of one connection's protocol state ([`crate::Machine`]) and of every
/// operation ([`crate::policy`]). `None` disables a timeout; zero means zero.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// Time to send `connection_init` (close 4408 after it). Default 3 s.
    pub init_timeout: Option<Duration>,
    /// WebSocket ping interval, and legacy `ka` interval. Default 12 s.
    pub keepalive_interval: Option<Duration>,
    /// Silence allowed after a ping before the socket is dropped. Default 12 s.
    pub keepalive_timeout: Option<Duration>,
    /// How long a write may make no progress. Default 10 s.
    pub write_timeout: Option<Duration>,
    /// Live operations per connection. Default 100.
    pub max_subscriptions: usize,
    /// Longest operation id in bytes. Default 128.
    pub max_id_length: usize,
    /// Largest `connection_init` in bytes. Default 64 KiB.
    pub max_init_size: usize,
    /// Inbound messages allowed per connection. Default off.
    pub inbound_rate: Option<Rate>,
    /// Largest execution result in bytes. Default 32 MiB.
    pub max_response_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            init_timeout: Some(Duration::from_secs(3)),
            keepalive_interval: Some(Duration::from_secs(12)),
            keepalive_timeout: Some(Duration::from_secs(12)),
            write_timeout: Some(Duration::from_secs(10)),
            max_subscriptions: 100,
            max_id_length: 128,
            max_init_size: 64 * 1024,
            inbound_rate: None,
            max_response_size: 32 * 1024 * 1024,
        }
    }
}

impl Settings {
    /// Sets [`Settings::init_timeout`].
    #[must_use]
    pub fn init_timeout(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.init_timeout = d.into();
        self
    }

    /// Sets [`Settings::keepalive_interval`].
    #[must_use]
    pub fn keepalive_interval(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.keepalive_interval = d.into();
        self
    }

    /// Sets [`Settings::keepalive_timeout`].
    #[must_use]
    pub fn keepalive_timeout(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.keepalive_timeout = d.into();
        self
    }

    /// Sets [`Settings::write_timeout`].
    #[must_use]
    pub fn write_timeout(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.write_timeout = d.into();
        self
    }

    /// Sets [`Settings::max_subscriptions`].
    #[must_use]
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.max_subscriptions = n;
        self
    }

    /// Sets [`Settings::max_id_length`].
    #[must_use]
    pub fn max_id_length(mut self, bytes: usize) -> Self {
        self.max_id_length = bytes;
        self
    }

    /// Sets [`Settings::max_init_size`].
    #[must_use]
    pub fn max_init_size(mut self, bytes: usize) -> Self {
        self.max_init_size = bytes;
        self
    }

    /// Sets [`Settings::inbound_rate`].
    #[must_use]
    pub fn inbound_rate(mut self, rate: Option<Rate>) -> Self {
        self.inbound_rate = rate;
        self
    }

    /// Sets [`Settings::max_response_size`].
    #[must_use]
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }
}
