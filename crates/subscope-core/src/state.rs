//! What every connection of one server shares: the schema, hooks, runtime, settings,
//! gauges, shutdown signals, sharing, and the registry of HTTP streams. The WebSocket path
//! (`server`, `ws_session`) and the HTTP path (`over_http`) both read it; neither imports the
//! other for it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::operation::Sharing;
#[cfg(feature = "http")]
use crate::reservations::Reservations;
use crate::rt::Timer;
use crate::sessions::Sessions;
use crate::sync::{Signal, Tracker};
use crate::{Config, Gauges, Hooks};

/// The state of one server.
pub(crate) struct State<E, H: Hooks, R> {
    pub(crate) executor: E,
    pub(crate) hooks: Arc<H>,
    pub(crate) runtime: R,
    pub(crate) config: Config,
    pub(crate) gauges: Arc<Gauges>,
    pub(crate) stop: Arc<Signal>,
    pub(crate) force: Arc<Signal>,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) next_id: AtomicU64,
    /// How this server's operations share executions: built once, used by every
    /// transport.
    pub(crate) sharing: Sharing,
    #[cfg(feature = "http")]
    /// The operations of every HTTP event stream (and single-connection reservation).
    pub(crate) reservations: Arc<Reservations<H>>,
    /// Every authorized WebSocket connection and HTTP stream, for revocation.
    pub(crate) sessions: Arc<Sessions>,
}

/// A connection's or HTTP stream's own shutdown signal.
pub(crate) type StopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

impl<E, H: Hooks, R: Timer + Clone> State<E, H, R> {
    /// Resolves when the connection or stream numbered `key` must close for shutdown: at
    /// once without a drain window; else at its own point of the window (keys 1, 2, 3…
    /// land evenly spread over it), or at once when the grace period ran out.
    pub(crate) fn stop_for(&self, key: u64) -> StopFuture {
        let (stop, force) = (Arc::clone(&self.stop), Arc::clone(&self.force));
        let window = self.config.drain;
        let timer = self.runtime.clone();
        Box::pin(async move {
            stop.wait().await;
            if window.is_zero() {
                return;
            }
            // The golden-ratio sequence: any run of consecutive keys covers the window
            // nearly evenly, whoever is still connected.
            let spread = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) as f64 / u64::MAX as f64;
            let delay = window.mul_f64(spread.clamp(0.0, 1.0));
            futures_lite::future::or(timer.sleep(delay), force.wait()).await;
        })
    }

    /// Whether this server accepts new work: false from the moment shutdown begins.
    pub(crate) fn is_ready(&self) -> bool {
        !self.stop.is_raised()
    }
}

impl<E, H: Hooks, R> State<E, H, R> {
    /// Whether a browser `origin` may connect (WebSocket upgrade or HTTP request); a
    /// refusal is counted and logged here.
    pub(crate) fn allows_origin(&self, origin: Option<&str>, peer: Option<SocketAddr>) -> bool {
        if self.config.is_origin_allowed(origin) {
            return true;
        }
        self.refused_origin(origin.unwrap_or_default(), peer);
        false
    }

    /// Counts and logs an origin refused with HTTP 403.
    pub(crate) fn refused_origin(&self, origin: &str, peer: Option<SocketAddr>) {
        self.gauges.count_origin_refused();
        tracing::info!(?peer, origin, "refused (403): origin not allowed");
    }
}
