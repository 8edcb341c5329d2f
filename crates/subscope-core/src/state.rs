//! What every connection of one server shares: the schema, hooks, runtime, settings,
//! gauges, shutdown signals, sharing, and the registry of HTTP streams. The WebSocket path
//! (`server`, `ws_session`) and the HTTP path (`over_http`) both read it; neither imports the
//! other for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::operation::Sharing;
#[cfg(feature = "http")]
use crate::reservations::Reservations;
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
