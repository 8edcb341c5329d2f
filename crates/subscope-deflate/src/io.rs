//! [`Deflated`]: a socket with permessage-deflate applied to the frames crossing it.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_io::{AsyncRead, AsyncWrite};

use crate::Stats;
use std::sync::Arc;

use super::codec::{Inbound, Outbound};
use super::zlib::{Compressor, Decompressor, Mode, Params};
use super::{Agreed, DeflateConfig, DeflateError};

/// Bytes compressed and not yet written past which a write waits for the socket: with
/// the WebSocket's own write buffer above, what one connection may hold stays bounded.
pub const HIGH_WATER: usize = 64 * 1024;

/// Buffers at most this large are kept between uses; larger ones are freed once drained,
/// so a connection between messages keeps nothing here (the allocator serves the next
/// message's buffer again in nanoseconds, next to compressing it).
const KEEP: usize = 0;

/// Which end of the WebSocket this socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Side {
    /// The server: the peer's frames are masked, ours are not.
    Server,
    /// The client: ours are masked, the peer's are not.
    Client,
}

/// A socket (`futures-io` or `std::io`) that compresses the data frames a WebSocket writes
/// through it and inflates the compressed ones it reads, per the parameters agreed at the
/// upgrade. Put it between the socket and an unmodified WebSocket implementation: the
/// WebSocket sees an uncompressed connection, with all its own checks and limits (a
/// compressed message is inflated only up to the message size limit; past it, reading
/// fails with [`DeflateError::TooBig`] inside the `io::Error`).
///
/// With no agreement ([`Deflated::plain`]) bytes pass through untouched. Compression state
/// is allocated at the first compressed message, not before.
#[derive(Debug)]
pub struct Deflated<S> {
    io: S,
    codec: Option<Box<Codec>>,
}

#[derive(Debug)]
struct Codec {
    inbound: Inbound,
    outbound: Outbound,
    /// Inflated bytes not yet read by the WebSocket.
    up: Vec<u8>,
    up_at: usize,
    /// Compressed bytes not yet written to the socket.
    out: Vec<u8>,
    out_at: usize,
    failed: Option<DeflateError>,
}

impl<S> Deflated<S> {
    /// `io` with nothing agreed: bytes pass through.
    pub fn plain(io: S) -> Self {
        Self { io, codec: None }
    }

    /// `io` running the agreed permessage-deflate. `config` gives the compression level
    /// and memory level; `max_message_size` bounds what one inbound message inflates to.
    pub fn new(
        io: S,
        side: Side,
        agreed: &Agreed,
        config: &DeflateConfig,
        max_message_size: usize,
    ) -> Self {
        // Each side compresses with its own window and takeover, inflates with the other's.
        let (ours, theirs) = match side {
            Side::Server => (
                (agreed.server_window_bits, agreed.server_no_context_takeover),
                (agreed.client_window_bits, agreed.client_no_context_takeover),
            ),
            Side::Client => (
                (agreed.client_window_bits, agreed.client_no_context_takeover),
                (agreed.server_window_bits, agreed.server_no_context_takeover),
            ),
        };
        let params = Params {
            level: config.level,
            window_bits: ours.0.max(9),
            mem_level: config.mem_level,
        };
        let codec = Codec {
            inbound: Inbound::new(
                side == Side::Server,
                max_message_size,
                Decompressor::new(theirs.0, !theirs.1),
            ),
            outbound: Outbound::new(Compressor::new(
                params,
                if ours.1 {
                    Mode::Alone
                } else {
                    config.context.mode()
                },
            )),
            up: Vec::new(),
            up_at: 0,
            out: Vec::new(),
            out_at: 0,
            failed: None,
        };
        Self {
            io,
            codec: Some(Box::new(codec)),
        }
    }

    /// Reports this connection, the zlib streams it holds and the bytes it compresses to
    /// `stats` (subscope's gauges count them as `deflate_connections_total`,
    /// `deflate_streams`, `deflate_payload_bytes_total`, `deflate_wire_bytes_total`). No
    /// effect on a plain socket.
    pub fn counting(mut self, gauges: Arc<dyn Stats>) -> Self {
        if let Some(codec) = &mut self.codec {
            gauges.connection();
            codec.inbound.count_in(Arc::clone(&gauges));
            codec.outbound.count_in(gauges);
        }
        self
    }

    /// Whether permessage-deflate runs on this socket.
    pub fn is_compressed(&self) -> bool {
        self.codec.is_some()
    }

    /// Whether this socket holds a compression or decompression stream right now (it
    /// does only with context takeover, after its first compressed message that way).
    pub fn holds_compression_state(&self) -> bool {
        self.codec
            .as_ref()
            .is_some_and(|c| c.inbound.holds_state() || c.outbound.holds_state())
    }

