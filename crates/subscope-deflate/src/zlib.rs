//! Compression state, allocated only when a message needs it.
//!
//! With context takeover a connection keeps its own zlib stream between messages (that is
//! what makes small repeated JSON compress) and allocates it at its first compressed
//! message. Without it, a message's stream starts empty, so connections borrow one stream
//! per thread instead of each holding one: their cost between messages is nothing.

use std::cell::RefCell;

use zlib_rs::{
    Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Method, Status, Strategy,
};

use std::sync::Arc;

use super::DeflateError;
use crate::Stats;

/// A connection's own zlib stream, counted in the stats while it lives.
struct Held<T> {
    stream: Box<T>,
    gauges: Option<Arc<dyn Stats>>,
}

impl<T> Held<T> {
    fn new(stream: Box<T>, gauges: Option<&Arc<dyn Stats>>) -> Self {
        if let Some(g) = gauges {
            g.stream_opened();
        }
        Self {
            stream,
            gauges: gauges.cloned(),
        }
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        if let Some(g) = &self.gauges {
            g.stream_closed();
        }
    }
}

/// The four bytes a sync flush ends with, which permessage-deflate leaves off the wire.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How a compressor is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) level: u8,
    pub(crate) window_bits: u8,
    pub(crate) mem_level: u8,
}

impl Params {
    fn build(self) -> Box<Deflate> {
        Box::new(Deflate::new_with_config(DeflateConfig {
            level: i32::from(self.level),
            method: Method::Deflated,
            // Negative: a raw deflate stream, no zlib header.
            window_bits: -i32::from(self.window_bits),
            mem_level: i32::from(self.mem_level),
            strategy: Strategy::Default,
        }))
    }
}

thread_local! {
    /// Compressors for messages without context takeover, one per thread and setting.
    static SHARED_DEFLATE: RefCell<Vec<(Params, Box<Deflate>)>> = const { RefCell::new(Vec::new()) };
    /// One decompressor per thread for messages without context takeover.
    static SHARED_INFLATE: RefCell<Option<Box<Inflate>>> = const { RefCell::new(None) };
}

/// Messages shorter than this never make a connection allocate its own stream: they are
/// protocol chatter (`{"type":"connection_ack"}`, `pong`, `ka`, a `complete`), compressed
/// alone with the thread's stream, so a connection that only ever sends those holds
/// nothing. The smallest `next` (`{"id":"1","type":"next","payload":{"data":{"a":1}}}`)
/// is 49 bytes.
pub(crate) const PROMOTE_AT: usize = 40;

/// The sending side's compressor.
///
/// With context takeover a connection compresses with its own stream from its first
/// message of [`PROMOTE_AT`] bytes or more, and frees it again when a whole keepalive
/// interval passes without one ([`Compressor::tick`], at each of our pings). Starting a
/// fresh stream at any message is always valid: the new stream's back-references reach only
/// its own output, which the peer's window holds last.
pub(crate) struct Compressor {
    params: Params,
    takeover: bool,
    /// Our own stream: with context takeover once active, or while a fragmented message
    /// is open.
    own: Option<Held<Deflate>>,
    gauges: Option<Arc<dyn Stats>>,
    /// `own` compressed a message since the last tick.
    used: bool,
    /// Inside a fragmented message: `own` must carry on.
    fragment_open: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("params", &self.params)
            .field("takeover", &self.takeover)
            .field("holds_state", &self.own.is_some())
            .finish()
    }
}

impl Compressor {
    pub(crate) fn new(params: Params, takeover: bool) -> Self {
        Self {
            params,
            takeover,
            own: None,
            gauges: None,
            used: false,
            fragment_open: false,
        }
    }

    /// Counts the streams it holds in `stats`.
    pub(crate) fn count_in(&mut self, gauges: Arc<dyn Stats>) {
        self.gauges = Some(gauges);
    }

    /// Whether this connection holds a zlib stream now.
    pub(crate) fn holds_state(&self) -> bool {
        self.own.is_some()
    }

    /// One keepalive interval passed (we sent a ping): a stream unused since the last
    /// tick is freed.
    pub(crate) fn tick(&mut self) {
        if !self.used && !self.fragment_open {
            self.own = None;
        }
        self.used = false;
    }

