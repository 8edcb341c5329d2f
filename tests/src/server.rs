//! The demo schema served in-process on a real 127.0.0.1 listener, per runtime.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use subscope::rt::{Listener, Runtime, Spawn};
use subscope::{Config, Delivery, Gauges, Server};
use subscope_examples::{Broker, DemoSchema, LiveCounter};

use crate::{DEADLINE, Recorder, RecordingHooks, wait_until};

/// A runtime the suite runs on: how to get its seam, run a future to completion on the
/// test thread, bind a listener and adopt an accepted std socket.
pub trait TestRuntime: Sized + 'static {
    /// Its name, for messages.
    const NAME: &'static str;
    /// The subscope runtime seam.
    type Rt: Runtime;
    /// Its TCP listener.
    type Listener: Listener;
    /// A TCP stream of the runtime, as futures-io.
    type Io: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static;
    /// Keeps the runtime's threads alive while the server runs.
    type Guard: Send + Sync + 'static;

    /// A fresh runtime (and what keeps it alive).
    fn runtime() -> (Self::Rt, Self::Guard);
    /// Runs `fut` to completion on the current thread, inside the runtime's context.
    fn block_on<F: Future>(guard: &Self::Guard, fut: F) -> F::Output;
    /// Binds 127.0.0.1:0 (call inside `block_on`).
    fn bind() -> impl Future<Output = Self::Listener>;
    /// The listener's address.
    fn local_addr(listener: &Self::Listener) -> SocketAddr;
    /// Adopts an accepted std socket (call inside `block_on`).
    fn adopt(stream: std::net::TcpStream) -> Self::Io;

    /// Binds 127.0.0.1:0 and serves `server` there in the background; returns the address.
    fn listen<E: async_graphql::Executor, H: subscope::Hooks>(
        guard: &Self::Guard,
        server: &Server<E, H, Self::Rt>,
    ) -> SocketAddr {
        let listener = Self::block_on(guard, Self::bind());
        let addr = Self::local_addr(&listener);
        let serving = server.serve(listener);
        server_runtime(server).spawn(Box::pin(serving));
        addr
    }

    /// Starts the demo server with `config` and recording hooks on 127.0.0.1:0.
    fn start(config: Config) -> TestServer {
        Self::start_with(config, Delivery::default())
    }

    /// Like [`TestRuntime::start`], with the demo's topics delivering under `delivery`.
    fn start_with(config: Config, delivery: Delivery) -> TestServer {
        let (rt, guard) = Self::runtime();
        let (server, demo) = demo_server_with(rt, config, delivery);
        let addr = Self::listen(&guard, &server);
        TestServer {
            addr,
            live: demo.live,
            gauges: demo.gauges,
            recorder: demo.recorder,
            broker: demo.broker,
            control: Box::new(Controlled::<Self, _> { guard, server }),
        }
    }

    /// Serves `schema` (a test's own) with recording hooks on 127.0.0.1:0; `live` and
    /// `broker` of the result are fresh and unused by that schema unless it reads them.
    fn start_schema<E: async_graphql::Executor>(config: Config, schema: E) -> TestServer {
        let (rt, guard) = Self::runtime();
        let hooks = RecordingHooks::default();
        let gauges = Arc::new(Gauges::new());
        let recorder = hooks.recorder.clone();
        let server = Server::builder(rt, schema)
            .hooks(hooks)
            .config(suite_config(config))
            .gauges(Arc::clone(&gauges))
            .build();
        let addr = Self::listen(&guard, &server);
        TestServer {
            addr,
            live: LiveCounter::default(),
            broker: Broker::memory(Delivery::default()),
            gauges,
            recorder,
            control: Box::new(Controlled::<Self, _> { guard, server }),
        }
    }
}

/// The runtime a server spawns on.
fn server_runtime<E: async_graphql::Executor, H: subscope::Hooks, R: Runtime>(
    server: &Server<E, H, R>,
) -> R {
    server.runtime().clone()
}

