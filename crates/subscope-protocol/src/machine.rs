//! The connection state machine: protocol rules with no IO, no clock and no futures.
//!
//! [`Machine`] is deterministic: inputs carry `now`, outputs are pulled.
//!
//! - **Inputs** (`handle_*`): a text or binary frame, any sign of life, the result of the
//!   `on_connect` hook, an operation's response / refusal / end / panic, a timeout, the
//!   write side blocking or draining, shutdown.
//! - **Outputs**: [`Machine::poll_output`] yields, in order, frames to send, hooks to run,
//!   operations to start or stop, and finally at most one [`Output::Close`].
//!   [`Machine::poll_timeout`] gives the next deadline; call [`Machine::handle_timeout`] once
//!   the clock passes it.
//!
//! After every input, drain `poll_output` completely, then re-read `poll_timeout`.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use async_graphql::{Request, ServerError};
use serde_json::Value;

use crate::bounds::{HOLD_BYTES, HOLD_LIMIT};
use crate::dialect::{self, Dialect, Duplicate, Reply};
use crate::message::{Inbound, InvalidMessage};
use crate::policy::{self, OperationEvent, OperationState, Verdict};
use crate::{CloseReason, EndReason, Settings, Subprotocol};

/// An action the driver must take.
#[derive(Debug)]
#[allow(clippy::exhaustive_enums)] // every consumer must handle each one: adding one is breaking
pub enum Output {
    /// Send a text frame.
    Text(String),
    /// Send a WebSocket ping frame (liveness check).
    Ping,
    /// Run `on_connect` with this payload and report back with [`Machine::handle_connect`].
    Connect {
        /// The `connection_init` payload (absent, null or an object).
        payload: Option<Value>,
    },
    /// Start an operation: run `on_subscribe`, then execute. Report its events back.
    Start {
        /// The operation id (now reserved).
        id: String,
        /// The GraphQL request.
        request: Box<Request>,
    },
    /// Drop the operation's stream now, and complete it with this reason.
    Stop {
        /// The operation id (already released).
        id: String,
        /// Why it ends.
        reason: EndReason,
    },
    /// The connection ends: drop every operation, then close (or drop) the socket. Final.
    Close(CloseReason),
    /// An acknowledged `graphql-transport-ws` client sent a `ping` with this payload (the
    /// `pong` is already queued): it may carry a fresh credential. Report a decision with
    /// [`Machine::set_expiry`] or [`Machine::handle_renewal_refused`], or ignore it.
    Renew(Value),
}

/// What `on_connect` decided, as the machine needs it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConnectOutcome {
    /// Accepted, with an optional ack payload.
    Accepted(Option<Value>),
    /// Refused with a message.
    Rejected(String),
    /// The hook failed or panicked.
    Failed,
}

/// The deadlines a connection keeps; one runtime sleep serves them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    InitWait = 0,
    Ping = 1,
    PongDeadline = 2,
    KeepAliveMessage = 3,
    Write = 4,
    Expiry = 5,
}

const TIMERS: [TimerKind; 6] = [
    TimerKind::InitWait,
    TimerKind::Ping,
    TimerKind::PongDeadline,
    TimerKind::KeepAliveMessage,
    TimerKind::Write,
    TimerKind::Expiry,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingInit,
    Initialising,
    Acknowledged,
    Closed,
}

