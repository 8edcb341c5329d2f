//! One connection under the bench: built, polled by hand, played against as a client.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use serde_json::{Value, json};
use subscope::{
    Accept, CloseReason, Config, ConnectionInfo, EndReason, Gauges, Hooks, Reject, Server,
    Subprotocol,
};
use subscope_examples::{Broker, DemoSchema, LiveCounter, build_schema};

use crate::wire::{self, Frame};
use crate::{ManualClock, Pipe};

/// What the hooks saw, in order.
#[derive(Debug, Default)]
pub struct Record {
    completes: Mutex<Vec<(String, EndReason)>>,
    disconnects: Mutex<Vec<CloseReason>>,
    closes: Mutex<Vec<CloseReason>>,
}

fn copy<T: Clone>(m: &Mutex<Vec<T>>) -> Vec<T> {
    m.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

impl Record {
    /// `on_complete` calls: (operation id, end reason).
    pub fn completes(&self) -> Vec<(String, EndReason)> {
        copy(&self.completes)
    }

    /// `on_disconnect` calls.
    pub fn disconnects(&self) -> Vec<CloseReason> {
        copy(&self.disconnects)
    }

    /// `on_close` calls.
    pub fn closes(&self) -> Vec<CloseReason> {
        copy(&self.closes)
    }
}

/// Which drop-time hooks panic (after recording their call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PanicIn {
    /// `on_complete` panics.
    pub on_complete: bool,
    /// `on_disconnect` panics.
    pub on_disconnect: bool,
    /// `on_close` panics.
    pub on_close: bool,
}

/// Recording hooks; `on_connect` can be held at a gate until the test opens it.
#[derive(Debug, Clone, Default)]
pub struct BenchHooks {
    record: Arc<Record>,
    gate: Option<async_channel::Receiver<()>>,
    panic_in: PanicIn,
}

impl Hooks for BenchHooks {
    async fn on_connect(&self, _: &ConnectionInfo, _: Option<Value>) -> Result<Accept, Reject> {
        if let Some(gate) = &self.gate {
            // Opened by a message or by closing the channel.
            let _ = gate.recv().await;
        }
        Ok(Accept::new())
    }

    fn on_complete(&self, _: &ConnectionInfo, id: &str, reason: &EndReason) {
        let mut c = self
            .record
            .completes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        c.push((id.to_owned(), reason.clone()));
        drop(c);
        assert!(!self.panic_in.on_complete, "on_complete panics on purpose");
    }

    fn on_disconnect(&self, _: &ConnectionInfo, reason: &CloseReason) {
        let mut d = self
            .record
            .disconnects
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        d.push(reason.clone());
        drop(d);
        assert!(
            !self.panic_in.on_disconnect,
            "on_disconnect panics on purpose"
        );
    }

    fn on_close(&self, _: &ConnectionInfo, reason: &CloseReason) {
        let mut c = self
            .record
            .closes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        c.push(reason.clone());
        drop(c);
        assert!(!self.panic_in.on_close, "on_close panics on purpose");
    }
}

/// Set when the connection's waker is woken.
#[derive(Debug, Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type Task<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Builds a [`Bench`].
#[derive(Debug)]
#[must_use]
pub struct BenchBuilder {
    protocol: Subprotocol,
    config: Config,
    gate: bool,
    panic_in: PanicIn,
    upgrade: bool,
    delivery: subscope::Delivery,
}

impl BenchBuilder {
    /// Server settings (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Hold `on_connect` until [`Bench::open_gate`].
    pub fn gate_connect(mut self) -> Self {
        self.gate = true;
        self
    }

    /// Make drop-time hooks panic.
    pub fn panic_in(mut self, panic_in: PanicIn) -> Self {
        self.panic_in = panic_in;
        self
    }

