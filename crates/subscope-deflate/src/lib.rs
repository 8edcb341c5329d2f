//! permessage-deflate (RFC 7692): compressed WebSocket messages, for any WebSocket
//! implementation that reads and writes through `futures-io` (tungstenite and its async
//! wrappers included), on either side.
//!
//! [`negotiate`] answers a client's offer at the upgrade (and [`client_offer`] makes one);
//! a connection that does not offer it runs exactly as without. The compression is a
//! rewriting of frames under the WebSocket implementation ([`Deflated`]), so every limit, close code and timeout of an
//! uncompressed connection holds unchanged, and the message size limit applies to the
//! inflated message.
//!
//! Memory: no connection holds a zlib stream by default. Messages are compressed with a
//! per-thread stream; with context takeover (the default for what the server sends) the
//! connection keeps only the plain text of its last messages, 2 KiB, which primes that
//! stream as a preset dictionary ([`Context::Recent`]); without takeover it keeps nothing.
//! [`Context::Stream`] keeps a zlib stream per active connection instead. The server asks
//! clients not to keep context (`client_no_context_takeover`), so inflating what they
//! send never needs per-connection state either.

mod codec;
mod frame;
mod io;
mod negotiate;
mod zlib;

pub use io::HIGH_WATER;
pub use io::{Deflated, Side};
pub use negotiate::{Agreed, client_offer, negotiate};

/// How the sending side carries compression context from one message to the next, when
/// the negotiation lets it (see [`DeflateConfig::context`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Context {
    /// Keep the plain text of the last `n` bytes sent compressed (at most the window) and
    /// compress each message against it, as a preset dictionary of a per-thread zlib
    /// stream. A connection holds those `n` bytes and no zlib state, at every instant.
    Recent(usize),
    /// A zlib stream of the connection's own, from its first event until a keepalive
    /// interval passes without one: about 160 KiB at the defaults, for the least CPU per
    /// message.
    Stream,
}

impl Context {
    /// The default: [`Context::Recent`] with 2 KiB, a few small events back or one
    /// record-like event.
    pub const DEFAULT: Self = Self::Recent(2048);

    pub(crate) fn mode(self) -> zlib::Mode {
        match self {
            Self::Recent(n) => zlib::Mode::Recent(n),
            Self::Stream => zlib::Mode::Stream,
        }
    }
}

/// Where a compressed socket reports what it holds and does: subscope's server gauges
/// implement it; every method defaults to doing nothing.
pub trait Stats: Send + Sync + std::fmt::Debug + 'static {
    /// A connection negotiated permessage-deflate.
    fn connection(&self) {}
    /// A zlib stream is now held by a connection.
    fn stream_opened(&self) {}
    /// A zlib stream held by a connection was freed.
    fn stream_closed(&self) {}
    /// One outbound message (or fragment) of `payload` bytes took `wire` bytes compressed.
    fn compressed(&self, payload: usize, wire: usize) {
        let _ = (payload, wire);
    }
}

/// Why a compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateError {
    /// The message inflates (or is compressed) to more than the message size limit.
    #[error("compressed message larger than the size limit")]
    TooBig,
    /// The compressed data is not a valid deflate stream.
    #[error("invalid compressed data")]
    Corrupt,
    /// The frames break RFC 7692's rules.
    #[error("permessage-deflate violation: {0}")]
    Protocol(&'static str),
    /// The compressor failed (not expected with valid settings).
    #[error("compression failed")]
    Compress,
}

impl From<DeflateError> for std::io::Error {
    fn from(err: DeflateError) -> Self {
        Self::new(std::io::ErrorKind::InvalidData, err)
    }
}

impl DeflateError {
    /// The [`DeflateError`] an I/O error carries, if it carries one.
    pub fn from_io(err: &std::io::Error) -> Option<Self> {
        err.get_ref()?.downcast_ref::<Self>().copied()
    }
}

