//! One WebSocket connection's session: owns the socket, the operations' scope and the
//! timer, and feeds the protocol [`Machine`] in one hand-written poll loop.
//!
//! Everything the loop touches is state of the session, not a borrowed future, so there is
//! no cancellation question inside it: dropping the session at any await point drops the
//! operations (synchronously, first field), then the socket, then runs the end hooks.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_graphql::{Data, Executor};

use crate::bounds::{READ_BUDGET, ROUNDS, WRITE_BATCH, WRITE_BATCH_BYTES};
use crate::hooks::{Accept, Reject, Renewal};
use crate::lifecycle::{Admission, EndHooks, Slot, operation_end};
use crate::operation::{Operation, Sharing};
use crate::rt::{BoxSleep, Timer};
use crate::scope::{Scope, ScopeEvent};
use crate::sessions::{Registered, Sessions};
use crate::websocket::{CloseFrame, Message, WebSocket, WebSocketError};
use crate::{CloseReason, ConnectionInfo, EndReason, Gauges, Hooks};
use subscope_protocol::{ConnectOutcome, Machine, OperationEvent, Output};

type ConnectFuture = Pin<Box<dyn Future<Output = Result<Accept, Reject>> + Send>>;
type RenewFuture = Pin<Box<dyn Future<Output = Renewal> + Send>>;
type StopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Everything a connection shares with its server.
pub(crate) struct ConnectionParts<E, H, R> {
    pub(crate) executor: E,
    pub(crate) hooks: Arc<H>,
    pub(crate) gauges: Arc<Gauges>,
    pub(crate) timer: R,
    pub(crate) close_timeout: Duration,
    pub(crate) detect_leaks: bool,
    pub(crate) sharing: Sharing,
    pub(crate) stop: StopFuture,
    /// Where an accepted connection registers, so the application can revoke it.
    pub(crate) sessions: Arc<Sessions>,
    /// The connection's span; the close code and reason are recorded on it at the end.
    pub(crate) span: tracing::Span,
}

/// Field order is the drop order, and the guarantee: operations first, then the pending
/// hook, then the socket, and the end hooks last.
pub(crate) struct WsSession<T, E, H: Hooks, R> {
    children: Scope<Operation<H>>,
    connect: Option<ConnectFuture>,
    machine: Machine,
    ws: T,
    outbound: VecDeque<Message>,
    /// Bytes of payload in `outbound`.
    outbound_bytes: usize,
    unflushed: bool,
    write_blocked: bool,
    /// The one sleep for every deadline, moved in place; `armed` is where it is set.
    sleep: Option<BoxSleep>,
    armed: Option<Instant>,
    stopping: bool,
    session: Option<Arc<Data>>,
    /// `on_renew` deciding about the last `ping` payload.
    renew: Option<RenewFuture>,
    /// The accepted session's place in the server's registry, and its revocation.
    registered: Option<(Registered, StopFuture)>,
    parts: ConnectionParts<E, H, R>,
    end: EndHooks<H>,
}

