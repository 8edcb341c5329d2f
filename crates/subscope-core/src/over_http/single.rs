//! The operations of every HTTP event stream, in one registry per server.
//!
//! Each stream's operations live in a [`Reservation`]: the body polls them, and dropping
//! the body (however the stream ended) closes it, which drops every operation before
//! `close` returns. The registry lets the server reach them too: shutdown's forced phase
//! closes every reservation even when hyper (or axum) no longer polls its body, so
//! [`crate::Server::shutdown`] keeps its promise for HTTP.
//!
//! graphql-sse's single-connection mode is the same thing with a token: a `PUT` reserves
//! (and runs `on_connect` with its headers; the reservation is the connection in the
//! hooks' sense), one event stream opens it, operations are `POST`ed to it. A reservation
//! never opened expires after the handshake timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};

use async_graphql::Data;

use crate::children::{ChildEvent, ChildSet};
use crate::lifecycle::EndHooks;
use crate::operation::Operation;
use crate::sync::TrackerToken;
use crate::{CloseReason, ConnectionInfo, EndReason, Hooks};

/// Every live reservation of a server, by token.
pub(crate) struct Reservations<H: Hooks> {
    map: Mutex<HashMap<String, Arc<Reservation<H>>>>,
    /// Single-connection reservations not opened yet (bounded by
    /// `Config::max_pending_reservations`: a flood of `PUT`s cannot grow the table).
    pending: AtomicUsize,
}

impl<H: Hooks> Default for Reservations<H> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            pending: AtomicUsize::new(0),
        }
    }
}

impl<H: Hooks> Reservations<H> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Reservation<H>>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new reservation: under a fresh random token for single-connection mode
    /// (`tokened`; refused, handing `end` back, when `max_pending` are not opened yet),
    /// else under a key no token looks like.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        conn: Arc<ConnectionInfo>,
        session: Arc<Data>,
        end: EndHooks<H>,
        tokened: bool,
        live: TrackerToken,
        max_pending: usize,
    ) -> Result<Arc<Reservation<H>>, EndHooks<H>> {
        if tokened {
            let before = self.pending.fetch_add(1, Ordering::Relaxed);
            if before >= max_pending {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                return Err(end);
            }
        }
        let token = if tokened {
            new_token()
        } else {
            format!("#{}", conn.id)
        };
        let reservation = Arc::new(Reservation {
            token,
            tokened,
            registry: Arc::downgrade(self),
            conn,
            session,
            state: Mutex::new(State {
                ops: ChildSet::new(),
                phase: Phase::Reserved,
                end: Some(end),
                live: Some(live),
            }),
        });
        self.lock()
            .insert(reservation.token.clone(), Arc::clone(&reservation));
        Ok(reservation)
    }

    /// A tokened reservation left the `Reserved` phase.
    fn unpend(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// The single-connection reservation of `token` (never a distinct stream's).
    pub(crate) fn get_tokened(&self, token: &str) -> Option<Arc<Reservation<H>>> {
        self.lock().get(token).filter(|r| r.tokened).cloned()
    }

    fn forget(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Closes every reservation (server shutdown), open or not.
    pub(crate) fn close_all(&self, reason: &CloseReason) {
        let all: Vec<_> = self.lock().drain().map(|(_, r)| r).collect();
        for r in all {
            r.close(reason.clone());
        }
    }
}

/// 128 random bits, hex: a stream token is a capability, so it must not be guessable.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness (should not happen on a server): fall back to the per-process
        // random keys of std's hasher, still unpredictable to a peer.
        use std::hash::{BuildHasher, RandomState};
        let (a, b) = (
            RandomState::new().hash_one(1u8),
            RandomState::new().hash_one(2u8),
        );
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reserved, no stream yet.
    Reserved,
    /// Its stream is open.
    Open,
    /// Ended: every operation dropped, the token forgotten.
    Closed,
}

struct State<H: Hooks> {
    ops: ChildSet<Operation<H>>,
    phase: Phase,
    /// The end hooks, run when the reservation closes.
    end: Option<EndHooks<H>>,
    /// Counts for shutdown until closed.
    live: Option<TrackerToken>,
}

/// One reservation.
pub(crate) struct Reservation<H: Hooks> {
    pub(crate) token: String,
    /// A single-connection reservation (reachable by its token), not a distinct stream.
    tokened: bool,
    registry: Weak<Reservations<H>>,
    pub(crate) conn: Arc<ConnectionInfo>,
    pub(crate) session: Arc<Data>,
    state: Mutex<State<H>>,
}

/// Why an operation could not be added.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AddError {
    /// The reservation has ended.
    Gone,
    /// An operation with this id is live.
    Duplicate,
    /// `max_subscriptions` operations are live.
    Full,
}

impl<H: Hooks> Reservation<H> {
    fn lock(&self) -> MutexGuard<'_, State<H>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Opens the stream, once: `Err` with the phase if it is open or gone.
    pub(crate) fn open(&self) -> Result<(), Phase> {
        let mut state = self.lock();
        match state.phase {
            Phase::Reserved => {
                state.phase = Phase::Open;
                drop(state);
                self.left_reserved();
                Ok(())
            }
            other => Err(other),
        }
    }

    fn left_reserved(&self) {
        if self.tokened
            && let Some(registry) = self.registry.upgrade()
        {
            registry.unpend();
        }
    }

    /// Adds the operation `start` makes (it is polled once the stream is open); `start`
    /// runs only if the operation is accepted, so a refused one never counts as started.
    pub(crate) fn add(
        &self,
        id: String,
        max: usize,
        start: impl FnOnce() -> Operation<H>,
    ) -> Result<(), AddError> {
        let mut state = self.lock();
        if state.phase == Phase::Closed {
            return Err(AddError::Gone);
        }
        if state.ops.contains(&id) {
            return Err(AddError::Duplicate);
        }
        if state.ops.len() >= max {
            return Err(AddError::Full);
        }
        let op = start();
        if let Err(op) = state.ops.insert(id, op) {
            drop(state);
            op.finish(EndReason::Refused);
        }
        Ok(())
    }

    /// Takes operation `id` out (the caller drops it, outside the lock).
    pub(crate) fn remove(&self, id: &str) -> Option<Operation<H>> {
        self.lock().ops.remove(id)
    }

    pub(crate) fn poll_ops(&self, cx: &mut Context<'_>) -> Poll<ChildEvent<Operation<H>>> {
        self.lock().ops.poll_next(cx)
    }

    /// Ends the reservation: forgets the token, drops every operation (completed with
    /// `ConnectionClosed(reason)`, or `Dropped`), runs the end hooks, and only then stops
    /// counting for shutdown. Idempotent: the first reason wins.
    pub(crate) fn close(&self, reason: CloseReason) {
        if let Some(registry) = self.registry.upgrade() {
            registry.forget(&self.token);
        }
        let (ops, end, live) = {
            let mut state = self.lock();
            if state.phase == Phase::Reserved {
                self.left_reserved();
            }
            state.phase = Phase::Closed;
            state.ops.wake_parent();
            (state.ops.drain(), state.end.take(), state.live.take())
        };
        let op_reason = match &reason {
            CloseReason::Dropped => EndReason::Dropped,
            r => EndReason::ConnectionClosed(r.clone()),
        };
        for op in ops {
            op.finish(op_reason.clone());
        }
        if let Some(mut end) = end {
            end.reason = Some(reason);
        }
        drop(live);
    }
}
