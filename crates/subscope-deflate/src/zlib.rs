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

/// How the sending side carries context from one message to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every message compressed alone (no context takeover).
    Alone,
    /// The last `n` bytes sent compressed are kept and prime the thread's stream for the
    /// next message.
    Recent(usize),
    /// A stream of the connection's own, from its first message of [`PROMOTE_AT`] bytes.
    Stream,
}

/// The least of the kept text that primes a message: a few small events.
const PRIME_MIN: usize = 512;

/// The sending side's compressor.
///
/// - [`Mode::Recent`]: the connection keeps only the plain text of its last few messages
///   (what the peer's window holds last) and compresses each message with the thread's
///   stream, primed with that text as a dictionary, so back-references reach it as they
///   would in a stream of its own. Between messages it holds those bytes and nothing else.
/// - [`Mode::Stream`]: a connection compresses with its own stream from its first message
///   of [`PROMOTE_AT`] bytes or more, and frees it again when a whole keepalive interval
///   passes without one ([`Compressor::tick`], at each of our pings).
///
/// Starting a fresh stream at any message is always valid: the new stream's
/// back-references reach only its own output and its dictionary, which the peer's window
/// holds last. A message sent uncompressed never enters the peer's window, so it never
/// enters the kept text either.
pub(crate) struct Compressor {
    params: Params,
    mode: Mode,
    /// Our own stream: in [`Mode::Stream`] once active, or while a fragmented message is
    /// open.
    own: Option<Held<Deflate>>,
    /// [`Mode::Recent`]: the tail of what the peer has inflated, at most its `n` bytes.
    recent: Vec<u8>,
    gauges: Option<Arc<dyn Stats>>,
    /// A message was compressed since the last tick.
    used: bool,
    /// Inside a fragmented message: `own` must carry on.
    fragment_open: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("params", &self.params)
            .field("mode", &self.mode)
            .field("holds_state", &self.own.is_some())
            .field("recent", &self.recent.len())
            .finish()
    }
}

impl Compressor {
    pub(crate) fn new(params: Params, mode: Mode) -> Self {
        let mode = match mode {
            // The peer's window holds no more than 2^bits bytes.
            Mode::Recent(n) => match n.min(1 << params.window_bits) {
                0 => Mode::Alone,
                n => Mode::Recent(n),
            },
            other => other,
        };
        Self {
            params,
            mode,
            own: None,
            recent: Vec::new(),
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

    /// The bytes of compression context this connection keeps between messages: its
    /// kept text (a held zlib stream is reported by [`Self::holds_state`]).
    pub(crate) fn kept_bytes(&self) -> usize {
        self.recent.capacity()
    }

    /// One keepalive interval passed (we sent a ping): context unused since the last
    /// tick is freed. The next message then starts afresh, which is always valid.
    pub(crate) fn tick(&mut self) {
        if !self.used && !self.fragment_open {
            self.own = None;
            self.recent = Vec::new();
        }
        self.used = false;
    }

    /// Appends `input` compressed to `out`; `fin` ends the message (its sync-flush tail
    /// is left off, RFC 7692 7.2.1). `Ok(false)`: send the message uncompressed instead
    /// (RSV1 clear), because compressing it did not make it smaller; only a whole message
    /// compressed with the thread's stream can be, since the peer's window must hold
    /// every byte our own stream compressed.
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
            || (self.mode == Mode::Stream && input.len() >= PROMOTE_AT);
        let recent: &[u8] = match self.mode {
            Mode::Recent(_) if !self.fragment_open => {
                // Priming costs a hash insert per byte: only as far back as this message's
                // size suggests the next repeat lies (its predecessor, for record-like
                // events; a few of them for small ones).
                let want = (input.len() + input.len() / 4).max(PRIME_MIN);
                &self.recent[self.recent.len().saturating_sub(want)..]
            }
            _ => &[],
        };
        if own {
            let (params, gauges) = (self.params, self.gauges.as_ref());
            let held = match &mut self.own {
                Some(held) => held,
                slot => {
                    let mut stream = params.build();
                    prime(&mut stream, recent)?;
                    slot.insert(Held::new(stream, gauges))
                }
            };
            deflate(&mut held.stream, input, out)?;
            self.fragment_open = !fin;
            if fin && self.mode != Mode::Stream {
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
                let done = prime(stream, recent).and_then(|()| deflate(stream, input, out));
                stream.reset();
                done
            })?;
        }
        self.used = true;
        if fin {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            }
            if out.len() == start {
                // An empty message still needs a (empty) deflate block.
                out.push(0);
            }
            // In Recent mode an event goes compressed even when it did not shrink (the
            // first one, with nothing kept yet): that puts its text in the peer's window,
            // so the next events can refer to it.
            let seeds = matches!(self.mode, Mode::Recent(_)) && input.len() >= PROMOTE_AT;
            if !own && !seeds && out.len() - start >= input.len() {
                out.truncate(start);
                return Ok(false);
            }
        }
        if let Mode::Recent(n) = self.mode {
            keep_tail(&mut self.recent, input, n);
        }
        Ok(true)
    }
}

