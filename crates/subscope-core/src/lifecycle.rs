//! Running the connection-level hooks, the same way for a WebSocket and for an HTTP
//! request or stream: one reading of what `on_connect` decided ([`Admission`]) and one
//! guard that runs the end hooks on every path ([`EndHooks`]).

use std::any::Any;
use std::sync::Arc;

use crate::hooks::{Accept, Reject};
use crate::{CloseReason, ConnectionInfo, EndReason, Gauges, Hooks};

/// What `on_connect` decided, panics included, logged once here.
pub(crate) enum Admission {
    /// Accepted: the session data, and the ack payload (WebSocket only).
    Accepted(Accept),
    /// Refused with this message: 4403 (legacy: `connection_error` + 1011), HTTP 403, or
    /// 401 with the `WWW-Authenticate` challenge when there is one.
    Refused(
        String,
        // Read by the HTTP side only.
        #[cfg_attr(not(feature = "http"), allow(dead_code))] Option<String>,
    ),
    /// The hook failed or panicked: 4500 (legacy: `connection_error` + 1011), HTTP 500.
    Failed,
}

impl Admission {
    /// Reads the hook's result (`Err`: it panicked) for connection `conn`.
    pub(crate) fn of(
        result: Result<Result<Accept, Reject>, Box<dyn Any + Send>>,
        conn: u64,
    ) -> Self {
        match result {
            Ok(Ok(accept)) => Self::Accepted(accept),
            Ok(Err(reject)) if reject.is_internal() => {
                tracing::warn!(conn, error = %reject, "on_connect failed");
                Self::Failed
            }
            Ok(Err(reject)) => {
                tracing::debug!(conn, reason = %reject, "on_connect refused");
                Self::Refused(
                    reject.message().to_owned(),
                    reject.challenge().map(str::to_owned),
                )
            }
            Err(_panic) => {
                tracing::error!(conn, "on_connect panicked");
                Self::Failed
            }
        }
    }

    #[cfg(feature = "http")]
    /// The close reason of a connection that was not admitted.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        match self {
            Self::Accepted(_) => None,
            Self::Refused(..) => Some(CloseReason::Forbidden),
            Self::Failed => Some(CloseReason::InternalError),
        }
    }
}

/// What a connection holds that its end releases, besides running the hooks.
pub(crate) enum Slot {
    /// A WebSocket: counted in `connections`, with its tracing span.
    Connection(tracing::Span),
    #[cfg(feature = "http")]
    /// An HTTP stream counted against `max_http_streams`.
    HttpStream,
    #[cfg(feature = "http")]
    /// An HTTP request that holds no slot (plain GraphQL over HTTP).
    Request,
}

/// Runs the end hooks when a connection (a WebSocket, an HTTP request, or an HTTP stream's
/// reservation) is gone, on every path: `on_disconnect` if it was accepted, then
/// `on_close`, with [`CloseReason::Dropped`] unless a reason was set. Dropped after the
/// connection's operations, so the hooks run after every `on_complete`.
pub(crate) struct EndHooks<H: Hooks> {
    pub(crate) conn: Arc<ConnectionInfo>,
    pub(crate) hooks: Arc<H>,
    pub(crate) gauges: Arc<Gauges>,
    pub(crate) slot: Slot,
    /// Whether `on_connect` accepted it (then `on_disconnect` runs too).
    pub(crate) accepted: bool,
    pub(crate) reason: Option<CloseReason>,
}

impl<H: Hooks> EndHooks<H> {
    /// A guard for `conn`, not accepted yet and with no reason yet.
    pub(crate) fn new(
        conn: Arc<ConnectionInfo>,
        hooks: &Arc<H>,
        gauges: &Arc<Gauges>,
        slot: Slot,
    ) -> Self {
        Self {
            conn,
            hooks: Arc::clone(hooks),
            gauges: Arc::clone(gauges),
            slot,
            accepted: false,
            reason: None,
        }
    }
}

impl<H: Hooks> Drop for EndHooks<H> {
    fn drop(&mut self) {
        let reason = self.reason.take().unwrap_or(CloseReason::Dropped);
        match &self.slot {
            Slot::Connection(span) => {
                self.gauges.close_connection(reason.kind());
                span.record("close_code", reason.code());
                span.record("close_reason", tracing::field::display(reason.reason()));
                tracing::debug!(parent: span, code = reason.code(), reason = %reason.reason(), "connection closed");
            }
            #[cfg(feature = "http")]
            Slot::HttpStream | Slot::Request => {
                if matches!(self.slot, Slot::HttpStream) {
                    self.gauges.close_http_stream();
                }
                tracing::debug!(conn = self.conn.id, transport = %self.conn.transport, reason = %reason, "http stream ended");
            }
        }
        let (hooks, conn, reason) = (&self.hooks, &self.conn, &reason);
        if self.accepted {
            run_guarded(&self.gauges, "on_disconnect", conn.id, || {
                hooks.on_disconnect(conn, reason);
            });
        }
        run_guarded(&self.gauges, "on_close", conn.id, || {
            hooks.on_close(conn, reason);
        });
    }
}

/// What the end of its connection (or HTTP stream) means to an operation still live:
/// `Dropped` when the owning future was dropped from outside, else `ConnectionClosed`.
pub(crate) fn operation_end(reason: &CloseReason) -> EndReason {
    match reason {
        CloseReason::Dropped => EndReason::Dropped,
        r => EndReason::ConnectionClosed(r.clone()),
    }
}

/// Runs a drop-time hook, catching a panic: one that escaped a `Drop` during unwinding
/// would abort the process.
pub(crate) fn run_guarded(gauges: &Gauges, hook: &'static str, conn: u64, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        gauges.count_hook_panic();
        tracing::error!(
            conn,
            hook,
            "hook panicked (caught; the connection's cleanup went on)"
        );
    }
}