    /// The demo topics' delivery (history on, for resumed streams).
    pub fn delivery(mut self, delivery: subscope::Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// Serve the pipe as a raw socket, HTTP upgrade included ([`Server::serve_io`]); the
    /// test then writes the upgrade request itself.
    pub fn with_upgrade(mut self) -> Self {
        self.upgrade = true;
        self
    }

    /// The bench, with the connection polled once.
    pub fn build(self) -> Bench {
        let clock = ManualClock::new();
        let gauges = Arc::new(Gauges::new());
        let live = LiveCounter::default();
        let broker = Broker::memory(self.delivery);
        let schema = build_schema(
            Arc::new(clock.clone()),
            Arc::clone(&gauges),
            broker.clone(),
            live.clone(),
        );
        let (gate_tx, gate_rx) = async_channel::unbounded();
        let hooks = BenchHooks {
            record: Arc::default(),
            gate: self.gate.then_some(gate_rx),
            panic_in: self.panic_in,
        };
        let record = Arc::clone(&hooks.record);
        let builder = Server::builder(clock.clone(), schema)
            .hooks(hooks)
            .config(self.config.clone())
            .gauges(Arc::clone(&gauges));
        let server = broker.bind(builder).build();
        let pipe = Pipe::new();
        // Like a socket: the peer's receive window is finite, so a flood blocks.
        pipe.set_outbound_capacity(DEFAULT_WINDOW);
        let conn: Task<Option<CloseReason>> = if self.upgrade {
            let fut = server.serve_io(pipe.clone(), None);
            Box::pin(async move { fut.await.ok().and_then(|s| s.close_reason().cloned()) })
        } else {
            let ws =
                subscope::websocket::Tungstenite::from(from_raw_socket(pipe.clone(), &self.config));
            let fut = server.serve_websocket(ws, Some(self.protocol), Default::default());
            Box::pin(async move { Some(fut.await) })
        };
        let mut bench = Bench {
            protocol: self.protocol,
            clock,
            pipe,
            live,
            gauges,
            record,
            broker,
            server,
            conn: Some(conn),
            ended: None,
            shutdown: None,
            shutdown_done: false,
            received: Vec::new(),
            frames: VecDeque::new(),
            woken: Arc::default(),
            gate: Some(gate_tx),
        };
        bench.poll();
        bench
    }
}

/// Wraps the pipe in tungstenite's server codec with subscope's settings.
fn from_raw_socket(pipe: Pipe, config: &Config) -> async_tungstenite::WebSocketStream<Pipe> {
    let fut = async_tungstenite::WebSocketStream::from_raw_socket(
        pipe,
        async_tungstenite::tungstenite::protocol::Role::Server,
        Some(subscope::websocket::websocket_config(config)),
    );
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(ws) => ws,
        Poll::Pending => unreachable!("wrapping a socket does no IO"),
    }
}

/// One connection of a real subscope server over a [`Pipe`], polled by hand.
pub struct Bench {
    protocol: Subprotocol,
    /// The clock every deadline and demo sleep runs on.
    pub clock: ManualClock,
    /// The socket; the test is the client at its other end.
    pub pipe: Pipe,
    /// Demo streams alive now: the probe of live children.
    pub live: LiveCounter,
    /// The server's gauges.
    pub gauges: Arc<Gauges>,
    /// What the hooks saw.
    pub record: Arc<Record>,
    /// The demo's topics (`messages` / `publish`).
    pub broker: Broker,
    server: Server<DemoSchema, BenchHooks, ManualClock>,
    conn: Option<Task<Option<CloseReason>>>,
    ended: Option<Option<CloseReason>>,
    shutdown: Option<Task<()>>,
    shutdown_done: bool,
    received: Vec<u8>,
    frames: VecDeque<Frame>,
    woken: Arc<Flag>,
    gate: Option<async_channel::Sender<()>>,
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench")
            .field("protocol", &self.protocol)
            .field("ended", &self.ended)
            .field("live", &self.live.get())
            .finish_non_exhaustive()
    }
}

/// The bench's default bound on unread server bytes (a TCP window and socket buffer).
pub const DEFAULT_WINDOW: usize = 256 * 1024;

/// Polls of the connection per [`Bench::poll`] before the bench calls it a livelock.
const MAX_POLLS: usize = 10_000;

impl Bench {
    /// A bench for `protocol`; configure it with the builder.
    pub fn builder(protocol: Subprotocol) -> BenchBuilder {
        BenchBuilder {
            protocol,
            config: Config::default(),
            gate: false,
            panic_in: PanicIn::default(),
            upgrade: false,
            delivery: subscope::Delivery::default(),
        }
    }