/// permessage-deflate settings (subscope's server takes them in `Config::deflate`).
///
/// The defaults suit a fan-out of JSON events to many connections. The server carries
/// context between messages (what makes repeated keys cost almost nothing) without a zlib
/// stream per connection: each connection keeps the last 2 KiB it sent
/// ([`Context::Recent`]) and compresses against them with a per-thread stream, so a
/// compressed connection costs at most 2 KiB more than a plain one at every instant. Level
/// 1 (level 6 saves another fifth of the bytes for three times the CPU), a 12-bit window
/// (what the client keeps) and memory level 5 (the per-thread stream's block buffer).
/// Clients are asked to reset their context after every message: what they send is small
/// and rare, and the server then needs no inflate state per connection.
/// [`Context::Stream`] spends about 160 KiB per active connection for less CPU per
/// message; [`server_no_context_takeover`] keeps no state at all (small events then
/// hardly shrink).
///
/// [`server_no_context_takeover`]: Self::server_no_context_takeover
///
/// ```
/// use subscope_deflate::{Context, DeflateConfig};
///
/// // subscope's server takes it as `Config::default().deflate(Some(config))`.
/// let config = DeflateConfig::new();
/// assert_eq!(config.state_bytes(), 2048);
/// assert!(DeflateConfig::new().context(Context::Stream).state_bytes() > 100 << 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    pub(crate) server_max_window_bits: u8,
    pub(crate) client_max_window_bits: u8,
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) level: u8,
    pub(crate) mem_level: u8,
    pub(crate) context: Context,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl DeflateConfig {
    /// The default settings (see the type's documentation).
    pub const fn new() -> Self {
        Self {
            server_max_window_bits: 12,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: true,
            level: 1,
            mem_level: 5,
            context: Context::DEFAULT,
        }
    }

    /// The largest LZ77 window the server compresses with, 9 to 15 bits (clamped):
    /// 2^bits bytes of history, twice that in memory. A client may ask for less.
    pub const fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = clamp(bits, 9, 15);
        self
    }

    /// The window the server asks a client to compress with when the client allows it
    /// (`client_max_window_bits` in its offer), 8 to 15 bits (clamped).
    pub const fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = clamp(bits, 8, 15);
        self
    }

    /// Reset the server's compression after every message: no per-connection state at
    /// all, but each event compresses alone (small events hardly shrink).
    pub const fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Ask clients to reset their compression after every message (on by default), so
    /// the server inflates with a shared per-thread stream. A client that asks for it
    /// itself gets it either way.
    pub const fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// How context is carried between messages when the server keeps it (it does unless
    /// [`server_no_context_takeover`](Self::server_no_context_takeover) is set):
    /// [`Context::Recent`] (the default, 2 KiB kept per connection) or
    /// [`Context::Stream`].
    pub const fn context(mut self, context: Context) -> Self {
        self.context = context;
        self
    }

    /// The zlib compression level, 0 (stored) to 9 (clamped).
    pub const fn level(mut self, level: u8) -> Self {
        self.level = clamp(level, 0, 9);
        self
    }

    /// zlib's memory level, 1 to 9 (clamped): the size of the buffer of symbols a block
    /// collects, 2^(level+6) entries.
    pub const fn mem_level(mut self, level: u8) -> Self {
        self.mem_level = clamp(level, 1, 9);
        self
    }
}

impl DeflateConfig {
    /// An upper bound of the compression state one connection may hold with these
    /// settings: the kept text of [`Context::Recent`], or with [`Context::Stream`] its
    /// zlib stream (zlib-rs: a 2^bits window and its chains at 4 bytes per position, a fixed 128 KiB
    /// hash table, 4 bytes per symbol of the memory level's buffer, the state itself; and
    /// an inflate window when clients keep their context).
    pub fn state_bytes(&self) -> usize {
        let mut bytes = 0;
        if !self.server_no_context_takeover {
            bytes += match self.context {
                Context::Recent(n) => n.min(1 << self.server_max_window_bits),
                // A fragmented message (which our server never sends) holds one of these
                // while it is open, in either mode.
                Context::Stream => {
                    (4 << self.server_max_window_bits)
                        + (128 << 10)
                        + (4 << (self.mem_level + 6))
                        + (48 << 10)
                }
            };
        }
        if !self.client_no_context_takeover {
            bytes += (1 << 15) + (16 << 10);
        }
        bytes
    }
}

const fn clamp(v: u8, lo: u8, hi: u8) -> u8 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}
