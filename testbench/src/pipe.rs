//! An in-memory duplex byte stream standing in for a TCP socket, with a control handle.
//!
//! The server end is a futures-io `AsyncRead + AsyncWrite`; the bench holds a clone and
//! plays the client: it pushes bytes in (in any split or batch), takes bytes out, and can
//! stall the server's writes, make them fail, reset the connection or end its input.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_io::{AsyncRead, AsyncWrite};

/// Both directions of one socket. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Pipe {
    state: Arc<Mutex<PipeState>>,
}

#[derive(Debug)]
struct PipeState {
    /// Client → server bytes the server has not read yet.
    inbound: VecDeque<u8>,
    /// The most client bytes the "kernel" holds for the server (a TCP receive window).
    inbound_capacity: usize,
    inbound_eof: bool,
    /// Bytes the server has read, in total.
    consumed: u64,
    /// Server → client bytes the client has not taken yet.
    outbound: Vec<u8>,
    /// The most server bytes held for the client before the server's writes block.
    outbound_capacity: usize,
    stalled: bool,
    reset: bool,
    write_fails: bool,
    server_shut_down_write: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Default for PipeState {
    fn default() -> Self {
        Self {
            inbound: VecDeque::new(),
            inbound_capacity: usize::MAX,
            inbound_eof: false,
            consumed: 0,
            outbound: Vec::new(),
            outbound_capacity: usize::MAX,
            stalled: false,
            reset: false,
            write_fails: false,
            server_shut_down_write: false,
            read_waker: None,
            write_waker: None,
        }
    }
}

impl Pipe {
    /// A fresh pipe with unbounded buffers in both directions.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake_reader(state: &mut PipeState) {
        if let Some(w) = state.read_waker.take() {
            w.wake();
        }
    }

    fn wake_writer(state: &mut PipeState) {
        if let Some(w) = state.write_waker.take() {
            w.wake();
        }
    }

    /// Bounds what the server may have unread from the client; [`Pipe::client_write`]
    /// then accepts only what fits, as a TCP window would.
    pub fn set_inbound_capacity(&self, bytes: usize) {
        self.lock().inbound_capacity = bytes;
    }

    /// Bounds what the server may have written and the client not yet read; past it the
    /// server's writes are `Pending`, as on a socket whose peer does not read.
    pub fn set_outbound_capacity(&self, bytes: usize) {
        let mut s = self.lock();
        s.outbound_capacity = bytes;
        Self::wake_writer(&mut s);
    }

    /// Client bytes towards the server; returns how many fit in the inbound window.
    pub fn client_write(&self, bytes: &[u8]) -> usize {
        let mut s = self.lock();
        let room = s.inbound_capacity.saturating_sub(s.inbound.len());
        let n = room.min(bytes.len());
        s.inbound.extend(&bytes[..n]);
        if n > 0 {
            Self::wake_reader(&mut s);
        }
        n
    }

    /// Takes everything the server wrote so far.
    pub fn client_read(&self) -> Vec<u8> {
        let mut s = self.lock();
        let out = std::mem::take(&mut s.outbound);
        if !out.is_empty() {
            Self::wake_writer(&mut s);
        }
        out
    }

    /// The client half-closes: the server reads EOF once it has read what is there.
    pub fn client_eof(&self) {
        let mut s = self.lock();
        s.inbound_eof = true;
        Self::wake_reader(&mut s);
    }

    /// The connection is reset: every read and write of the server fails from now on.
    pub fn reset(&self) {
        let mut s = self.lock();
        s.reset = true;
        Self::wake_reader(&mut s);
        Self::wake_writer(&mut s);
    }

    /// While stalled, every write and flush of the server is `Pending`.
    pub fn stall_writes(&self, stalled: bool) {
        let mut s = self.lock();
        s.stalled = stalled;
        if !stalled {
            Self::wake_writer(&mut s);
        }
    }

    /// From now on, every write of the server fails with a broken pipe.
    pub fn fail_writes(&self) {
        let mut s = self.lock();
        s.write_fails = true;
        Self::wake_writer(&mut s);
    }

    /// Bytes the server has read so far.
    pub fn consumed(&self) -> u64 {
        self.lock().consumed
    }

    /// Client bytes waiting for the server to read them.
    pub fn unread_inbound(&self) -> usize {
        self.lock().inbound.len()
    }

    /// Server bytes waiting for the client to read them.
    pub fn unread_outbound(&self) -> usize {
        self.lock().outbound.len()
    }

    /// Heap bytes the pipe's own buffers hold (what a kernel would hold for a socket), so
    /// memory tests can tell them from the server's.
    pub fn buffer_capacity(&self) -> usize {
        let s = self.lock();
        s.inbound.capacity() + s.outbound.capacity()
    }

    /// Whether the server shut its writing half down (it closed the socket).
    pub fn server_shut_down_write(&self) -> bool {
        self.lock().server_shut_down_write
    }
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection reset (bench)")
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.lock();
        if s.reset {
            return Poll::Ready(Err(reset_error()));
        }
        if s.inbound.is_empty() {
            if s.inbound_eof {
                return Poll::Ready(Ok(0));
            }
            s.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(s.inbound.len());
        for (slot, byte) in buf.iter_mut().zip(s.inbound.drain(..n)) {
            *slot = byte;
        }
        s.consumed += n as u64;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.lock();
        if s.reset {
            return Poll::Ready(Err(reset_error()));
        }
        if s.write_fails {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = s.outbound_capacity.saturating_sub(s.outbound.len());
        if s.stalled || room == 0 {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        s.outbound.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.lock();
        if s.reset {
            return Poll::Ready(Err(reset_error()));
        }
        if s.stalled {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.lock();
        s.server_shut_down_write = true;
        Poll::Ready(Ok(()))
    }
}
