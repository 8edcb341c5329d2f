//! Timeouts and limits, with the defaults of `docs/PROTOCOL.md` section 4.

use std::time::Duration;

use crate::Subprotocol;

/// Per-server settings. Build with [`Config::default`] and the setters.
///
/// A zero duration disables the timer it controls (where the setter says so).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    pub(crate) init_timeout: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_subscriptions: usize,
    pub(crate) max_message_size: usize,
    pub(crate) max_connections: Option<usize>,
    pub(crate) subprotocols: Vec<Subprotocol>,
    pub(crate) detect_leaks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            init_timeout: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(12),
            keepalive_timeout: Duration::from_secs(12),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(10),
            max_subscriptions: 100,
            max_message_size: 1024 * 1024,
            max_connections: None,
            subprotocols: Subprotocol::ALL.to_vec(),
            detect_leaks: false,
        }
    }
}

impl Config {
    /// Time a client has after the upgrade to send `connection_init`; the peer then sees
    /// close 4408 `Connection initialisation timeout`. Zero disables. Default is 3 s.
    #[must_use]
    pub fn init_timeout(mut self, d: Duration) -> Self {
        self.init_timeout = d;
        self
    }

    /// Interval of WebSocket ping frames, and of `ka` messages on the legacy subprotocol.
    /// Zero disables both (and the liveness check). Default is 12 s.
    #[must_use]
    pub fn keepalive_interval(mut self, d: Duration) -> Self {
        self.keepalive_interval = d;
        self
    }

    /// How long after a ping the peer may stay silent (no frame of any kind) before the
    /// socket is dropped without a close frame (the peer sees 1006). Default is 12 s.
    #[must_use]
    pub fn keepalive_timeout(mut self, d: Duration) -> Self {
        self.keepalive_timeout = d;
        self
    }

    /// How long a write or flush may stay blocked (peer not reading) before the socket is
    /// dropped without a close frame. Zero disables. Default is 10 s.
    #[must_use]
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = d;
        self
    }

    /// How long to try to deliver our close frame and wait for the peer's answer before
    /// dropping the socket. Default is 1 s.
    #[must_use]
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// Time a TCP client has to finish the HTTP upgrade; then the TCP connection is dropped.
    /// Default is 10 s.
    #[must_use]
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Live operations per connection (preparing or streaming). Past it a `subscribe` gets
    /// `error` `[{"message":"Subscription limit reached"}]` and the socket stays open.
    /// Default is 100.
    #[must_use]
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.max_subscriptions = n;
        self
    }

    /// Largest inbound message in bytes; a larger one closes 1009 `Message too big`.
    /// Default is 1 MiB.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Live connections per server; past it the upgrade completes and the socket is closed
    /// 1013 `Try again later`. `None` (the default) means unlimited.
    #[must_use]
    pub fn max_connections(mut self, n: Option<usize>) -> Self {
        self.max_connections = n;
        self
    }

    /// The subprotocols offered, in no particular order (the client's order decides).
    /// Default is both.
    #[must_use]
    pub fn subprotocols(mut self, protocols: &[Subprotocol]) -> Self {
        self.subprotocols = protocols.to_vec();
        self
    }

    /// Leak detection: each operation gets an [`crate::OperationToken`] in its request
    /// data; if a clone of it outlives the operation's stream (user code kept it), the
    /// operation is reported through `tracing` (target `subscope::leak`, with its id and
    /// operation name) and counted in the gauges. Costs one small allocation per
    /// operation. Default is off.
    #[must_use]
    pub fn detect_leaks(mut self, on: bool) -> Self {
        self.detect_leaks = on;
        self
    }

    /// The subprotocols enabled.
    pub fn enabled_subprotocols(&self) -> &[Subprotocol] {
        &self.subprotocols
    }
}
