//! What one subscription operation resumes after, and the id of the event it resolves now:
//! the link between a topic subscription and the results' `extensions.eventId`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::{Request, Value};

use super::{EventId, ParseEventIdError};

/// The server puts one into the data of every subscription it executes: the id the client
/// resumes after (`extensions.lastEventId`, or SSE's `Last-Event-ID`) and a cell where the
/// topic subscription records the id of the event being resolved, which the server copies
/// into that result's `extensions.eventId`. [`super::Topics::resume`] uses it; a resolver
/// with its own event source can too.
#[derive(Debug, Clone)]
pub struct Resume {
    after: Option<EventId>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    current: Mutex<Option<EventId>>,
    taken: AtomicBool,
}

impl Resume {
    /// The resume state of the operation `ctx` resolves (`None` outside a subscription
    /// served by subscope).
    pub fn of<'a>(ctx: &'a async_graphql::Context<'_>) -> Option<&'a Self> {
        ctx.data_opt::<Self>()
    }

    /// The id the client resumes after, marking the resume as handled: the server then
    /// leaves saying a gap to the event source.
    pub fn take_after(&self) -> Option<EventId> {
        self.shared.taken.store(true, Ordering::Relaxed);
        self.after
    }

    /// The id the client resumes after, without handling it.
    pub fn after(&self) -> Option<EventId> {
        self.after
    }

    /// Records the id of the event being resolved now (`None`: the item has none).
    pub fn record(&self, id: Option<EventId>) {
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = id;
    }

    pub(crate) fn new(after: Option<EventId>) -> Self {
        Self {
            after,
            shared: Arc::default(),
        }
    }

    /// The id recorded for the result being produced now, cleared for the next one.
    pub(crate) fn take_current(&self) -> Option<EventId> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Whether a resume was asked for and nothing handled it (a resolver without
    /// history): the server says the gap itself.
    pub(crate) fn unhandled(&self) -> bool {
        self.after.is_some() && !self.shared.taken.load(Ordering::Relaxed)
    }
}

/// A `lastEventId` that is not an event id: a request error.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ResumeError {
    #[error("lastEventId must be a string")]
    NotAString,
    #[error("invalid lastEventId: {0}")]
    Malformed(#[from] ParseEventIdError),
}

/// The request's `extensions.lastEventId` (`null` or absent: none).
pub(crate) fn resume_of(request: &Request) -> Result<Option<EventId>, ResumeError> {
    match request.extensions.get("lastEventId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.parse()?)),
        Some(_) => Err(ResumeError::NotAString),
    }
}