/// The demo's observable state.
#[derive(Debug, Clone)]
pub struct DemoState {
    /// Live demo streams.
    pub live: LiveCounter,
    /// The library's gauges.
    pub gauges: Arc<Gauges>,
    /// The hooks' record.
    pub recorder: Recorder,
    /// The demo broker.
    pub broker: Broker,
}

/// The demo server on `rt` with recording hooks and default topic delivery.
pub fn demo_server<Rt: Runtime>(rt: Rt, config: Config) -> (DemoServer<Rt>, DemoState) {
    demo_server_with(rt, config, Delivery::default())
}

/// The demo server on `rt` with recording hooks, its topics delivering under `delivery`.
pub fn demo_server_with<Rt: Runtime>(
    rt: Rt,
    config: Config,
    delivery: Delivery,
) -> (DemoServer<Rt>, DemoState) {
    let hooks = RecordingHooks::default();
    let gauges = Arc::new(Gauges::new());
    let config = suite_config(config);
    let state = DemoState {
        live: LiveCounter::default(),
        broker: Broker::memory(delivery),
        gauges,
        recorder: hooks.recorder.clone(),
    };
    let schema = subscope_examples::build_schema(
        Arc::new(rt.clone()),
        Arc::clone(&state.gauges),
        state.broker.clone(),
        state.live.clone(),
    );
    let builder = Server::builder(rt, schema)
        .hooks(hooks)
        .config(config)
        .gauges(Arc::clone(&state.gauges));
    let server = state.broker.bind(builder).build();
    (server, state)
}

/// `config` as this run of the suite serves it: in the compressed run
/// ([`deflate_suite`](crate::client::deflate_suite)) with permessage-deflate on, unless
/// the test chose its own settings.
pub fn suite_config(config: Config) -> Config {
    if crate::client::deflate_suite() && config.deflate_settings().is_none() {
        config.deflate(Some(subscope::deflate::DeflateConfig::new()))
    } else {
        config
    }
}

/// For tests whose point is byte volume (a reader that stalls, a flood that is pushed
/// back): in the compressed run, deflate at level 0 (stored blocks). Every frame still
/// goes through permessage-deflate's framing, but the demo's repetitive payloads keep
/// their size, so the buffers fill after as many events as without compression.
pub fn volume_config(config: Config) -> Config {
    if crate::client::deflate_suite() {
        config.deflate(Some(subscope::deflate::DeflateConfig::new().level(0)))
    } else {
        config
    }
}

/// The demo server type with recording hooks.
pub type DemoServer<Rt> = Server<DemoSchema, RecordingHooks, Rt>;

struct Controlled<R: TestRuntime, E> {
    guard: R::Guard,
    server: Server<E, RecordingHooks, R::Rt>,
}

impl<R: TestRuntime, E: async_graphql::Executor> Control for Controlled<R, E> {
    fn shutdown(&self, grace: Duration) {
        R::block_on(&self.guard, self.server.shutdown(grace));
    }

    fn shutdown_beside_a_timer(&self, grace: Duration, timer: Duration) -> (Duration, Duration) {
        use subscope::rt::Timer;
        let rt = self.server.runtime().clone();
        R::block_on(&self.guard, async {
            let started = Instant::now();
            let shutdown = async {
                self.server.shutdown(grace).await;
                started.elapsed()
            };
            let fired = async {
                rt.sleep(timer).await;
                started.elapsed()
            };
            let (shutdown, fired) = futures_lite::future::zip(shutdown, fired).await;
            (fired, shutdown)
        })
    }
}

/// What a runtime-specific server exposes to the tests.
trait Control: Send + Sync {
    /// Runs the server's graceful shutdown to its end.
    fn shutdown(&self, grace: Duration);
    /// See [`TestServer::shutdown_beside_a_timer`].
    fn shutdown_beside_a_timer(&self, grace: Duration, timer: Duration) -> (Duration, Duration);
}

