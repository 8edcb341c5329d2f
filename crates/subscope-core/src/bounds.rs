//! Every buffer bound of a connection, and the formula that adds them up: one leaf module
//! (it imports no other module of this crate), so the settings, the WebSocket session and
//! the HTTP service all read the same numbers.

#[cfg(feature = "deflate")]
pub(crate) use subscope_deflate::HIGH_WATER as DEFLATE_HIGH_WATER;
pub(crate) use subscope_protocol::bounds::{HOLD_BYTES, HOLD_LIMIT};

/// tungstenite's initial read buffer (it grows to hold the largest frame read), and the most
/// it reads per call. Small because it lives as long as the connection, idle or not:
/// 8 KiB was over half of an idle connection's own heap (`docs/memory/idle-connection.md`).
pub(crate) const READ_BUFFER: usize = 2 * 1024;

/// Bytes tungstenite buffers before it writes to the socket (and the most it holds beyond
/// one frame once a write blocks).
pub(crate) const WRITE_BUFFER: usize = 128 * 1024;

/// Inbound messages handled per loop round before other work gets a turn.
pub(crate) const READ_BUDGET: usize = 16;

/// Frames queued before a session stops pulling operations (and reading) and writes them
/// out; an HTTP stream puts at most this many events in one chunk.
pub(crate) const WRITE_BATCH: usize = 32;

/// Bytes queued before a session stops pulling operations (and reading); the most one
/// HTTP chunk carries. One frame may overshoot it.
pub(crate) const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Loop rounds per wake-up before a session yields to the runtime.
pub(crate) const ROUNDS: usize = 32;

/// hyper's read and write buffer bound per HTTP connection.
#[cfg(feature = "http")]
pub(crate) const HTTP_BUFFER: usize = 64 * 1024;

/// The largest outbound WebSocket frame: a result of `max_response_size` bytes (the most
/// the operation policy lets through) in its envelope, whose id JSON-escapes to at most 6
/// bytes per byte of `max_id_length`. tungstenite's write buffer is sized by it.
pub(crate) fn largest_outbound_frame(max_response_size: usize, max_id_length: usize) -> usize {
    max_response_size
        .saturating_add(max_id_length.saturating_mul(6))
        .saturating_add(64)
}

/// The most one WebSocket connection buffers, in bytes, with these limits: see
/// [`Config::connection_buffer_bound`](crate::Config::connection_buffer_bound).
pub(crate) fn connection_buffer_bound(
    max_message_size: usize,
    max_response_size: usize,
    max_id_length: usize,
    #[cfg(feature = "deflate")] deflate: Option<&subscope_deflate::DeflateConfig>,
) -> usize {
    let m = max_message_size;
    let largest_frame =
        largest_outbound_frame(max_response_size, max_id_length).max(m.saturating_add(256));
    #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
    let mut read = READ_BUFFER + 2 * m;
    let held = HOLD_BYTES + m;
    let queue = WRITE_BATCH_BYTES + HOLD_BYTES + HOLD_LIMIT * 256 + largest_frame;
    #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
    let mut write = WRITE_BUFFER + largest_frame;
    #[cfg(feature = "deflate")]
    if let Some(deflate) = deflate {
        // A compressed message collected, inflated and queued for tungstenite; the
        // compressed bytes of one write not yet sent, the frame being compressed; the zlib
        // streams.
        read += 3 * m + m / 64 + 1024;
        write += DEFLATE_HIGH_WATER + WRITE_BUFFER + largest_frame;
        write += deflate.state_bytes();
    }
    read.saturating_add(held)
        .saturating_add(queue)
        .saturating_add(write)
        .saturating_mul(2)
}
