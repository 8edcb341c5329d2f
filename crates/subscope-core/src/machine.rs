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
use std::time::{Duration, Instant};

use async_graphql::{Request, Response, ServerError};
use serde_json::Value;

use crate::protocol::{self, DecodeError, Inbound, legacy, transport_ws};
use crate::{CloseReason, Config, EndReason, Subprotocol};

/// The close reason of every 4400 (the reference implementation's text).
const INVALID_MESSAGE: &str = "Invalid message received";

/// An action the driver must take.
#[derive(Debug)]
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
}

/// What `on_connect` decided, as the machine needs it.
#[derive(Debug, Clone, PartialEq)]
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
}

const TIMERS: [TimerKind; 5] = [
    TimerKind::InitWait,
    TimerKind::Ping,
    TimerKind::PongDeadline,
    TimerKind::KeepAliveMessage,
    TimerKind::Write,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingInit,
    Initialising,
    Acknowledged,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpPhase {
    /// No response yet (hook running or first result pending).
    Preparing,
    /// At least one response delivered.
    Streaming,
}

/// The settings the machine uses (a subset of [`Config`]).
#[derive(Debug, Clone, Copy)]
struct Settings {
    init_timeout: Option<Duration>,
    keepalive_interval: Option<Duration>,
    keepalive_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    max_subscriptions: usize,
    max_id_length: usize,
    max_init_size: usize,
    rate: Option<crate::config::Rate>,
    max_response_size: usize,
}

/// The per-connection protocol state machine. See the module docs for the call order.
#[derive(Debug)]
pub struct Machine {
    protocol: Subprotocol,
    settings: Settings,
    phase: Phase,
    /// Set at the ack and never cleared (the phase moves on to `Closed`).
    acknowledged: bool,
    ops: HashMap<String, OpPhase>,
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

/// Messages held while `on_connect` runs before the driver stops reading.
pub(crate) const HOLD_LIMIT: usize = 64;
/// Bytes held while `on_connect` runs before the driver stops reading. One message may
/// overshoot it, so `held` never exceeds `HOLD_BYTES + max_message_size`.
pub(crate) const HOLD_BYTES: usize = 64 * 1024;

impl Machine {
    /// A machine for a freshly upgraded socket that negotiated `protocol`.
    pub fn new(protocol: Subprotocol, config: &Config, now: Instant) -> Self {
        let settings = Settings {
            init_timeout: config.init_timeout,
            keepalive_interval: config.keepalive_interval,
            keepalive_timeout: config.keepalive_timeout,
            write_timeout: config.write_timeout,
            max_subscriptions: config.max_subscriptions,
            max_id_length: config.max_id_length,
            max_init_size: config.max_init_size,
            rate: config.inbound_rate,
            max_response_size: config.max_response_size,
        };
        let mut machine = Self {
            protocol,
            settings,
            phase: Phase::AwaitingInit,
            acknowledged: false,
            ops: HashMap::new(),
            out: VecDeque::new(),
            deadlines: [None; TIMERS.len()],
            tokens: settings.rate.map_or(0.0, |r| r.burst),
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

    fn is_legacy(&self) -> bool {
        self.protocol == Subprotocol::GraphqlWs
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
        let Some(rate) = self.settings.rate else {
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
        let decoded = match self.protocol {
            Subprotocol::GraphqlTransportWs => transport_ws::decode(text),
            Subprotocol::GraphqlWs => legacy::decode(text),
        };
        match decoded.and_then(|m| self.check_limits(text, m)) {
            Ok(message) => self.handle_message(now, message),
            Err(err) => self.handle_invalid(err),
        }
    }

    /// An inbound binary frame: invalid on both subprotocols.
    pub fn handle_binary(&mut self, now: Instant) {
        if self.is_closed() || !self.admit(now) {
            return;
        }
        if self.is_legacy() {
            self.close(CloseReason::BinaryFrame);
        } else {
            tracing::debug!("binary frame on graphql-transport-ws");
            self.close(CloseReason::InvalidMessage(INVALID_MESSAGE.into()));
        }
    }

    /// A text frame that was not valid UTF-8.
    pub fn handle_invalid_utf8(&mut self, _now: Instant) {
        tracing::debug!("text frame with invalid UTF-8");
        self.close(CloseReason::InvalidMessage(INVALID_MESSAGE.into()));
    }

    /// An inbound message above the size limit.
    pub fn handle_too_big(&mut self) {
        self.close(CloseReason::MessageTooBig);
    }

    /// Size limits on ids and on `connection_init`, applied like any invalid message.
    fn check_limits(&self, text: &str, message: Inbound) -> Result<Inbound, DecodeError> {
        match &message {
            Inbound::Subscribe { id, .. } | Inbound::Complete { id }
                if id.len() > self.settings.max_id_length =>
            {
                Err(DecodeError::new("Invalid message received: id too long"))
            }
            Inbound::Init { .. } if text.len() > self.settings.max_init_size => Err(
                DecodeError::new("Invalid message received: connection_init too large"),
            ),
            _ => Ok(message),
        }
    }

    fn handle_invalid(&mut self, err: DecodeError) {
        if self.is_legacy() {
            // Legacy: report and keep the socket open.
            self.text(legacy::connection_error(&err.0));
        } else {
            // The reason is the reference text; the detail goes to the log only.
            tracing::debug!(detail = %err.0, "invalid message");
            self.close(CloseReason::InvalidMessage(INVALID_MESSAGE.into()));
        }
    }

    fn handle_message(&mut self, now: Instant, message: Inbound) {
        match message {
            Inbound::Init { payload } => self.handle_init(payload),
            Inbound::Ping { payload } => self.text(transport_ws::pong(payload.as_ref())),
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
                if self.is_legacy() {
                    self.text(legacy::connection_error("Too many initialisation requests"));
                }
                self.close(CloseReason::TooManyInitRequests);
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
                if self.is_legacy() {
                    self.text(legacy::ack(payload.as_ref()));
                    if let Some(every) = self.settings.keepalive_interval {
                        self.text(legacy::ka());
                        self.arm(TimerKind::KeepAliveMessage, now + every);
                    }
                } else {
                    self.text(transport_ws::ack(payload.as_ref()));
                }
            }
            ConnectOutcome::Rejected(message) => {
                if self.is_legacy() {
                    self.text(legacy::connection_error(&message));
                    self.close(CloseReason::LegacyInitRejected);
                } else {
                    self.close(CloseReason::Forbidden);
                }
            }
            ConnectOutcome::Failed => {
                if self.is_legacy() {
                    self.text(legacy::connection_error("Internal server error"));
                    self.close(CloseReason::LegacyInitFailed);
                } else {
                    self.close(CloseReason::InternalError);
                }
            }
        }
    }

    fn handle_subscribe(&mut self, _now: Instant, id: String, request: Box<Request>) {
        if self.phase != Phase::Acknowledged {
            self.close(CloseReason::SubscribeBeforeAck);
            return;
        }
        if self.ops.contains_key(&id) {
            if self.is_legacy() {
                // Legacy: stop the old operation (its `complete` first), then start anew.
                self.ops.remove(&id);
                self.out.push_back(Output::Stop {
                    id: id.clone(),
                    reason: EndReason::Replaced,
                });
                self.text(legacy::complete(&id));
            } else {
                self.close(CloseReason::DuplicateOperationId(id));
                return;
            }
        }
        if self.ops.len() >= self.settings.max_subscriptions {
            let errors = protocol::limit_error();
            let frame = self.error_frame(&id, &errors);
            self.text(frame);
            return;
        }
        self.ops.insert(id.clone(), OpPhase::Preparing);
        self.out.push_back(Output::Start { id, request });
    }

    fn handle_client_complete(&mut self, id: String) {
        if self.ops.remove(&id).is_none() {
            return; // unknown or finished: ignore
        }
        let legacy = self.is_legacy();
        self.out.push_back(Output::Stop {
            id: id.clone(),
            reason: EndReason::ClientStopped,
        });
        if legacy {
            self.text(legacy::complete(&id));
        }
    }

    fn error_frame(&self, id: &str, errors: &[ServerError]) -> String {
        if self.is_legacy() {
            legacy::error(id, errors)
        } else {
            transport_ws::error(id, errors)
        }
    }

    /// One response of a running operation.
    pub fn handle_response(&mut self, id: &str, response: &Response) {
        let Some(phase) = self.ops.get_mut(id) else {
            return;
        };
        if *phase == OpPhase::Preparing && protocol::is_request_error(response) {
            // Failed before execution: one `error`, no `complete`, id released.
            self.ops.remove(id);
            let frame = self.error_frame(id, &response.errors);
            self.out.push_back(Output::Stop {
                id: id.to_owned(),
                reason: EndReason::RequestError,
            });
            self.text(frame);
            return;
        }
        *phase = OpPhase::Streaming;
        let frame = if self.is_legacy() {
            legacy::data(id, response)
        } else {
            transport_ws::next(id, response)
        };
        if frame.len() > self.settings.max_response_size {
            // Only this operation ends, with an error the client can see; the socket goes on.
            tracing::warn!(
                id,
                bytes = frame.len(),
                limit = self.settings.max_response_size,
                "response larger than max_response_size: operation ended"
            );
            self.ops.remove(id);
            self.out.push_back(Output::Stop {
                id: id.to_owned(),
                reason: EndReason::ResponseTooLarge,
            });
            let frame = self.error_frame(id, &protocol::too_large_error());
            self.text(frame);
            return;
        }
        self.text(frame);
    }

    /// `on_subscribe` refused the operation with these errors.
    pub fn handle_refused(&mut self, id: &str, errors: &[ServerError]) {
        if self.ops.remove(id).is_none() {
            return;
        }
        let errors = if errors.is_empty() {
            protocol::internal_error()
        } else {
            errors.to_vec()
        };
        self.out.push_back(Output::Stop {
            id: id.to_owned(),
            reason: EndReason::Refused,
        });
        let frame = self.error_frame(id, &errors);
        self.text(frame);
    }

    /// The operation's stream ended by itself (the driver already dropped it).
    pub fn handle_finished(&mut self, id: &str) {
        if self.ops.remove(id).is_none() {
            return;
        }
        // Released before the final message, so the client may reuse the id at once.
        let frame = if self.is_legacy() {
            legacy::complete(id)
        } else {
            transport_ws::complete(id)
        };
        self.text(frame);
    }

    /// The operation's stream panicked (the driver already dropped it).
    pub fn handle_panicked(&mut self, id: &str) {
        if self.ops.remove(id).is_none() {
            return;
        }
        let frame = self.error_frame(id, &protocol::internal_error());
        self.text(frame);
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
                    self.text(legacy::ka());
                    if let Some(every) = self.settings.keepalive_interval {
                        self.arm(TimerKind::KeepAliveMessage, now + every);
                    }
                }
                TimerKind::Write => self.close(CloseReason::WriteTimeout),
            }
        }
    }
}

#[cfg(test)]
mod tests;