/// A running demo server.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The demo's live-stream counter.
    pub live: LiveCounter,
    /// The library's gauges.
    pub gauges: Arc<Gauges>,
    /// The hooks' record.
    pub recorder: Recorder,
    /// The demo broker.
    pub broker: Broker,
    control: Box<dyn Control>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Leave nothing running behind a finished test.
        self.control.shutdown(Duration::ZERO);
    }
}

impl TestServer {
    /// Runs graceful shutdown; returns when the server says every connection is gone.
    pub fn shutdown(&self, grace: Duration) {
        self.control.shutdown(grace);
    }

    /// Runs shutdown on the test thread in one future with a `timer` sleep beside it, and
    /// returns when the timer fired and when shutdown returned, both from the start. A
    /// shutdown that blocks its thread (instead of awaiting) delays the timer with it.
    pub fn shutdown_beside_a_timer(
        &self,
        grace: Duration,
        timer: Duration,
    ) -> (Duration, Duration) {
        self.control.shutdown_beside_a_timer(grace, timer)
    }

    /// Waits until no demo stream, operation, HTTP stream or connection is alive.
    pub fn wait_idle(&self) {
        wait_until("liveStreams and gauges back to zero", DEADLINE, || {
            let g = self.gauges.snapshot();
            self.live.get() == 0 && g.operations == 0 && g.http_streams == 0 && g.connections == 0
        });
    }

    /// Waits for `n` `on_complete` calls, asserts each ran once with `reason`, and that
    /// the server is idle again.
    pub fn assert_completed(&self, n: usize, reason: &subscope::EndReason) {
        let e = self
            .recorder
            .wait(&format!("{n} on_complete"), DEADLINE, |e| {
                e.completes.len() >= n
            });
        self.wait_idle();
        let e2 = self.recorder.events();
        assert_eq!(e2.completes.len(), n, "exactly once each: {e:?}");
        for (_, _, r) in &e2.completes {
            assert_eq!(r, reason, "{e2:?}");
        }
    }

    /// Waits until `n` demo streams are alive.
    pub fn wait_live(&self, n: usize) {
        wait_until(&format!("{n} live streams"), DEADLINE, || {
            self.live.get() == n
        });
    }
}

/// tokio, multi-threaded (two workers), so operations drop on other threads too.
#[cfg(feature = "rt-tokio")]
#[derive(Debug)]
pub struct Tokio;

#[cfg(feature = "rt-tokio")]
impl TestRuntime for Tokio {
    const NAME: &'static str = "tokio";
    type Rt = subscope::tokio::TokioRuntime;
    type Listener = subscope::tokio::TcpListener;
    type Io = async_tungstenite::tokio::TokioAdapter<tokio::net::TcpStream>;
    type Guard = tokio::runtime::Runtime;

    fn runtime() -> (Self::Rt, Self::Guard) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        (
            subscope::tokio::TokioRuntime::from_handle(rt.handle().clone()),
            rt,
        )
    }

    fn block_on<F: Future>(guard: &Self::Guard, fut: F) -> F::Output {
        guard.block_on(fut)
    }

    async fn bind() -> subscope::tokio::TcpListener {
        subscope::tokio::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    }

    fn local_addr(listener: &subscope::tokio::TcpListener) -> SocketAddr {
        listener.local_addr().expect("addr")
    }

    fn adopt(stream: std::net::TcpStream) -> Self::Io {
        stream.set_nonblocking(true).expect("nonblocking");
        subscope::tokio::io(tokio::net::TcpStream::from_std(stream).expect("adopt"))
    }
}

/// Runs an async-executor on two threads until dropped.
#[cfg(feature = "rt-smol")]
#[derive(Debug)]
pub struct SmolThreads {
    _done: async_channel::Sender<()>,
}

/// smol: the server's own `async-executor`, run by two threads.
#[cfg(feature = "rt-smol")]
#[derive(Debug)]
pub struct Smol;

#[cfg(feature = "rt-smol")]
impl TestRuntime for Smol {
    const NAME: &'static str = "smol";
    type Rt = subscope::smol::SmolRuntime;
    type Listener = subscope::smol::TcpListener;
    type Io = async_net::TcpStream;
    type Guard = SmolThreads;

