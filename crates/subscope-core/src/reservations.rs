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
//!
//! No user code is polled under the lock: a user stream can block its thread for as long
//! as it likes, and a `POST`, `DELETE` or shutdown must not wait for it on another thread.
//! So the body checks the operations' [`Scope`] out of the state, polls it without the
//! lock, and checks it back in. While it is out, the state still answers for it: `ids`
//! holds every live id (so the duplicate and `max_subscriptions` checks of `add` stay
//! exact), an added operation waits in `added`, a removed one is recorded in `removed`,
//! and a close marks the state closed; the check-in applies them (removals first, then
//! the close, else the additions) before the body sees the poll's event. So the
//! guarantee has one documented exception: the operations checked out at the moment of a
//! `close` (a poll of them is running) are dropped and finished by the poller as soon as
//! that poll returns, and only then does the reservation run its end hooks and stop
//! counting for shutdown, which therefore still waits for them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use async_graphql::Data;

use crate::lifecycle::{EndHooks, operation_end};
use crate::operation::Operation;
use crate::scope::{Scope, ScopeEvent};
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
    #[allow(clippy::too_many_arguments)] // private, two call sites
    pub(crate) fn reserve(
        self: &Arc<Self>,
        conn: Arc<ConnectionInfo>,
        session: Arc<Data>,
        valid_until: Option<Instant>,
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
            valid_until,
            state: Mutex::new(State {
                ops: Some(Scope::new()),
                ids: HashSet::new(),
                added: Vec::new(),
                removed: Vec::new(),
                reason: None,
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
    /// The operations; `None` while the body polls them (checked out, without the lock).
    ops: Option<Scope<Operation<H>>>,
    /// The id of every live operation, in `ops` (checked out or not) or in `added`.
    ids: HashSet<String>,
    /// Added while `ops` was out: inserted at check-in.
    added: Vec<(String, Operation<H>)>,
    /// Removed while `ops` was out: finished at check-in, with their reason.
    removed: Vec<(String, EndReason)>,
    /// Why it closed (the first reason wins).
    reason: Option<CloseReason>,
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
    /// When the authorization `on_connect` granted ends (`None`: never).
    pub(crate) valid_until: Option<Instant>,
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

    /// The ids of its live operations, sorted.
    pub(crate) fn live_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().ids.iter().cloned().collect();
        ids.sort();
        ids
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
        if state.ids.contains(&id) {
            return Err(AddError::Duplicate);
        }
        if state.ids.len() >= max {
            return Err(AddError::Full);
        }
        let op = start();
        state.ids.insert(id.clone());
        match &mut state.ops {
            // `insert` wakes the body (it schedules the operation's first poll); `ids`
            // ruled out a duplicate.
            Some(ops) => {
                if let Err(op) = ops.insert(id.clone(), op) {
                    state.ids.remove(&id);
                    drop(state);
                    op.finish(EndReason::Refused);
                }
            }
            // The body is polling: it inserts it at check-in, and wakes itself then.
            None => state.added.push((id, op)),
        }
        Ok(())
    }

    /// Stops operation `id`, finished with `reason`: at once (outside the lock), or, if
    /// the body is polling it right now, by the body as soon as that poll returns.
    pub(crate) fn remove(&self, id: &str, reason: EndReason) {
        let mut state = self.lock();
        if !state.ids.remove(id) {
            return;
        }
        let op = match &mut state.ops {
            Some(ops) => ops.remove(id),
            None => match state.added.iter().position(|(added, _)| added == id) {
                Some(i) => Some(state.added.swap_remove(i).1),
                None => {
                    state.removed.push((id.to_owned(), reason));
                    return;
                }
            },
        };
        drop(state);
        if let Some(op) = op {
            op.finish(reason);
        }
    }

    /// Polls the operations without holding the lock (see the module docs). `Pending`
    /// once closed.
    pub(crate) fn poll_ops(&self, cx: &mut Context<'_>) -> Poll<ScopeEvent<Operation<H>>> {
        let ops = {
            let mut state = self.lock();
            if state.phase == Phase::Closed {
                return Poll::Pending;
            }
            // One body polls, from one place: never checked out twice.
            match state.ops.take() {
                Some(ops) => ops,
                None => return Poll::Pending,
            }
        };
        let mut out = CheckedOut {
            owner: self,
            ops: Some(ops),
        };
        let polled = out
            .ops
            .as_mut()
            .map_or(Poll::Pending, |ops| ops.poll_next(cx));
        match out.ops.take() {
            Some(ops) => self.check_in(ops, polled, cx),
            None => Poll::Pending,
        }
    }

    /// Puts the operations back and applies what happened while they were out; hands
    /// back the event of the poll unless the reservation closed meanwhile.
    fn check_in(
        &self,
        mut ops: Scope<Operation<H>>,
        polled: Poll<ScopeEvent<Operation<H>>>,
        cx: &mut Context<'_>,
    ) -> Poll<ScopeEvent<Operation<H>>> {
        let mut state = self.lock();
        // An operation that left the set in this poll: its id is free again, unless a
        // `remove` already freed it (and then the event finishes it, not the removal).
        if let Poll::Ready(ScopeEvent::Ended(id, _) | ScopeEvent::Panicked(id, _)) = &polled {
            match state.removed.iter().position(|(removed, _)| removed == id) {
                Some(i) => {
                    state.removed.swap_remove(i);
                }
                None => {
                    state.ids.remove(id);
                }
            }
        }
        let mut finish: Vec<(Operation<H>, EndReason)> = std::mem::take(&mut state.removed)
            .into_iter()
            .filter_map(|(id, reason)| ops.remove(&id).map(|op| (op, reason)))
            .collect();
        if state.phase == Phase::Closed {
            // Closed while we polled: everything is ours to drop, then the end hooks.
            let reason = state.reason.clone().unwrap_or(CloseReason::Dropped);
            let op_reason = operation_end(&reason);
            let event_op = match polled {
                Poll::Ready(ScopeEvent::Ended(_, op) | ScopeEvent::Panicked(_, op)) => Some(op),
                _ => None,
            };
            finish.extend(
                ops.drain()
                    .into_iter()
                    .chain(state.added.drain(..).map(|(_, op)| op))
                    .chain(event_op)
                    .map(|op| (op, op_reason.clone())),
            );
            state.ids.clear();
            state.ops = Some(ops);
            let (end, live) = (state.end.take(), state.live.take());
            drop(state);
            Self::finish_all(finish, end, reason, live);
            // The body sees `Closed` on its next poll.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        for (id, op) in state.added.drain(..) {
            if let Err(op) = ops.insert(id, op) {
                finish.push((op, EndReason::Refused));
            }
        }
        state.ops = Some(ops);
        drop(state);
        for (op, reason) in finish {
            op.finish(reason);
        }
        polled
    }

    /// Drops `ops` (each `on_complete` with its reason), then runs the end hooks with
    /// `reason`, and only then stops counting for shutdown.
    fn finish_all(
        ops: Vec<(Operation<H>, EndReason)>,
        end: Option<EndHooks<H>>,
        reason: CloseReason,
        live: Option<TrackerToken>,
    ) {
        for (op, reason) in ops {
            op.finish(reason);
        }
        if let Some(mut end) = end {
            end.reason = Some(reason);
        }
        drop(live);
    }

    /// Ends the reservation: forgets the token, drops every operation (completed with
    /// `ConnectionClosed(reason)`, or `Dropped`), runs the end hooks, and only then stops
    /// counting for shutdown. Idempotent: the first reason wins. If the body is polling
    /// the operations right now, it does all of this as soon as its poll returns (see the
    /// module docs); `close` does not wait for it.
    pub(crate) fn close(&self, reason: CloseReason) {
        if let Some(registry) = self.registry.upgrade() {
            registry.forget(&self.token);
        }
        let mut state = self.lock();
        if state.phase == Phase::Reserved {
            self.left_reserved();
        }
        state.phase = Phase::Closed;
        let reason = state.reason.get_or_insert(reason).clone();
        if state.ops.is_none() {
            // Checked out: the poller finishes those operations, then the rest. Those
            // waiting to be added are not polled: finished here.
            let added = std::mem::take(&mut state.added);
            drop(state);
            let op_reason = operation_end(&reason);
            for (_, op) in added {
                op.finish(op_reason.clone());
            }
            return;
        }
        let drained = state.ops.as_mut().map(|ops| {
            ops.wake_parent();
            ops.drain()
        });
        state.ids.clear();
        let (end, live) = (state.end.take(), state.live.take());
        drop(state);
        let op_reason = operation_end(&reason);
        let ops = drained
            .into_iter()
            .flatten()
            .map(|op| (op, op_reason.clone()))
            .collect();
        Self::finish_all(ops, end, reason, live);
    }
}

/// The operations while the body polls them: put back even if the poll unwinds, so a
/// close can still finish them.
struct CheckedOut<'a, H: Hooks> {
    owner: &'a Reservation<H>,
    ops: Option<Scope<Operation<H>>>,
}

impl<H: Hooks> Drop for CheckedOut<'_, H> {
    fn drop(&mut self) {
        if let Some(ops) = self.ops.take() {
            let _ = self.owner.check_in(
                ops,
                Poll::Pending,
                &mut Context::from_waker(std::task::Waker::noop()),
            );
        }
    }
}