    /// Appends `input` compressed to `out`; `fin` ends the message (its sync-flush tail
    /// is left off, RFC 7692 7.2.1). `Ok(false)`: send the message uncompressed instead
    /// (RSV1 clear), because compressing it alone did not make it smaller; only a whole
    /// message compressed with the thread's stream can be, since the peer's window must
    /// hold every byte our own stream compressed.
    pub(crate) fn compress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, DeflateError> {
        let start = out.len();
        let own = self.own.is_some()
            || !fin
            || self.fragment_open
            || (self.takeover && input.len() >= PROMOTE_AT);
        if own {
            let (params, gauges) = (self.params, self.gauges.as_ref());
            let held = self
                .own
                .get_or_insert_with(|| Held::new(params.build(), gauges));
            deflate(&mut held.stream, input, out)?;
            self.used = true;
            self.fragment_open = !fin;
            if fin && !self.takeover {
                self.own = None;
            }
        } else {
            SHARED_DEFLATE.with(|cell| {
                let mut pool = cell.borrow_mut();
                let at = match pool.iter().position(|(p, _)| *p == self.params) {
                    Some(at) => at,
                    None => {
                        pool.push((self.params, self.params.build()));
                        pool.len() - 1
                    }
                };
                let stream = &mut pool[at].1;
                let done = deflate(stream, input, out);
                stream.reset();
                done
            })?;
        }
        if fin {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            }
            if out.len() == start {
                // An empty message still needs a (empty) deflate block.
                out.push(0);
            }
            if !own && out.len() - start >= input.len() {
                out.truncate(start);
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn deflate(stream: &mut Deflate, input: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
    let start = out.len();
    let mut consumed = 0;
    let mut produced = 0;
    out.resize(start + input.len() + input.len() / 8 + 64, 0);
    loop {
        let (in0, out0) = (stream.total_in(), stream.total_out());
        stream
            .compress(
                &input[consumed..],
                &mut out[start + produced..],
                DeflateFlush::SyncFlush,
            )
            .map_err(|_| DeflateError::Compress)?;
        consumed += (stream.total_in() - in0) as usize;
        produced += (stream.total_out() - out0) as usize;
        let room = out.len() - start - produced;
        // A sync flush is complete once zlib returns with output space left.
        if consumed == input.len() && room > 0 {
            break;
        }
        if room == 0 {
            out.resize(out.len() + 1024 + input.len() / 4, 0);
        }
    }
    out.truncate(start + produced);
    Ok(())
}

/// The receiving side's decompressor.
pub(crate) struct Decompressor {
    window_bits: u8,
    takeover: bool,
    own: Option<Held<Inflate>>,
    gauges: Option<Arc<dyn Stats>>,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("window_bits", &self.window_bits)
            .field("takeover", &self.takeover)
            .field("holds_state", &self.own.is_some())
            .finish()
    }
}

impl Decompressor {
    pub(crate) fn new(window_bits: u8, takeover: bool) -> Self {
        Self {
            // A wider window inflates anything a narrower one produced; zlib's smallest
            // raw window is 9 bits.
            window_bits: window_bits.max(9),
            takeover,
            own: None,
            gauges: None,
        }
    }

    /// Counts the stream it holds in `stats`.
    pub(crate) fn count_in(&mut self, gauges: Arc<dyn Stats>) {
        self.gauges = Some(gauges);
    }

    /// Whether this connection holds a zlib stream now.
    pub(crate) fn holds_state(&self) -> bool {
        self.own.is_some()
    }

    /// The message `compressed` inflates to, or [`DeflateError::TooBig`] as soon as it
    /// passes `limit` bytes (so a bomb costs at most `limit` bytes of memory).
    pub(crate) fn inflate(
        &mut self,
        compressed: &mut Vec<u8>,
        limit: usize,
    ) -> Result<Vec<u8>, DeflateError> {
        compressed.extend_from_slice(&TAIL);
        if self.takeover {
            let (bits, gauges) = (self.window_bits, self.gauges.as_ref());
            let held = self
                .own
                .get_or_insert_with(|| Held::new(Box::new(Inflate::new(false, bits)), gauges));
            inflate(&mut held.stream, compressed, limit)
        } else {
            SHARED_INFLATE.with(|cell| {
                let mut shared = cell.borrow_mut();
                let stream = shared.get_or_insert_with(|| Box::new(Inflate::new(false, 15)));
                let done = inflate(stream, compressed, limit);
                stream.reset(false);
                done
            })
        }
    }
}

fn inflate(stream: &mut Inflate, input: &[u8], limit: usize) -> Result<Vec<u8>, DeflateError> {
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut produced = 0;
    loop {
        if produced == out.len() {
            if out.len() > limit {
                stream.reset(false);
                return Err(DeflateError::TooBig);
            }
            let grown = (out.len() * 2).max(4096).min(limit.saturating_add(1));
            out.resize(grown.max(out.len() + 1), 0);
        }
        let (in0, out0) = (stream.total_in(), stream.total_out());
        let status = stream
            .decompress(
                &input[consumed..],
                &mut out[produced..],
                InflateFlush::SyncFlush,
            )
            .map_err(|_| {
                stream.reset(false);
                DeflateError::Corrupt
            });
        let status = status?;
        let (took, gave) = (
            (stream.total_in() - in0) as usize,
            (stream.total_out() - out0) as usize,
        );
        consumed += took;
        produced += gave;
        if status == Status::StreamEnd {
            // The sender ended its stream (BFINAL); its next message starts a new one.
            stream.reset(false);
            break;
        }
        if consumed == input.len() && produced < out.len() {
            break;
        }
        if took == 0 && gave == 0 && produced < out.len() {
            stream.reset(false);
            return Err(DeflateError::Corrupt);
        }
    }
    if produced > limit {
        stream.reset(false);
        return Err(DeflateError::TooBig);
    }
    out.truncate(produced);
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// zlib's usual settings, for the deflate tests.
    pub(crate) const PARAMS: Params = Params {
        level: 6,
        window_bits: 15,
        mem_level: 8,
    };

    fn event(i: u32) -> Vec<u8> {
        format!(r#"{{"id":"1","type":"next","payload":{{"data":{{"tick":{{"n":{i}}}}}}}}}"#)
            .into_bytes()
    }

    #[test]
    fn round_trip_with_and_without_takeover() {
        for takeover in [true, false] {
            let mut c = Compressor::new(PARAMS, takeover);
            let mut d = Decompressor::new(15, takeover);
            let mut sizes = Vec::new();
            for i in 0..20 {
                let mut wire = Vec::new();
                c.compress(&event(i), true, &mut wire).unwrap();
                sizes.push(wire.len());
                assert_eq!(d.inflate(&mut wire, 1 << 20).unwrap(), event(i));
            }
            assert_eq!(c.holds_state(), takeover);
            assert_eq!(d.holds_state(), takeover);
            c.tick();
            assert_eq!(c.holds_state(), takeover, "used since the last tick");
            c.tick();
            assert!(!c.holds_state(), "a whole interval unused frees it");
            // And the peer inflates what comes next, from a fresh stream, all the same.
            let mut wire = Vec::new();
            c.compress(&event(99), true, &mut wire).unwrap();
            assert_eq!(d.inflate(&mut wire, 1 << 20).unwrap(), event(99));
            if takeover {
                // Later events reuse the earlier ones' text.
                assert!(sizes[10] * 2 < event(10).len(), "{sizes:?}");
            }
        }
    }

    #[test]
    fn protocol_chatter_allocates_nothing() {
        let mut c = Compressor::new(PARAMS, true);
        let mut d = Decompressor::new(15, true);
        for small in [&br#"{"type":"connection_ack"}"#[..], br#"{"type":"ka"}"#] {
            let mut wire = Vec::new();
            // Compressed alone they do not shrink, so they go out as they are.
            assert!(!c.compress(small, true, &mut wire).unwrap());
            assert!(wire.is_empty());
            assert!(!c.holds_state(), "{} bytes", small.len());
        }
        let mut wire = Vec::new();
        c.compress(&event(1), true, &mut wire).unwrap();
        assert!(c.holds_state(), "an event makes the connection active");
        // Small messages go through its stream from then on (one history for the peer).
        let mut small = Vec::new();
        c.compress(br#"{"type":"pong"}"#, true, &mut small).unwrap();
        assert_eq!(d.inflate(&mut wire, 1024).unwrap(), event(1));
        assert_eq!(d.inflate(&mut small, 1024).unwrap(), br#"{"type":"pong"}"#);
    }

    #[test]
    fn empty_message_and_fragments() {
        let mut c = Compressor::new(PARAMS, false);
        let mut wire = Vec::new();
        // Alone, neither an empty message nor a short one gets smaller: sent as it is.
        assert!(!c.compress(b"", true, &mut wire).unwrap());
        assert!(!c.compress(br#"{"type":"pong"}"#, true, &mut wire).unwrap());
        assert!(wire.is_empty());
        let mut d = Decompressor::new(15, false);
        // An empty compressed message is one empty block.
        let mut takeover = Compressor::new(PARAMS, true);
        let mut first = Vec::new();
        takeover.compress(&event(0), true, &mut first).unwrap();
        let mut empty = Vec::new();
        assert!(takeover.compress(b"", true, &mut empty).unwrap());
        assert_eq!(empty, [0]);
        let mut dt = Decompressor::new(15, true);
        assert_eq!(dt.inflate(&mut first, 100).unwrap(), event(0));
        assert_eq!(dt.inflate(&mut empty, 10).unwrap(), b"");
        // A message compressed in two fragments inflates whole.
        let mut wire = Vec::new();
        c.compress(b"hello ", false, &mut wire).unwrap();
        assert!(c.holds_state(), "a fragmented message keeps its own stream");
        c.compress(b"world", true, &mut wire).unwrap();
        assert!(!c.holds_state());
        assert_eq!(d.inflate(&mut wire, 100).unwrap(), b"hello world");
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let mut c = Compressor::new(PARAMS, false);
        let mut wire = Vec::new();
        c.compress(&vec![b'a'; 10 << 20], true, &mut wire).unwrap();
        assert!(
            wire.len() < 20 << 10,
            "10 MiB of one byte compresses to {}",
            wire.len()
        );
        let mut d = Decompressor::new(15, false);
        assert_eq!(
            d.inflate(&mut wire.clone(), 64 << 10),
            Err(DeflateError::TooBig)
        );
        // The shared stream was reset: the next message inflates.
        let fine = b"fine fine fine fine fine fine fine fine";
        let mut ok = Vec::new();
        assert!(c.compress(fine, true, &mut ok).unwrap());
        assert_eq!(d.inflate(&mut ok, 64).unwrap(), fine);
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut d = Decompressor::new(15, false);
        assert_eq!(
            d.inflate(&mut vec![0xff; 32], 1024),
            Err(DeflateError::Corrupt)
        );
    }
}