    fn runtime() -> (Self::Rt, Self::Guard) {
        let ex = Arc::new(async_executor::Executor::new());
        let (done_tx, done_rx) = async_channel::bounded::<()>(1);
        for _ in 0..2 {
            let ex = Arc::clone(&ex);
            let done = done_rx.clone();
            std::thread::spawn(move || async_io::block_on(ex.run(done.recv())));
        }
        (
            subscope::smol::SmolRuntime::new(ex),
            SmolThreads { _done: done_tx },
        )
    }

    fn block_on<F: Future>(_guard: &Self::Guard, fut: F) -> F::Output {
        async_io::block_on(fut)
    }

    async fn bind() -> subscope::smol::TcpListener {
        subscope::smol::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    }

    fn local_addr(listener: &subscope::smol::TcpListener) -> SocketAddr {
        listener.local_addr().expect("addr")
    }

    fn adopt(stream: std::net::TcpStream) -> Self::Io {
        async_net::TcpStream::try_from(stream).expect("adopt")
    }
}

/// async-std's global runtime.
#[cfg(feature = "rt-async-std")]
#[derive(Debug)]
pub struct AsyncStd;

#[cfg(feature = "rt-async-std")]
impl TestRuntime for AsyncStd {
    const NAME: &'static str = "async-std";
    type Rt = subscope::async_std::AsyncStdRuntime;
    type Listener = subscope::async_std::TcpListener;
    type Io = subscope::async_std::TcpStream;
    type Guard = ();

    fn runtime() -> (Self::Rt, Self::Guard) {
        (subscope::async_std::AsyncStdRuntime::new(), ())
    }

    fn block_on<F: Future>((): &(), fut: F) -> F::Output {
        async_std::task::block_on(fut)
    }

    async fn bind() -> subscope::async_std::TcpListener {
        subscope::async_std::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    }

    fn local_addr(listener: &subscope::async_std::TcpListener) -> SocketAddr {
        listener.local_addr().expect("addr")
    }

    fn adopt(stream: std::net::TcpStream) -> Self::Io {
        subscope::async_std::io(async_std::net::TcpStream::from(stream))
    }
}

/// The connection future dropped from outside: serves one accepted connection of a demo
/// server through `Server::serve_io` on the test thread, with `client` on a thread of its
/// own (what it returns, its socket, is held until the end), and drops the connection
/// future once `n` demo streams are live. Returns the live count read on the very next
/// line after that `drop`, with the server and its state for further checks.
pub fn drop_connection_future_at<R: TestRuntime, C>(
    n: usize,
    client: impl FnOnce(SocketAddr) -> C + Send + 'static,
) -> (usize, DemoServer<R::Rt>, DemoState)
where
    C: Send + 'static,
{
    use subscope::rt::Timer;
    let (rt, guard) = R::runtime();
    let (server, demo) = demo_server(rt.clone(), Config::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let held = client(addr);
        // Keep the socket open until the test is done.
        let _ = done_rx.recv_timeout(Duration::from_secs(30));
        drop(held);
    });
    let (tcp, peer) = listener.accept().expect("accept");
    let live = demo.live.clone();
    let after = R::block_on(&guard, async {
        let mut conn = Box::pin(server.serve_io(R::adopt(tcp), Some(peer)));
        let ended = async {
            let _ = (&mut conn).await;
            false
        };
        let all_live = async {
            while live.get() < n {
                rt.sleep(Duration::from_millis(5)).await;
            }
            true
        };
        let deadline = async {
            rt.sleep(Duration::from_secs(10)).await;
            false
        };
        let reached =
            futures_lite::future::or(ended, futures_lite::future::or(all_live, deadline)).await;
        assert!(
            reached,
            "{n} live streams never showed up, or the connection ended by itself"
        );
        assert_eq!(live.get(), n);
        drop(conn);
        // The very next line: nothing was given a chance to run in between.
        live.get()
    });
    let _ = done_tx.send(());
    client.join().expect("client thread");
    (after, server, demo)
}
