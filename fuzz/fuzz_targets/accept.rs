//! The standalone server's accept path fed hostile bytes: a TLS handshake (rustls), HTTP/2
//! frames after the preface (hyper's h2), or HTTP/1.1, on `Server::serve_io` over an
//! in-memory socket. The first input byte picks the path; the rest is what the client
//! sends, in chunks whose sizes the input also picks. Invariants: no panic, and the
//! connection future always finishes once the client's bytes run out (EOF): nothing the
//! client sent can keep it, or an operation, alive.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use async_graphql::{EmptyMutation, Object, Schema, Subscription};
use futures_lite::Stream;
use subscope_core::rt::{BoxSleep, BoxTask, Sleep, Spawn, Timer};
use subscope_core::{Config, NoHooks, Server, tls::Tls};

/// A clock that stands still and sleeps that never fire: every outcome comes from the
/// client's bytes, never from a timer, so a run is repeatable.
#[derive(Clone)]
struct Still;

struct Never;

impl Future for Never {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Sleep for Never {
    fn reset(self: Pin<&mut Self>, _: Instant) {}
}

impl Timer for Still {
    fn now(&self) -> Instant {
        static START: OnceLock<Instant> = OnceLock::new();
        *START.get_or_init(Instant::now)
    }
    fn sleep_until(&self, _: Instant) -> BoxSleep {
        Box::pin(Never)
    }
}

impl Spawn for Still {
    // `serve_io` runs everything of its connection inside its own future.
    fn spawn(&self, _task: BoxTask) {}
}

struct Query;

#[Object]
impl Query {
    async fn hello(&self) -> &'static str {
        "world"
    }
}

struct Subscription;

#[Subscription]
impl Subscription {
    async fn numbers(&self) -> impl Stream<Item = i32> {
        futures_lite::stream::iter([1, 2, 3])
    }
}

type Demo = Schema<Query, EmptyMutation, Subscription>;

fn server(tls: bool) -> Server<Demo, NoHooks, Still> {
    let schema = Schema::new(Query, EmptyMutation, Subscription);
    let mut config = Config::default()
        .handshake_timeout(None)
        .init_timeout(None)
        .keepalive_interval(None)
        .write_timeout(None);
    if tls {
        static TLS: OnceLock<Tls> = OnceLock::new();
        let tls = TLS.get_or_init(|| {
            Tls::from_pem(
                include_bytes!("../../tests/certs/localhost-cert.pem"),
                include_bytes!("../../tests/certs/localhost-key.pem"),
            )
            .expect("the test certificate")
        });
        config = config.tls(tls.clone());
    }
    Server::builder(Still, schema).config(config).build()
}

/// The client's bytes, served in chunks; EOF after the last.
struct Client {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl futures_io::AsyncRead for Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = (self.data.len() - self.pos).min(buf.len()).min(self.chunk);
        let pos = self.pos;
        buf[..n].copy_from_slice(&self.data[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl futures_io::AsyncWrite for Client {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let tls = mode & 1 == 1;
    let mut data = Vec::new();
    // Cleartext: mostly HTTP/2 (the preface first), sometimes whatever came.
    if !tls && mode & 2 == 2 {
        data.extend_from_slice(PREFACE);
    }
    data.extend_from_slice(rest);
    let chunk = 1 + usize::from(mode >> 2) * 64;
    let server = server(tls);
    let io = Client { data, pos: 0, chunk };
    let served = futures_lite::future::block_on(futures_lite::future::or(
        async { Some(server.serve_io(io, None).await) },
        // A future that is still pending when nothing can wake it again has hung.
        async {
            for _ in 0..10_000 {
                futures_lite::future::yield_now().await;
            }
            None
        },
    ));
    assert!(served.is_some(), "the connection outlived the client's bytes");
});