    /// The bytes of compression context this connection keeps between messages besides
    /// any zlib stream ([`Context::Recent`](crate::Context::Recent)'s kept text).
    pub fn kept_context_bytes(&self) -> usize {
        self.codec.as_ref().map_or(0, |c| c.outbound.kept_bytes())
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The socket, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The socket back (bytes not yet written are lost).
    pub fn into_inner(self) -> S {
        self.io
    }
}

impl Codec {
    /// Hands inflated bytes to `buf`, if there are any.
    fn take_up(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.up_at == self.up.len() {
            return None;
        }
        let n = buf.len().min(self.up.len() - self.up_at);
        buf[..n].copy_from_slice(&self.up[self.up_at..self.up_at + n]);
        self.up_at += n;
        if self.up_at == self.up.len() {
            self.up.clear();
            self.up_at = 0;
            if self.up.capacity() > KEEP {
                self.up = Vec::new();
            }
        }
        Some(n)
    }

    fn decode(&mut self, read: &[u8]) {
        if let Err(e) = self.inbound.decode(read, &mut self.up) {
            tracing::debug!(error = %e, "permessage-deflate: inbound message refused");
            self.failed = Some(e);
        }
    }

    fn pending_out(&self) -> usize {
        self.out.len() - self.out_at
    }

    /// What the WebSocket above reads: inflated bytes first, then what `read` brings from
    /// the socket (read into the caller's buffer and rewritten from it: no buffer of our
    /// own). `read` is the socket's read, async or blocking.
    fn read(
        &mut self,
        buf: &mut [u8],
        mut read: impl FnMut(&mut [u8]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Some(n) = self.take_up(buf) {
                return Poll::Ready(Ok(n));
            }
            if let Some(e) = self.failed {
                return Poll::Ready(Err(e.into()));
            }
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let n = ready!(read(buf))?;
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            self.decode(&buf[..n]);
        }
    }

    /// Writes the compressed bytes not yet written with `write` (the socket's write, async
    /// or blocking).
    fn drain(
        &mut self,
        mut write: impl FnMut(&[u8]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<()>> {
        while self.pending_out() > 0 {
            let n = ready!(write(&self.out[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wrote(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Compresses what our WebSocket wrote into the bytes to write.
    fn encode(&mut self, buf: &[u8]) -> io::Result<()> {
        self.outbound
            .encode(buf, &mut self.out)
            .map_err(io::Error::from)
    }

    fn wrote(&mut self, n: usize) {
        self.out_at += n;
        if self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
            if self.out.capacity() > KEEP {
                self.out = Vec::new();
            }
        }
    }
}

/// A blocking call's result (blocking I/O never returns `Pending`).
fn now<T>(poll: Poll<T>) -> T {
    match poll {
        Poll::Ready(t) => t,
        Poll::Pending => unreachable!("blocking I/O is always ready"),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Deflated<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Self { io, codec } = self;
        match codec {
            Some(codec) => codec.drain(|bytes| Pin::new(&mut *io).poll_write(cx, bytes)),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Deflated<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let Self { io, codec } = &mut *self;
        match codec {
            Some(codec) => codec.read(buf, |b| Pin::new(&mut *io).poll_read(cx, b)),
            None => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Deflated<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Self { io, codec } = &mut *self;
        let Some(codec) = codec else {
            return Pin::new(io).poll_write(cx, buf);
        };
        if codec.pending_out() >= HIGH_WATER {
            ready!(codec.drain(|b| Pin::new(&mut *io).poll_write(cx, b)))?;
        }
        codec.encode(buf)?;
        // Start writing now; what the socket does not take waits for the next flush.
        if let Poll::Ready(Err(e)) = codec.drain(|b| Pin::new(&mut *io).poll_write(cx, b)) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_close(cx)
    }
}

/// For blocking clients (tests, tools): the same rewriting over `std::io`.
impl<S: Read> Read for Deflated<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Self { io, codec } = self;
        match codec {
            Some(codec) => now(codec.read(buf, |b| Poll::Ready(io.read(b)))),
            None => io.read(buf),
        }
    }
}

impl<S: Write> Write for Deflated<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Self { io, codec } = self;
        let Some(codec) = codec else {
            return io.write(buf);
        };
        // Earlier bytes first; an error here leaves `buf` unconsumed, so a retry is exact.
        now(codec.drain(|b| Poll::Ready(io.write(b))))?;
        codec.encode(buf)?;
        match now(codec.drain(|b| Poll::Ready(io.write(b)))) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let Self { io, codec } = self;
        if let Some(codec) = codec {
            now(codec.drain(|b| Poll::Ready(io.write(b))))?;
        }
        io.flush()
    }
}