/// Primes a fresh stream with the text the peer's window ends with.
fn prime(stream: &mut Deflate, recent: &[u8]) -> Result<(), DeflateError> {
    if recent.is_empty() {
        return Ok(());
    }
    stream
        .set_dictionary(recent)
        .map(drop)
        .map_err(|_| DeflateError::Compress)
}

/// Appends `input` to `kept`, keeping its last `n` bytes; allocates exactly `n` once.
fn keep_tail(kept: &mut Vec<u8>, input: &[u8], n: usize) {
    if kept.capacity() < n {
        kept.reserve_exact(n - kept.len());
    }
    if input.len() >= n {
        kept.clear();
        kept.extend_from_slice(&input[input.len() - n..]);
        return;
    }
    let overflow = (kept.len() + input.len()).saturating_sub(n);
    if overflow > 0 {
        kept.drain(..overflow);
    }
    kept.extend_from_slice(input);
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
            let mut c = Compressor::new(PARAMS, if takeover { Mode::Stream } else { Mode::Alone });
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

    /// The kept text primes the thread's stream: events shrink as with a stream of the
    /// connection's own, the peer inflates them with its context, and the connection holds
    /// only the kept bytes, never a zlib stream.
    #[test]
    fn recent_text_compresses_like_a_stream_and_holds_only_its_bytes() {
        let params = Params {
            level: 1,
            window_bits: 12,
            mem_level: 5,
        };
        let mut recent = Compressor::new(params, Mode::Recent(2048));
        let mut stream = Compressor::new(params, Mode::Stream);
        let mut alone = Compressor::new(params, Mode::Alone);
        let mut d = Decompressor::new(12, true);
        let (mut total_recent, mut total_stream, mut total_alone) = (0, 0, 0);
        for i in 0..50 {
            let mut wire = Vec::new();
            // A message that does not shrink is sent as it is: it never enters the
            // peer's window, so it must not enter the kept text either.
            if i % 10 == 3 {
                assert!(!recent.compress(b"Q7!", true, &mut wire).unwrap());
                assert!(wire.is_empty());
            }
            assert!(recent.compress(&event(i), true, &mut wire).unwrap());
            assert_eq!(
                d.inflate(&mut wire, 1 << 20).unwrap(),
                event(i),
                "event {i}"
            );
            assert!(!recent.holds_state());
            assert!(recent.kept_bytes() <= 2048, "{}", recent.kept_bytes());
            total_recent += wire.len();
            let mut other = Vec::new();
            stream.compress(&event(i), true, &mut other).unwrap();
            total_stream += other.len();
            other.clear();
            if alone.compress(&event(i), true, &mut other).unwrap() {
                total_alone += other.len();
            } else {
                total_alone += event(i).len();
            }
        }
        assert!(
            total_recent < total_stream * 2 && total_recent * 4 < total_alone,
            "recent {total_recent}, stream {total_stream}, alone {total_alone}"
        );
        // A fragmented message carries the context too.
        let mut wire = Vec::new();
        recent.compress(&event(7)[..20], false, &mut wire).unwrap();
        recent.compress(&event(7)[20..], true, &mut wire).unwrap();
        assert!(!recent.holds_state());
        assert_eq!(d.inflate(&mut wire, 1 << 20).unwrap(), event(7));
        // An interval without events frees the kept text; the next event starts afresh.
        recent.tick();
        recent.tick();
        assert_eq!(recent.kept_bytes(), 0);
        let mut wire = Vec::new();
        recent.compress(&event(8), true, &mut wire).unwrap();
        assert_eq!(d.inflate(&mut wire, 1 << 20).unwrap(), event(8));
    }

    #[test]
    fn keep_tail_keeps_the_last_bytes() {
        let mut kept = Vec::new();
        keep_tail(&mut kept, b"abc", 5);
        keep_tail(&mut kept, b"def", 5);
        assert_eq!(kept, b"bcdef");
        keep_tail(&mut kept, b"0123456", 5);
        assert_eq!(kept, b"23456");
        assert_eq!(kept.capacity(), 5);
    }

    #[test]
    fn protocol_chatter_allocates_nothing() {
        let mut c = Compressor::new(PARAMS, Mode::Stream);
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
        let mut c = Compressor::new(PARAMS, Mode::Alone);
        let mut wire = Vec::new();
        // Alone, neither an empty message nor a short one gets smaller: sent as it is.
        assert!(!c.compress(b"", true, &mut wire).unwrap());
        assert!(!c.compress(br#"{"type":"pong"}"#, true, &mut wire).unwrap());
        assert!(wire.is_empty());
        let mut d = Decompressor::new(15, false);
        // An empty compressed message is one empty block.
        let mut takeover = Compressor::new(PARAMS, Mode::Stream);
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
        let mut c = Compressor::new(PARAMS, Mode::Alone);
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
