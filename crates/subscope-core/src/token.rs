//! The leak detector's marker of one operation's execution state, and the check made once
//! its stream is gone.

use std::sync::{Arc, Weak};

use crate::Gauges;

/// A marker of one operation's execution state, present in its request data when leak
/// detection is on ([`crate::Config::detect_leaks`]); resolvers reach it with
/// `ctx.data::<OperationToken>()`.
///
/// subscope drops the operation's stream, and with it every clone it owns, when the
/// operation ends. A clone still alive then was kept by user code (a spawned task, a
/// global), and is reported through `tracing` (target `subscope::leak`) and counted in
/// [`crate::GaugeSnapshot::leaked_operations`].
#[derive(Debug, Clone)]
pub struct OperationToken(pub(crate) Arc<TokenInner>);

#[derive(Debug)]
pub(crate) struct TokenInner {
    pub(crate) conn: u64,
    pub(crate) id: String,
    pub(crate) operation_name: Option<String>,
}

impl OperationToken {
    /// The operation id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The connection number ([`crate::ConnectionInfo::id`]).
    pub fn connection(&self) -> u64 {
        self.0.conn
    }

    /// The `operationName` of the request, if any.
    pub fn operation_name(&self) -> Option<&str> {
        self.0.operation_name.as_deref()
    }
}

/// Reports a leak if `token` is still alive: called once the stream that owned the
/// operation's execution state was dropped, so only a clone kept by user code can hold it.
pub(crate) fn check_leak(token: Option<&Weak<TokenInner>>, gauges: &Gauges) {
    let Some(inner) = token.and_then(Weak::upgrade) else {
        return;
    };
    gauges.count_leak();
    tracing::warn!(
        target: "subscope::leak",
        conn = inner.conn,
        id = %inner.id,
        operation = inner.operation_name.as_deref().unwrap_or("<anonymous>"),
        holders = Arc::strong_count(&inner) - 1,
        "operation state still alive after its stream was dropped (a clone kept by user code?)"
    );
}