    /// A `graphql-transport-ws` connection with `config`.
    pub fn modern(config: Config) -> Self {
        Self::builder(Subprotocol::GraphqlTransportWs)
            .config(config)
            .build()
    }

    /// A legacy `graphql-ws` connection with `config`.
    pub fn legacy(config: Config) -> Self {
        Self::builder(Subprotocol::GraphqlWs).config(config).build()
    }

    /// The negotiated subprotocol.
    pub fn protocol(&self) -> Subprotocol {
        self.protocol
    }

    /// Polls the connection (and a shutdown in progress) until neither has been woken
    /// since its last poll: everything the connection can do without the clock or the
    /// client moving has been done. Panics on a livelock.
    pub fn poll(&mut self) {
        let waker = Waker::from(Arc::clone(&self.woken));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..MAX_POLLS {
            self.woken.0.store(false, Ordering::SeqCst);
            self.poll_connection(&mut cx);
            if let Some(shutdown) = self.shutdown.as_mut()
                && shutdown.as_mut().poll(&mut cx).is_ready()
            {
                self.shutdown = None;
                self.shutdown_done = true;
            }
            for mut task in self.clock.take_spawned() {
                if task.as_mut().poll(&mut cx).is_pending() {
                    self.clock.spawn_back(task);
                }
            }
            if !self.woken.0.load(Ordering::SeqCst) {
                return;
            }
        }
        panic!("the connection is still busy after {MAX_POLLS} polls");
    }

    /// Polls the connection exactly once; returns whether it woke itself (it yielded with
    /// work left) or was woken meanwhile.
    pub fn poll_once(&mut self) -> bool {
        let waker = Waker::from(Arc::clone(&self.woken));
        let mut cx = Context::from_waker(&waker);
        self.woken.0.store(false, Ordering::SeqCst);
        self.poll_connection(&mut cx);
        self.woken.0.load(Ordering::SeqCst)
    }

    /// One poll of the connection future, recording how it ended if it did.
    fn poll_connection(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.as_mut()
            && let Poll::Ready(out) = conn.as_mut().poll(cx)
        {
            self.conn = None;
            self.ended = Some(out);
        }
    }