/// The per-connection protocol state machine. See the module docs for the call order.
pub struct Machine {
    protocol: Subprotocol,
    /// Everything that differs between subprotocols; the machine never branches on one.
    dialect: &'static dyn Dialect,
    settings: Settings,
    phase: Phase,
    /// Set at the ack and never cleared (the phase moves on to `Closed`).
    acknowledged: bool,
    ops: HashMap<String, OperationState>,
    out: VecDeque<Output>,
    deadlines: [Option<Instant>; TIMERS.len()],
    /// Token bucket of the inbound rate limit, and when it was last refilled.
    tokens: f64,
    refilled: Instant,
    /// Text messages that arrived while `on_connect` runs: processed, in order, once it
    /// has decided (so a client that sends `start` right behind `connection_init`, as the
    /// legacy Apollo client does, is neither refused nor let past the hook).
    held: VecDeque<String>,
    /// Bytes of text in `held`.
    held_bytes: usize,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("protocol", &self.protocol)
            .field("phase", &self.phase)
            .field("operations", &self.ops.len())
            .field("queued", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// A machine for a freshly upgraded socket that negotiated `protocol`.
    pub fn new(protocol: Subprotocol, settings: &Settings, now: Instant) -> Self {
        let settings = *settings;
        let mut machine = Self {
            protocol,
            dialect: dialect::of(protocol),
            settings,
            phase: Phase::AwaitingInit,
            acknowledged: false,
            ops: HashMap::new(),
            out: VecDeque::new(),
            deadlines: [None; TIMERS.len()],
            tokens: settings.inbound_rate.map_or(0.0, |r| r.burst),
            refilled: now,
            held: VecDeque::new(),
            held_bytes: 0,
        };
        if let Some(d) = settings.init_timeout {
            machine.arm(TimerKind::InitWait, now + d);
        }
        if let Some(d) = settings.keepalive_interval {
            machine.arm(TimerKind::Ping, now + d);
        }
        machine
    }

    /// The negotiated subprotocol.
    pub fn protocol(&self) -> Subprotocol {
        self.protocol
    }

    /// Whether the connection was acknowledged at some point (it may be closed since).
    pub fn was_acknowledged(&self) -> bool {
        self.acknowledged
    }

    /// Whether [`Output::Close`] has been emitted.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the driver should stop reading for now: `on_connect` is running and enough
    /// messages (64) or bytes (64 KiB) are already waiting for its decision.
    pub fn is_input_paused(&self) -> bool {
        self.held.len() >= HOLD_LIMIT || self.held_bytes >= HOLD_BYTES
    }

    /// Operations live now (preparing or streaming).
    pub fn live_operations(&self) -> usize {
        self.ops.len()
    }

    /// The next action, if any.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest armed deadline, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        self.deadlines.iter().flatten().min().copied()
    }

    fn arm(&mut self, timer: TimerKind, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    fn disarm(&mut self, timer: TimerKind) {
        self.deadlines[timer as usize] = None;
    }

    fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed;
        self.deadlines = [None; TIMERS.len()];
        // Operations are released here; the driver drops their streams on Close.
        self.ops.clear();
        self.out.push_back(Output::Close(reason));
    }

    fn text(&mut self, frame: String) {
        self.out.push_back(Output::Text(frame));
    }

    /// Sends the reply's frame, then closes if it says so.
    fn reply(&mut self, reply: Reply) {
        if let Some(frame) = reply.frame {
            self.text(frame);
        }
        if let Some(reason) = reply.close {
            self.close(reason);
        }
    }

    /// Any inbound frame (text, binary, ping, pong): the peer is alive.
    pub fn handle_sign_of_life(&mut self, _now: Instant) {
        self.disarm(TimerKind::PongDeadline);
    }

    /// A WebSocket ping frame: a sign of life that counts against the inbound rate.
    pub fn handle_ping_frame(&mut self, now: Instant) {
        if !self.is_closed() {
            self.admit(now);
        }
    }

