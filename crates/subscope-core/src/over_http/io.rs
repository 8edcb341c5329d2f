//! Byte-stream glue: listeners hand us futures-io sockets, hyper wants its own I/O traits.
//!
//! [`HyperIo`] is also where an HTTP connection learns how it ended: a read EOF or error
//! means the peer is gone, a write that makes no progress within `write_timeout` is cut
//! (hyper has no write timeout of its own). Streaming bodies read that verdict from the
//! shared [`ConnectionEnd`] when hyper drops them, so `on_complete` gets the real reason.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_io::{AsyncRead, AsyncWrite};

use crate::CloseReason;
use crate::rt::{BoxSleep, Timer};

/// How an HTTP connection ended, once it has: the first verdict wins. An HTTP/2 stream
/// has its own, under its connection's: the connection's verdict (a reset, a write
/// timeout) wins over the stream's (its `RST_STREAM`).
#[derive(Debug, Default)]
pub(crate) struct ConnectionEnd {
    reason: Mutex<Option<CloseReason>>,
    connection: Option<Arc<Self>>,
}

impl ConnectionEnd {
    /// The verdict of one HTTP/2 stream of `connection`.
    pub(crate) fn stream_of(connection: &Arc<Self>) -> Self {
        Self {
            reason: Mutex::default(),
            connection: Some(Arc::clone(connection)),
        }
    }

    pub(crate) fn set(&self, reason: CloseReason) {
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(reason);
        }
    }

    pub(crate) fn get(&self) -> Option<CloseReason> {
        self.connection.as_ref().and_then(|c| c.get()).or_else(|| {
            self.reason
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }
}

/// A futures-io socket as hyper I/O, with a write timeout.
pub(crate) struct HyperIo<S, R> {
    pub(crate) io: S,
    timer: R,
    write_timeout: Option<Duration>,
    /// The write-timeout sleep: allocated at the first stall, then reset.
    stall: Option<BoxSleep>,
    /// Whether `stall` is armed for the write or flush pending now.
    stalled: bool,
    ending: Arc<ConnectionEnd>,
}

// `R` is never pinned through the wrapper.
impl<S: Unpin, R> Unpin for HyperIo<S, R> {}

impl<S, R: Timer> HyperIo<S, R> {
    pub(crate) fn new(
        io: S,
        timer: R,
        write_timeout: Option<Duration>,
        ending: Arc<ConnectionEnd>,
    ) -> Self {
        Self {
            io,
            timer,
            write_timeout,
            stall: None,
            stalled: false,
            ending,
        }
    }

    /// Passes a write result through, arming the write timeout while it is pending.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(Ok(v)) => {
                self.stalled = false;
                Poll::Ready(Ok(v))
            }
            Poll::Ready(Err(e)) => {
                self.ending.set(CloseReason::PeerGone);
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                let Some(limit) = self.write_timeout else {
                    return Poll::Pending;
                };
                if !self.stalled {
                    let deadline = self.timer.now() + limit;
                    self.stalled = true;
                    match &mut self.stall {
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => self.stall = Some(self.timer.sleep_until(deadline)),
                    }
                }
                let fired = self
                    .stall
                    .as_mut()
                    .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                if fired {
                    self.ending.set(CloseReason::WriteTimeout);
                    tracing::debug!("http write stalled past the write timeout: connection cut");
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                Poll::Pending
            }
        }
    }
}

impl<S, R> hyper::rt::Read for HyperIo<S, R>
where
    S: AsyncRead + Unpin,
    R: Timer,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper's cursor may be uninitialized memory, which only `unsafe` can fill in
        // place; a copy through the stack costs less than the syscall.
        let mut chunk = [0u8; 4096];
        let want = buf.remaining().min(chunk.len());
        match ready!(Pin::new(&mut this.io).poll_read(cx, &mut chunk[..want])) {
            Ok(n) => {
                if n == 0 && want > 0 {
                    this.ending.set(CloseReason::PeerGone);
                }
                buf.put_slice(&chunk[..n]);
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                this.ending.set(CloseReason::PeerGone);
                Poll::Ready(Err(e))
            }
        }
    }
}

impl<S, R> hyper::rt::Write for HyperIo<S, R>
where
    S: AsyncWrite + Unpin,
    R: Timer,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        // futures-io has no query; TCP sockets of every runtime do vectored writes.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_close(cx);
        this.watch(cx, result)
    }
}

/// A socket with bytes already read from it in front (what hyper read past the upgrade
/// request), for the WebSocket that takes the socket over.
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, io: S) -> Self {
        // `prefix` is a view of hyper's whole read buffer (8 KiB or more); keep only the
        // bytes, so an idle WebSocket does not hold that buffer for its lifetime.
        let prefix = if prefix.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&prefix)
        };
        Self { prefix, io }
    }

    pub(crate) fn into_inner(self) -> S {
        self.io
    }

    /// The bytes not yet read again, and the socket.
    pub(crate) fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.io)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.len());
            buf[..n].copy_from_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if !this.prefix.has_remaining() {
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_close(cx)
    }
}

/// Our timer as hyper's (for the header read timeout).
#[derive(Clone)]
pub(crate) struct HyperTimer<R>(pub(crate) R);

struct HyperSleep(BoxSleep);

impl Future for HyperSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl<R: Timer> hyper::rt::Timer for HyperTimer<R> {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(self.0.sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(self.0.sleep_until(deadline)))
    }

    fn now(&self) -> Instant {
        self.0.now()
    }
}

/// A socket hyper upgraded for another HTTP server (axum, ...), as futures-io.
pub(crate) struct UpgradedIo(pub(crate) hyper::upgrade::Upgraded);

impl std::fmt::Debug for UpgradedIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpgradedIo")
    }
}

impl AsyncRead for UpgradedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read = hyper::rt::ReadBuf::new(buf);
        ready!(hyper::rt::Read::poll_read(
            Pin::new(&mut self.0),
            cx,
            read.unfilled()
        ))?;
        Poll::Ready(Ok(read.filled().len()))
    }
}

impl AsyncWrite for UpgradedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        hyper::rt::Write::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        hyper::rt::Write::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        hyper::rt::Write::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}