    /// Moves the clock and polls.
    pub fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        self.poll();
    }

    /// Moves the clock in `step`s up to `total`, polling after each.
    pub fn advance_by_steps(&mut self, total: Duration, step: Duration) {
        let mut moved = Duration::ZERO;
        while moved < total {
            let by = step.min(total - moved);
            self.advance(by);
            moved += by;
        }
    }

    /// Writes raw client bytes (all of them must fit the inbound window), then polls.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let n = self.pipe.client_write(bytes);
        assert_eq!(n, bytes.len(), "the inbound window is full");
        self.poll();
    }

    /// Sends one text frame.
    pub fn send_text(&mut self, text: &str) {
        self.send_bytes(&wire::text(text));
    }

    /// Sends one JSON message as a text frame.
    pub fn send(&mut self, message: Value) {
        self.send_text(&message.to_string());
    }

    /// Sends several JSON messages in one write (one TCP segment's worth).
    pub fn send_batch(&mut self, messages: &[Value]) {
        let bytes: Vec<u8> = messages
            .iter()
            .flat_map(|m| wire::text(&m.to_string()))
            .collect();
        self.send_bytes(&bytes);
    }

    /// Sends one JSON message split into writes of `chunk` bytes, polling after each.
    pub fn send_split(&mut self, message: Value, chunk: usize) {
        for piece in wire::text(&message.to_string()).chunks(chunk.max(1)) {
            self.send_bytes(piece);
        }
    }

    /// `connection_init` with no payload.
    pub fn init_message() -> Value {
        json!({"type": "connection_init"})
    }

    /// A `subscribe` (modern) or `start` (legacy) for `query`.
    pub fn operation(&self, id: &str, query: &str) -> Value {
        let ty = match self.protocol {
            Subprotocol::GraphqlWs => "start",
            _ => "subscribe",
        };
        json!({"type": ty, "id": id, "payload": {"query": query}})
    }

    /// A client `complete` (modern) or `stop` (legacy) for `id`.
    pub fn stop_message(&self, id: &str) -> Value {
        let ty = match self.protocol {
            Subprotocol::GraphqlWs => "stop",
            _ => "complete",
        };
        json!({"type": ty, "id": id})
    }

    /// The message type of data for an operation (`next`, legacy `data`).
    pub fn data_type(&self) -> &'static str {
        match self.protocol {
            Subprotocol::GraphqlWs => "data",
            _ => "next",
        }
    }

    /// Sends `connection_init` and asserts the ack (legacy: and the first `ka`, if on).
    pub fn init(&mut self) {
        self.send(Self::init_message());
        let ack = self.next_json().expect("connection_ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        if self.protocol == Subprotocol::GraphqlWs
            && self
                .frames_peek()
                .is_some_and(|f| f.json().is_some_and(|j| j["type"] == "ka"))
        {
            self.frames.pop_front();
        }
    }

    /// Sends a subscribe/start for `query` under `id`.
    pub fn subscribe(&mut self, id: &str, query: &str) {
        let message = self.operation(id, query);
        self.send(message);
    }

    /// Takes what the server wrote (the client reads its socket), then polls, since
    /// reading frees the server's writes.
    pub fn read(&mut self) {
        let bytes = self.pipe.client_read();
        self.received.extend_from_slice(&bytes);
        self.frames.extend(wire::decode_all(&mut self.received));
        self.poll();
    }

    fn frames_peek(&mut self) -> Option<&Frame> {
        if self.frames.is_empty() {
            self.read();
        }
        self.frames.front()
    }

    /// The next frame the server wrote, if any (reads the socket first).
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.frames.is_empty() {
            self.read();
        }
        self.frames.pop_front()
    }

    /// The next text frame as JSON, skipping pings and legacy `ka`.
    pub fn next_json(&mut self) -> Option<Value> {
        loop {
            match self.next_frame()? {
                Frame::Ping(_) => {}
                f => {
                    let j = f
                        .json()
                        .unwrap_or_else(|| panic!("not a text frame: {f:?}"));
                    if j["type"] != "ka" {
                        return Some(j);
                    }
                }
            }
        }
    }

    /// Every frame the server wrote so far.
    pub fn frames(&mut self) -> Vec<Frame> {
        self.read();
        self.frames.drain(..).collect()
    }

    /// Every JSON message written so far, skipping pings and `ka`.
    pub fn messages(&mut self) -> Vec<Value> {
        self.frames()
            .into_iter()
            .filter_map(|f| f.json())
            .filter(|j| j["type"] != "ka")
            .collect()
    }

    /// How the connection ended, once it has: `Some(reason)` (`None` inside when
    /// `serve_io` ended before a WebSocket existed, e.g. a handshake timeout).
    pub fn ended(&self) -> Option<&Option<CloseReason>> {
        self.ended.as_ref()
    }

    /// The close reason, panicking if the connection has not ended as a WebSocket.
    pub fn close_reason(&self) -> &CloseReason {
        match &self.ended {
            Some(Some(reason)) => reason,
            other => panic!("connection not ended as a WebSocket: {other:?}"),
        }
    }

    /// Whether the connection future is still alive.
    pub fn is_running(&self) -> bool {
        self.conn.is_some()
    }

    /// Drops the connection future from outside, as an aborted task would.
    pub fn drop_connection(&mut self) {
        self.conn = None;
    }

    /// Opens the `on_connect` gate.
    pub fn open_gate(&mut self) {
        self.gate = None;
        self.poll();
    }

    /// Starts a graceful shutdown with `grace`; polled with the connection from now on.
    pub fn start_shutdown(&mut self, grace: Duration) {
        self.shutdown = Some(Box::pin(self.server.shutdown(grace)));
        self.poll();
    }

    /// Whether the shutdown started by [`Bench::start_shutdown`] has returned.
    pub fn shutdown_done(&self) -> bool {
        self.shutdown_done
    }

    /// Live operations by the gauges, and live demo streams by the probe: both must agree.
    pub fn live_children(&self) -> (u64, usize) {
        (self.gauges.operations(), self.live.get())
    }
}