    /// Counts one inbound message against the rate limit (closing 1008 past it) and
    /// notes the sign of life. Returns whether the message may be processed.
    fn admit(&mut self, now: Instant) -> bool {
        self.handle_sign_of_life(now);
        let Some(rate) = self.settings.inbound_rate else {
            return true;
        };
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.close(CloseReason::RateLimited);
            false
        }
    }

    /// An inbound text frame.
    pub fn handle_text(&mut self, now: Instant, text: &str) {
        if self.is_closed() || !self.admit(now) {
            return;
        }
        if self.phase == Phase::Initialising {
            self.held_bytes += text.len();
            self.held.push_back(text.to_owned());
            return;
        }
        self.process_text(now, text);
    }

    fn process_text(&mut self, now: Instant, text: &str) {
        match self
            .dialect
            .decode(text)
            .and_then(|m| self.check_limits(text, m))
        {
            Ok(message) => self.handle_message(now, message),
            Err(kind) => {
                let reply = self.dialect.invalid(kind);
                self.reply(reply);
            }
        }
    }

    /// An inbound binary frame: invalid on both subprotocols.
    pub fn handle_binary(&mut self, now: Instant) {
        if self.is_closed() || !self.admit(now) {
            return;
        }
        let reply = self.dialect.binary();
        self.reply(reply);
    }

    /// A text frame that was not valid UTF-8: broken below the subprotocol, so every
    /// subprotocol closes 4400.
    pub fn handle_invalid_utf8(&mut self, _now: Instant) {
        tracing::debug!("text frame with invalid UTF-8");
        self.close(CloseReason::InvalidMessage(InvalidMessage::InvalidUtf8));
    }

    /// An inbound message above the size limit.
    pub fn handle_too_big(&mut self) {
        self.close(CloseReason::MessageTooBig);
    }

    /// Size limits on ids and on `connection_init`, applied like any invalid message.
    fn check_limits(&self, text: &str, message: Inbound) -> Result<Inbound, InvalidMessage> {
        match &message {
            Inbound::Subscribe { id, .. } | Inbound::Complete { id }
                if id.len() > self.settings.max_id_length =>
            {
                Err(InvalidMessage::IdTooLong)
            }
            Inbound::Init { .. } if text.len() > self.settings.max_init_size => {
                Err(InvalidMessage::InitTooLarge)
            }
            _ => Ok(message),
        }
    }

    fn handle_message(&mut self, now: Instant, message: Inbound) {
        match message {
            Inbound::Init { payload } => self.handle_init(payload),
            Inbound::Ping { payload } => {
                if let Some(pong) = self.dialect.pong(payload.as_ref()) {
                    self.text(pong);
                }
                if self.phase == Phase::Acknowledged
                    && let Some(payload) = payload
                {
                    self.out.push_back(Output::Renew(payload));
                }
            }
            Inbound::Pong => {}
            Inbound::Subscribe { id, request } => self.handle_subscribe(now, id, request),
            Inbound::Complete { id } => self.handle_client_complete(id),
            Inbound::Terminate => self.close(CloseReason::Terminated),
        }
    }

    fn handle_init(&mut self, payload: Option<Value>) {
        match self.phase {
            Phase::AwaitingInit => {
                self.phase = Phase::Initialising;
                self.disarm(TimerKind::InitWait);
                self.out.push_back(Output::Connect { payload });
            }
            Phase::Initialising | Phase::Acknowledged => {
                let reply = self.dialect.second_init();
                self.reply(reply);
            }
            Phase::Closed => {}
        }
    }

    /// The result of the `on_connect` hook requested by [`Output::Connect`].
    pub fn handle_connect(&mut self, now: Instant, outcome: ConnectOutcome) {
        if self.phase != Phase::Initialising {
            return;
        }
        self.decide_connect(now, outcome);
        // What arrived meanwhile, in order; dropped unheard if the hook refused.
        while let Some(text) = self.held.pop_front() {
            self.held_bytes -= text.len();
            if self.is_closed() {
                self.held.clear();
                self.held_bytes = 0;
                break;
            }
            self.process_text(now, &text);
        }
    }

    fn decide_connect(&mut self, now: Instant, outcome: ConnectOutcome) {
        match outcome {
            ConnectOutcome::Accepted(payload) => {
                // Acknowledged before the ack is written: a subscribe sent right after the
                // client sees the ack is never refused.
                self.phase = Phase::Acknowledged;
                self.acknowledged = true;
                self.text(self.dialect.ack(payload.as_ref()));
                if let Some(every) = self.settings.keepalive_interval
                    && let Some(ka) = self.dialect.keepalive()
                {
                    self.text(ka);
                    self.arm(TimerKind::KeepAliveMessage, now + every);
                }
            }
            ConnectOutcome::Rejected(message) => {
                let reply = self.dialect.rejected(&message);
                self.reply(reply);
            }
            ConnectOutcome::Failed => {
                let reply = self.dialect.failed();
                self.reply(reply);
            }
        }
    }

    fn handle_subscribe(&mut self, _now: Instant, id: String, request: Box<Request>) {
        if self.phase != Phase::Acknowledged {
            self.close(CloseReason::SubscribeBeforeAck);
            return;
        }
        if self.ops.contains_key(&id) {
            match self.dialect.duplicate(&id) {
                Duplicate::Replace(frame) => {
                    self.ops.remove(&id);
                    self.out.push_back(Output::Stop {
                        id: id.clone(),
                        reason: EndReason::Replaced,
                    });
                    self.text(frame);
                }
                Duplicate::Close(reason) => {
                    self.close(reason);
                    return;
                }
            }
        }
        if self.ops.len() >= self.settings.max_subscriptions {
            let errors = policy::limit_error();
            let frame = self.error_frame(&id, &errors);
            self.text(frame);
            return;
        }
        self.ops.insert(id.clone(), OperationState::new());
        self.out.push_back(Output::Start { id, request });
    }

    fn handle_client_complete(&mut self, id: String) {
        if self.ops.remove(&id).is_none() {
            return; // unknown or finished: ignore
        }
        let reply = self.dialect.stopped(&id);
        self.out.push_back(Output::Stop {
            id,
            reason: EndReason::ClientStopped,
        });
        if let Some(frame) = reply {
            self.text(frame);
        }
    }

    fn error_frame(&self, id: &str, errors: &[ServerError]) -> String {
        self.dialect.error(id, errors)
    }

    /// What a running operation yielded, decided by the one operation policy
    /// ([`policy::decide`]) and framed in this connection's subprotocol. Events of an
    /// operation that is no longer live are ignored.
    pub fn handle_operation(&mut self, id: &str, event: OperationEvent<'_>) {
        let Some(state) = self.ops.get_mut(id) else {
            return;
        };
        match policy::decide(state, event, self.settings.max_response_size) {
            Verdict::Next(payload) => {
                let frame = self.dialect.next(id, &payload);
                self.text(frame);
            }
            Verdict::Fail { reason, errors } => {
                // A stream that ended by itself (panicked) is already gone: no Stop.
                let stop = !matches!(event, OperationEvent::Panicked);
                self.ops.remove(id);
                if stop {
                    self.out.push_back(Output::Stop {
                        id: id.to_owned(),
                        reason,
                    });
                }
                // The `error` frame; no `complete` follows.
                let frame = self.error_frame(id, &errors);
                self.text(frame);
            }
            Verdict::Complete => {
                // Released before the final message, so the client may reuse the id at once.
                self.ops.remove(id);
                let frame = self.dialect.complete(id);
                self.text(frame);
            }
        }
    }

    /// The write side could not take more (a write or flush is pending).
    pub fn handle_write_blocked(&mut self, now: Instant) {
        if let Some(d) = self.settings.write_timeout
            && self.deadlines[TimerKind::Write as usize].is_none()
        {
            self.arm(TimerKind::Write, now + d);
        }
    }

    /// The write side has drained.
    pub fn handle_write_idle(&mut self) {
        self.disarm(TimerKind::Write);
    }

    /// Graceful server shutdown: close 1001.
    pub fn handle_shutdown(&mut self) {
        self.close(CloseReason::ServerShutdown);
    }

    /// The connection's authorization ends at `at` (then close 4403 `Token expired`), or
    /// never (`None`). Called at the ack and on every renewal.
    pub fn set_expiry(&mut self, at: Option<Instant>) {
        if self.is_closed() {
            return;
        }
        match at {
            Some(at) => self.arm(TimerKind::Expiry, at),
            None => self.disarm(TimerKind::Expiry),
        }
    }

    /// The application revoked the connection's authorization: close 4403 `Forbidden`.
    pub fn handle_revoked(&mut self) {
        self.close(CloseReason::Revoked);
    }

    /// A renewal's credential was refused: close 4403 `Forbidden`.
    pub fn handle_renewal_refused(&mut self) {
        self.close(CloseReason::Forbidden);
    }

    /// Fires every deadline at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in TIMERS {
            if self.is_closed() {
                return;
            }
            match self.deadlines[timer as usize] {
                Some(at) if at <= now => {}
                _ => continue,
            }
            self.disarm(timer);
            match timer {
                TimerKind::InitWait => {
                    // Only the arrival of init is timed, not the hook's decision.
                    if self.phase == Phase::AwaitingInit {
                        self.close(CloseReason::InitTimeout);
                    }
                }
                TimerKind::Ping => {
                    self.out.push_back(Output::Ping);
                    if let Some(every) = self.settings.keepalive_interval {
                        self.arm(TimerKind::Ping, now + every);
                    }
                    if let Some(timeout) = self.settings.keepalive_timeout
                        && self.deadlines[TimerKind::PongDeadline as usize].is_none()
                    {
                        self.arm(TimerKind::PongDeadline, now + timeout);
                    }
                }
                TimerKind::PongDeadline => self.close(CloseReason::KeepaliveTimeout),
                TimerKind::KeepAliveMessage => {
                    if let Some(ka) = self.dialect.keepalive() {
                        self.text(ka);
                    }
                    if let Some(every) = self.settings.keepalive_interval {
                        self.arm(TimerKind::KeepAliveMessage, now + every);
                    }
                }
                TimerKind::Write => self.close(CloseReason::WriteTimeout),
                TimerKind::Expiry => self.close(CloseReason::TokenExpired),
            }
        }
    }
}

#[cfg(test)]
mod tests;
