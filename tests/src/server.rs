//! The demo schema served in-process on a real 127.0.0.1 listener, per runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use subscope::{Config, Gauges};
use subscope_examples::{Broker, LiveCounter};

use crate::{DEADLINE, Recorder, RecordingHooks, wait_until};

/// A runtime the suite runs on.
pub trait TestRuntime {
    /// Its name, for messages.
    const NAME: &'static str;
    /// Starts the demo server with `config` and recording hooks on 127.0.0.1:0.
    fn start(config: Config) -> TestServer;
}

/// What a runtime-specific server exposes to the tests.
pub trait Control: Send + Sync {
    /// Runs the server's graceful shutdown to its end.
    fn shutdown(&self, grace: Duration);
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

impl TestServer {
    /// Assembles a server from its parts (used by the runtime modules).
    pub fn new(
        addr: SocketAddr,
        live: LiveCounter,
        gauges: Arc<Gauges>,
        recorder: Recorder,
        broker: Broker,
        control: Box<dyn Control>,
    ) -> Self {
        Self {
            addr,
            live,
            gauges,
            recorder,
            broker,
            control,
        }
    }

    /// Runs graceful shutdown; returns when the server says every connection is gone.
    pub fn shutdown(&self, grace: Duration) {
        self.control.shutdown(grace);
    }

    /// Waits until no demo stream and no operation is alive, and no connection.
    pub fn wait_idle(&self) {
        wait_until("liveStreams and gauges back to zero", DEADLINE, || {
            let g = self.gauges.snapshot();
            self.live.get() == 0 && g.subscriptions == 0 && g.connections == 0
        });
    }

    /// Waits until `n` demo streams are alive.
    pub fn wait_live(&self, n: usize) {
        wait_until(&format!("{n} live streams"), DEADLINE, || {
            self.live.get() == n
        });
    }
}

/// Fresh hooks and demo state for one server.
pub fn parts() -> (RecordingHooks, LiveCounter, Arc<Gauges>, Broker) {
    (
        RecordingHooks::default(),
        LiveCounter::default(),
        Arc::new(Gauges::new()),
        Broker::default(),
    )
}

/// The tokio runtime.
#[cfg(feature = "rt-tokio")]
pub mod tokio_rt {
    use super::*;
    use subscope::tokio::TokioRuntime;

    /// tokio, multi-threaded (two workers), so operations drop on other threads too.
    #[derive(Debug)]
    pub struct Tokio;

    struct TokioControl {
        rt: tokio::runtime::Runtime,
        server: subscope::tokio::Server<subscope_examples::DemoSchema, RecordingHooks>,
    }

    impl Control for TokioControl {
        fn shutdown(&self, grace: Duration) {
            self.rt.block_on(self.server.shutdown(grace));
        }
    }

    impl TestRuntime for Tokio {
        const NAME: &'static str = "tokio";

        fn start(config: Config) -> TestServer {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let (hooks, live, gauges, broker) = parts();
            let recorder = hooks.recorder.clone();
            let schema = subscope_examples::build_schema(
                Arc::new(TokioRuntime::new()),
                Arc::clone(&gauges),
                broker.clone(),
                live.clone(),
            );
            let server = subscope::tokio::server(schema)
                .hooks(hooks)
                .config(config)
                .gauges(Arc::clone(&gauges))
                .build();
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let serving = server.clone();
            rt.spawn(async move { serving.serve(listener).await });
            TestServer::new(
                addr,
                live,
                gauges,
                recorder,
                broker,
                Box::new(TokioControl { rt, server }),
            )
        }
    }
}
