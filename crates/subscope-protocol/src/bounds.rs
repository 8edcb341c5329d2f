//! The protocol layer's own buffer bounds (a leaf: it imports nothing). The server's
//! per-connection bound formula, which adds these to the socket's buffers, is
//! `subscope_core::bounds`.

/// Messages held while `on_connect` runs before the driver stops reading.
pub const HOLD_LIMIT: usize = 64;

/// Bytes held while `on_connect` runs before the driver stops reading. One message may
/// overshoot it, so the held bytes never exceed `HOLD_BYTES + max_message_size`.
pub const HOLD_BYTES: usize = 64 * 1024;