impl<T, E, H, R> WsSession<T, E, H, R>
where
    T: WebSocket,
    E: Executor,
    H: Hooks,
    R: Timer,
{
    pub(crate) fn new(
        ws: T,
        machine: Machine,
        conn: Arc<ConnectionInfo>,
        parts: ConnectionParts<E, H, R>,
    ) -> Self {
        let end = EndHooks::new(
            conn,
            &parts.hooks,
            &parts.gauges,
            Slot::Connection(parts.span.clone()),
        );
        Self {
            children: Scope::new(),
            connect: None,
            machine,
            ws,
            outbound: VecDeque::new(),
            outbound_bytes: 0,
            unflushed: false,
            write_blocked: false,
            sleep: None,
            armed: None,
            stopping: false,
            session: None,
            renew: None,
            registered: None,
            parts,
            end,
        }
    }

    /// Runs the connection to its end and returns why it ended, with the socket (for a
    /// lingering close). Every operation is gone and the end hooks have run by then.
    ///
    /// Not an `async fn`: one of those would hold the session twice for the connection's
    /// whole life (its argument and its moved local), and once more inside the teardown's
    /// state. Here the session is held once while it runs; the teardown gets its own
    /// allocation only when the connection ends.
    pub(crate) fn run(self) -> impl Future<Output = (CloseReason, T)> + use<T, E, H, R> {
        let mut session = Some(self);
        let mut teardown = None;
        poll_fn(move |cx| {
            if let Some(running) = session.as_mut() {
                let reason = std::task::ready!(running.poll_run(cx));
                if let Some(ended) = session.take() {
                    teardown = Some(Box::pin(ended.teardown(reason)));
                }
            }
            match &mut teardown {
                Some(teardown) => teardown.as_mut().poll(cx),
                None => unreachable!("a session runs until its teardown starts"),
            }
        })
    }

    fn now(&self) -> Instant {
        self.parts.timer.now()
    }

    /// The exit order of `docs/PROTOCOL.md` 4.4: operations first, then the network.
    async fn teardown(mut self, reason: CloseReason) -> (CloseReason, T) {
        for op in self.children.drain() {
            op.finish(operation_end(&reason));
        }
        self.connect = None;
        self.end.reason = Some(reason.clone());

        let deadline = self.parts.timer.sleep(self.parts.close_timeout);
        match &reason {
            CloseReason::ClientClosed { .. } => {
                // The peer closed: what we still had queued for it can no longer be sent
                // (tungstenite refuses data after a close), and trying would lose the close
                // echo tungstenite already queued. Discard it and flush the echo.
                if !self.outbound.is_empty() {
                    tracing::debug!(
                        conn = self.end.conn.id,
                        frames = self.outbound.len(),
                        "peer closed: queued frames discarded"
                    );
                }
                self.outbound.clear();
                let flush = poll_fn(|cx| Pin::new(&mut self.ws).poll_flush(cx));
                futures_lite::future::or(
                    async {
                        let _ = flush.await;
                    },
                    deadline,
                )
                .await;
            }
            r if r.sends_close_frame() => {
                let frame = Some(close_frame(r));
                let outbound = std::mem::take(&mut self.outbound);
                futures_lite::future::or(close_handshake(&mut self.ws, outbound, frame), deadline)
                    .await;
            }
            _ => {}
        }
        (reason, self.into_socket())
    }

    /// Takes the socket out; everything else is dropped here, the end hooks last.
    fn into_socket(self) -> T {
        let Self { ws, .. } = self;
        ws
    }

    fn apply_outputs(&mut self) -> Option<CloseReason> {
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Text(text) => self.enqueue(Message::Text(text)),
                Output::Ping => self.enqueue(Message::Ping),
                Output::Connect { payload } => {
                    let hooks = Arc::clone(&self.parts.hooks);
                    let conn = Arc::clone(&self.end.conn);
                    self.connect = Some(Box::pin(
                        async move { hooks.on_connect(&conn, payload).await },
                    ));
                }
                Output::Start { id, request } => {
                    let op = Operation::start(
                        id.clone(),
                        *request,
                        self.parts.detect_leaks,
                        &self.parts.executor,
                        self.session.clone(),
                        &self.end.conn,
                        &self.parts.hooks,
                        &self.parts.gauges,
                        &self.parts.sharing,
                    );
                    if let Err(op) = self.children.insert(id, op) {
                        // The machine reserves ids, so this is unreachable; never leak it.
                        op.finish(EndReason::Replaced);
                    }
                }
                Output::Stop { id, reason } => {
                    if let Some(op) = self.children.remove(&id) {
                        op.finish(reason);
                    }
                }
                Output::Close(reason) => return Some(reason),
                Output::Renew(payload) => {
                    let hooks = Arc::clone(&self.parts.hooks);
                    let conn = Arc::clone(&self.end.conn);
                    // The latest credential is the one that counts.
                    self.renew = Some(Box::pin(
                        async move { hooks.on_renew(&conn, payload).await },
                    ));
                }
            }
        }
        None
    }

    fn enqueue(&mut self, message: Message) {
        self.outbound_bytes += message_len(&message);
        self.outbound.push_back(message);
    }

    /// Whether the outbound side can take more: no write is blocked and the queue is under
    /// its bounds. Both reading and pulling operations wait for it, so a peer that does not
    /// read is pushed back by TCP instead of growing the queue.
    fn can_queue(&self) -> bool {
        !self.write_blocked
            && self.outbound.len() < WRITE_BATCH
            && self.outbound_bytes < WRITE_BATCH_BYTES
    }

    fn handle_child(&mut self, event: ScopeEvent<Operation<H>>) {
        match event {
            ScopeEvent::Item(id, item) => self.machine.handle_operation(&id, item.event()),
            ScopeEvent::Ended(id, op) => {
                op.finish(EndReason::Completed);
                self.machine.handle_operation(&id, OperationEvent::Finished);
            }
            ScopeEvent::Panicked(id, op) => {
                tracing::warn!(conn = self.end.conn.id, id = %id, "operation panicked");
                op.finish(EndReason::Panicked);
                self.machine.handle_operation(&id, OperationEvent::Panicked);
            }
        }
    }

    fn poll_connect(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(fut) = self.connect.as_mut() else {
            return false;
        };
        let result = match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return false,
            Ok(Poll::Ready(result)) => Ok(result),
            Err(panic) => Err(panic),
        };
        let mut valid_for = None;
        let outcome = match Admission::of(result, self.end.conn.id) {
            Admission::Accepted(accept) => {
                let data = Arc::new(accept.data);
                let registered = self
                    .parts
                    .sessions
                    .register(Arc::clone(&self.end.conn), Arc::clone(&data));
                let revoked: StopFuture = Box::pin(Arc::clone(&registered.revoked).wait());
                self.registered = Some((registered, revoked));
                self.session = Some(data);
                valid_for = accept.valid_for;
                ConnectOutcome::Accepted(accept.payload)
            }
            Admission::Refused(message, _) => ConnectOutcome::Rejected(message),
            Admission::Failed => ConnectOutcome::Failed,
        };
        self.connect = None;
        let now = self.now();
        self.machine.handle_connect(now, outcome);
        if let Some(ttl) = valid_for {
            self.machine.set_expiry(Some(now + ttl));
        }
        // Known now, so a driver dropped from outside still runs on_disconnect.
        self.end.accepted = self.machine.was_acknowledged();
        true
    }

    /// Reads what is there, up to the read budget; returns how many messages it read, or
    /// `Err` when the socket is gone.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Result<usize, CloseReason> {
        let mut read = 0;
        for _ in 0..READ_BUDGET {
            // Closed; `on_connect` is deciding with enough queued behind it; or the replies
            // already queued cannot be written yet (inbound backpressure).
            if self.machine.is_closed() || self.machine.is_input_paused() || !self.can_queue() {
                break;
            }
            let item = match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(item) => item,
            };
            read += 1;
            let now = self.now();
            match item {
                None => return Err(CloseReason::PeerGone),
                Some(Ok(Message::Text(text))) => self.machine.handle_text(now, &text),
                Some(Ok(Message::Binary)) => self.machine.handle_binary(now),
                Some(Ok(Message::Ping)) => {
                    // The transport queued the pong; make sure a flush sends it.
                    self.unflushed = true;
                    self.machine.handle_ping_frame(now);
                }
                Some(Ok(Message::Pong)) => self.machine.handle_sign_of_life(now),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (f.code, f.reason))
                        .unwrap_or((1005, String::new()));
                    return Err(CloseReason::ClientClosed { code, reason });
                }
                Some(Err(WebSocketError::TooBig)) => self.machine.handle_too_big(),
                Some(Err(WebSocketError::InvalidUtf8)) => self.machine.handle_invalid_utf8(now),
                Some(Err(err)) => {
                    tracing::debug!(conn = self.end.conn.id, error = %err, "read failed");
                    return Err(CloseReason::PeerGone);
                }
            }
        }
        Ok(read)
    }

    /// Writes queued frames and flushes. Returns whether anything moved.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<bool, WebSocketError> {
        let mut progress = false;
        let mut blocked = false;
        while !self.outbound.is_empty() {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    if let Some(message) = self.outbound.pop_front() {
                        self.outbound_bytes -= message_len(&message);
                        Pin::new(&mut self.ws).start_send(message)?;
                        self.unflushed = true;
                        progress = true;
                    }
                }
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => {
                    blocked = true;
                    break;
                }
            }
        }
        if !blocked && self.unflushed {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    progress = true;
                }
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => blocked = true,
            }
        }
        if blocked {
            let now = self.now();
            if progress {
                // The peer is reading, just slower than we produce: the write timeout
                // measures a stall, so it starts again from this progress.
                self.machine.handle_write_idle();
            }
            self.machine.handle_write_blocked(now);
        } else {
            self.machine.handle_write_idle();
        }
        self.write_blocked = blocked;
        Ok(progress)
    }

    /// Fires due deadlines and sets the one sleep to the next. Returns whether any fired.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> bool {
        let mut fired = false;
        loop {
            let Some(at) = self.machine.poll_timeout() else {
                // The sleep is kept (unpolled) to be moved again later.
                self.armed = None;
                return fired;
            };
            let now = self.now();
            if at <= now {
                self.machine.handle_timeout(now);
                fired = true;
                continue;
            }
            if self.armed != Some(at) {
                match self.sleep.as_mut() {
                    Some(sleep) => sleep.as_mut().reset(at),
                    None => self.sleep = Some(self.parts.timer.sleep_until(at)),
                }
                self.armed = Some(at);
            }
            let Some(sleep) = self.sleep.as_mut() else {
                return fired;
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return fired;
            }
            // Expiry is judged by the timer's clock on the next turn.
            self.armed = None;
        }
    }

    /// A renewal decided, or a revocation: what they change in the machine.
    fn poll_authorization(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        if let Some(renew) = self.renew.as_mut() {
            let decided = match catch_unwind(AssertUnwindSafe(|| renew.as_mut().poll(cx))) {
                Ok(Poll::Pending) => None,
                Ok(Poll::Ready(renewal)) => Some(renewal),
                Err(_panic) => {
                    tracing::error!(conn = self.end.conn.id, "on_renew panicked");
                    self.parts.gauges.count_hook_panic();
                    Some(Renewal::Keep)
                }
            };
            if let Some(renewal) = decided {
                self.renew = None;
                progress = true;
                match renewal {
                    Renewal::Keep => {}
                    Renewal::Renew(ttl) => {
                        self.parts.gauges.count_renewal();
                        let now = self.now();
                        self.machine.set_expiry(Some(now + ttl));
                    }
                    Renewal::Refuse => {
                        tracing::info!(conn = self.end.conn.id, "renewal refused");
                        self.machine.handle_renewal_refused();
                    }
                }
            }
        }
        if let Some((_, revoked)) = self.registered.as_mut()
            && revoked.as_mut().poll(cx).is_ready()
        {
            self.registered = None;
            self.machine.handle_revoked();
            progress = true;
        }
        progress
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        for _ in 0..ROUNDS {
            let mut progress = false;

            if !self.stopping && self.parts.stop.as_mut().poll(cx).is_ready() {
                self.stopping = true;
                self.machine.handle_shutdown();
                progress = true;
            }
            progress |= self.poll_connect(cx);
            if let Some(reason) = self.apply_outputs() {
                return Poll::Ready(reason);
            }

            let read_budget_spent = match self.poll_read(cx) {
                Ok(n) => {
                    progress |= n > 0;
                    n >= READ_BUDGET
                }
                Err(reason) => {
                    // A close the machine already decided wins over what the read saw.
                    return Poll::Ready(self.apply_outputs().unwrap_or(reason));
                }
            };
            if let Some(reason) = self.apply_outputs() {
                return Poll::Ready(reason);
            }

            // Operations are pulled only while the socket takes frames: backpressure.
            while self.can_queue() {
                match self.children.poll_next(cx) {
                    Poll::Pending => break,
                    Poll::Ready(event) => {
                        progress = true;
                        self.handle_child(event);
                        if let Some(reason) = self.apply_outputs() {
                            return Poll::Ready(reason);
                        }
                    }
                }
            }

            // After the operations: a result produced in this round (the revoking
            // mutation's own, say) is queued, and goes out before the close frame.
            progress |= self.poll_authorization(cx);
            if let Some(reason) = self.apply_outputs() {
                return Poll::Ready(reason);
            }

            match self.poll_write(cx) {
                Ok(p) => progress |= p,
                Err(err) => {
                    tracing::debug!(conn = self.end.conn.id, error = %err, "write failed");
                    return Poll::Ready(CloseReason::PeerGone);
                }
            }

            progress |= self.poll_timers(cx);
            if let Some(reason) = self.apply_outputs() {
                return Poll::Ready(reason);
            }

            if !progress {
                return Poll::Pending;
            }
            if read_budget_spent {
                // A full read budget may have woken other tasks (a publish wakes every
                // subscriber's connection). Yield now, so they run before this connection
                // takes its next batch: on tokio a task woken by the running one waits in a
                // slot no other worker can steal until the waker yields, which cost a deep
                // fan-out ~10 ms of p50 latency with 32 rounds per poll.
                break;
            }
        }
        // Still busy: let other tasks run, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

pub(crate) fn close_frame(reason: &CloseReason) -> CloseFrame {
    CloseFrame::new(reason.code(), reason.reason())
}

/// Bytes a queued message counts against the outbound bound.
fn message_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Close(Some(frame)) => frame.reason.len() + 2,
        _ => 0,
    }
}

/// Sends what is queued and our close frame (if any), then reads until the peer's close
/// or EOF. The caller bounds it with the close timeout.
pub(crate) async fn close_handshake<T: WebSocket>(
    ws: &mut T,
    outbound: VecDeque<Message>,
    frame: Option<CloseFrame>,
) {
    let messages = outbound
        .into_iter()
        .chain(frame.map(|f| Message::Close(Some(f))));
    for message in messages {
        if poll_fn(|cx| Pin::new(&mut *ws).poll_ready(cx))
            .await
            .is_err()
            || Pin::new(&mut *ws).start_send(message).is_err()
        {
            return;
        }
    }
    if poll_fn(|cx| Pin::new(&mut *ws).poll_flush(cx))
        .await
        .is_err()
    {
        return;
    }
    // Wait for the peer's answer so our close frame is not lost to a TCP reset.
    while let Some(Ok(_)) = poll_fn(|cx| Pin::new(&mut *ws).poll_next(cx)).await {}
}
