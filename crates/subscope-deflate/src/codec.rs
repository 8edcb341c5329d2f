//! The frame rewriter: permessage-deflate as a byte-stream transformation under an
//! unmodified WebSocket implementation.
//!
//! [`Inbound`] reads the peer's frames and turns each compressed message into plain frames
//! (RSV1 clear), passing every other frame through byte for byte. [`Outbound`] reads the
//! frames our WebSocket writes and compresses each data frame's payload (RSV1 on a
//! message's first frame). tungstenite above keeps all its checks and limits: it sees an
//! uncompressed connection. Plain state machines: bytes in, bytes out, no I/O.

use std::sync::Arc;

use super::DeflateError;
use super::frame::{self, Header, MAX_HEADER};
use super::zlib::{Compressor, Decompressor};
use crate::Stats;

/// The largest frame [`Inbound`] hands up: an inflated message is split into frames of at
/// most this size, so a message under the limit never trips a frame-size limit.
const FRAME_CHUNK: usize = 64 * 1024;

/// A partly read frame header.
#[derive(Debug, Default)]
struct Stash {
    bytes: [u8; MAX_HEADER],
    len: usize,
}

impl Stash {
    /// Takes header bytes from the front of `input`; the header and its bytes once
    /// complete, or `None` with all of `input` consumed.
    fn feed(&mut self, input: &mut &[u8]) -> Option<(Header, [u8; MAX_HEADER], usize)> {
        let take = (MAX_HEADER - self.len).min(input.len());
        self.bytes[self.len..self.len + take].copy_from_slice(&input[..take]);
        match frame::parse(&self.bytes[..self.len + take]) {
            Some((header, n)) => {
                *input = &input[n - self.len..];
                self.len = 0;
                Some((header, self.bytes, n))
            }
            None => {
                self.len += take;
                *input = &input[take..];
                None
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes go through unchanged.
    Pass,
    /// Payload bytes are (unmasked and) collected for the codec.
    Collect,
}

#[derive(Debug)]
struct Frame {
    mode: Mode,
    remaining: u64,
    mask: Option<[u8; 4]>,
    /// Payload bytes seen so far (the mask's phase).
    seen: usize,
    fin: bool,
    opcode: u8,
    /// A data frame passed through: its FIN ends a plain message.
    plain_data: bool,
}

impl Frame {
    /// Takes the next piece of the payload from the front of `input`: the piece, and where
    /// in the payload it starts (the mask's phase).
    fn take<'a>(&mut self, input: &mut &'a [u8]) -> (&'a [u8], usize) {
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let (chunk, rest) = input.split_at(n);
        *input = rest;
        let at = self.seen;
        self.seen += n;
        self.remaining -= n as u64;
        (chunk, at)
    }

    /// Appends a piece of the payload that starts at payload byte `at` to `buf`, unmasked.
    fn collect(&self, buf: &mut Vec<u8>, chunk: &[u8], at: usize) {
        let start = buf.len();
        buf.extend_from_slice(chunk);
        if let Some(key) = self.mask {
            frame::apply_mask(&mut buf[start..], key, at);
        }
    }
}

/// What message the peer is in the middle of.
#[derive(Debug)]
enum InMessage {
    None,
    Plain,
    Compressed { opcode: u8, data: Vec<u8> },
}

/// The peer's frames, compressed messages inflated.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// Frames we hand up carry a (zero) mask: the server side's WebSocket expects the
    /// client's frames masked.
    mask_up: bool,
    limit: usize,
    stash: Stash,
    frame: Option<Frame>,
    message: InMessage,
    decompressor: Decompressor,
}

impl Inbound {
    pub(crate) fn new(mask_up: bool, limit: usize, decompressor: Decompressor) -> Self {
        Self {
            mask_up,
            limit,
            stash: Stash::default(),
            frame: None,
            message: InMessage::None,
            decompressor,
        }
    }

    /// Whether a zlib stream is held now.
    pub(crate) fn holds_state(&self) -> bool {
        self.decompressor.holds_state()
    }

    /// Counts the stream held in `stats`.
    pub(crate) fn count_in(&mut self, gauges: Arc<dyn Stats>) {
        self.decompressor.count_in(gauges);
    }

    /// Consumes all of `input`, appending what the WebSocket above should read to `up`.
    pub(crate) fn decode(
        &mut self,
        mut input: &[u8],
        up: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        while !input.is_empty() {
            let Some(frame) = &mut self.frame else {
                if let Some((header, bytes, n)) = self.stash.feed(&mut input) {
                    self.start(header, &bytes[..n], up)?;
                }
                continue;
            };
            let (chunk, at) = frame.take(&mut input);
            match frame.mode {
                Mode::Pass => up.extend_from_slice(chunk),
                Mode::Collect => {
                    let InMessage::Compressed { data, .. } = &mut self.message else {
                        unreachable!("collecting only inside a compressed message")
                    };
                    frame.collect(data, chunk, at);
                }
            }
            if frame.remaining == 0 {
                self.end(up)?;
            }
        }
        Ok(())
    }

    fn start(&mut self, h: Header, bytes: &[u8], up: &mut Vec<u8>) -> Result<(), DeflateError> {
        let collect = if !h.is_data() || h.rsv23 {
            // Control frames (and anything odd) go up as they are: tungstenite judges them.
            false
        } else {
            match (&mut self.message, h.opcode) {
                (InMessage::Compressed { .. }, 1 | 2) => {
                    return Err(DeflateError::Protocol(
                        "a message began before the compressed one ended",
                    ));
                }
                (_, 1 | 2) if h.rsv1 => {
                    self.check(h.len, 0)?;
                    self.message = InMessage::Compressed {
                        opcode: h.opcode,
                        data: Vec::new(),
                    };
                    true
                }
                (InMessage::Compressed { data, .. }, _) => {
                    if h.rsv1 {
                        return Err(DeflateError::Protocol("RSV1 on a continuation frame"));
                    }
                    let have = data.len();
                    self.check(h.len, have)?;
                    true
                }
                (message, 1 | 2) => {
                    *message = InMessage::Plain;
                    false
                }
                _ => false,
            }
        };
        if !collect {
            up.extend_from_slice(bytes);
        }
        self.frame = Some(Frame {
            mode: if collect { Mode::Collect } else { Mode::Pass },
            remaining: h.len,
            mask: h.mask,
            seen: 0,
            fin: h.fin,
            opcode: h.opcode,
            plain_data: !collect && h.is_data() && !h.rsv23,
        });
        if h.len == 0 {
            self.end(up)?;
        }
        Ok(())
    }

    /// A compressed message cannot be much larger than what it inflates to (stored blocks
    /// add 5 bytes per 64 KiB): refuse one that is, before collecting it.
    fn check(&self, frame_len: u64, have: usize) -> Result<(), DeflateError> {
        let slack = self.limit / 64 + 1024;
        let most = self.limit.saturating_add(slack) as u64;
        if frame_len.saturating_add(have as u64) > most {
            return Err(DeflateError::TooBig);
        }
        Ok(())
    }

    fn end(&mut self, up: &mut Vec<u8>) -> Result<(), DeflateError> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        if !frame.fin {
            return Ok(());
        }
        if frame.plain_data {
            if matches!(self.message, InMessage::Plain) {
                self.message = InMessage::None;
            }
            return Ok(());
        }
        if frame.mode == Mode::Collect {
            let InMessage::Compressed { opcode, mut data } =
                std::mem::replace(&mut self.message, InMessage::None)
            else {
                unreachable!("collecting only inside a compressed message")
            };
            let plain = self.decompressor.inflate(&mut data, self.limit)?;
            drop(data);
            self.emit(opcode, &plain, up);
        }
        Ok(())
    }

    /// Hands a whole message up as plain frames.
    fn emit(&self, opcode: u8, payload: &[u8], up: &mut Vec<u8>) {
        let mask = self.mask_up.then_some([0; 4]);
        up.reserve(payload.len() + MAX_HEADER * (payload.len() / FRAME_CHUNK + 1));
        let mut chunks = payload.chunks(FRAME_CHUNK).peekable();
        if chunks.peek().is_none() {
            frame::write(up, true, false, opcode, mask, 0);
            return;
        }
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let fin = chunks.peek().is_none();
            let op = if first { opcode } else { 0 };
            first = false;
            frame::write(up, fin, false, op, mask, chunk.len());
            up.extend_from_slice(chunk);
        }
    }
}

/// Our WebSocket's frames, data frames compressed.
#[derive(Debug)]
pub(crate) struct Outbound {
    stash: Stash,
    frame: Option<Frame>,
    /// The current compressed frame's payload, when it arrives in pieces.
    payload: Vec<u8>,
    /// Inside a fragmented message whose first frame carried RSV1.
    in_message: bool,
    compressor: Compressor,
    gauges: Option<Arc<dyn Stats>>,
}

thread_local! {
    /// Where a frame's payload is compressed before its header (which states the length)
    /// is written: one per thread, so an idle connection keeps none.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Outbound {
    pub(crate) fn new(compressor: Compressor) -> Self {
        Self {
            stash: Stash::default(),
            frame: None,
            payload: Vec::new(),
            in_message: false,
            compressor,
            gauges: None,
        }
    }

    /// Counts what is compressed, and the stream held, in `stats`.
    pub(crate) fn count_in(&mut self, gauges: Arc<dyn Stats>) {
        self.compressor.count_in(Arc::clone(&gauges));
        self.gauges = Some(gauges);
    }

    /// Whether a zlib stream is held now.
    pub(crate) fn holds_state(&self) -> bool {
        self.compressor.holds_state()
    }

    /// The bytes of compression context kept between messages, beside any stream.
    pub(crate) fn kept_bytes(&self) -> usize {
        self.compressor.kept_bytes()
    }

    /// Consumes all of `input` (frames our WebSocket wrote), appending the wire bytes to
    /// `out`.
    pub(crate) fn encode(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        while !input.is_empty() {
            let Some(frame) = &mut self.frame else {
                let whole_header = self.stash.len == 0;
                let Some((h, bytes, n)) = self.stash.feed(&mut input) else {
                    continue;
                };
                let compress = h.is_data() && !h.rsv1 && !h.rsv23;
                if !compress {
                    out.extend_from_slice(&bytes[..n]);
                }
                if h.opcode == 9 {
                    // Our ping: a keepalive interval has passed.
                    self.compressor.tick();
                }
                let len = usize::try_from(h.len).unwrap_or(usize::MAX);
                if compress && whole_header && h.mask.is_none() && input.len() >= len {
                    // The common case: the whole frame is here, unmasked (we are the
                    // server); compress it in place.
                    let (payload, rest) = input.split_at(len);
                    input = rest;
                    self.finish(h.opcode, h.fin, None, payload, out)?;
                    continue;
                }
                self.frame = Some(Frame {
                    mode: if compress { Mode::Collect } else { Mode::Pass },
                    remaining: h.len,
                    mask: h.mask,
                    seen: 0,
                    fin: h.fin,
                    opcode: h.opcode,
                    plain_data: false,
                });
                if h.len == 0 {
                    self.end_frame(out)?;
                }
                continue;
            };
            let (chunk, at) = frame.take(&mut input);
            match frame.mode {
                Mode::Pass => out.extend_from_slice(chunk),
                Mode::Collect => frame.collect(&mut self.payload, chunk, at),
            }
            if frame.remaining == 0 {
                self.end_frame(out)?;
            }
        }
        Ok(())
    }

    fn end_frame(&mut self, out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        if frame.mode == Mode::Collect {
            let payload = std::mem::take(&mut self.payload);
            self.finish(frame.opcode, frame.fin, frame.mask, &payload, out)?;
            if !frame.fin {
                // More of this message follows: keep the buffer for it.
                self.payload = payload;
                self.payload.clear();
            }
        }
        Ok(())
    }

    /// Writes one data frame with `payload` compressed.
    fn finish(
        &mut self,
        opcode: u8,
        fin: bool,
        mask: Option<[u8; 4]>,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            scratch.clear();
            let compressed = self.compressor.compress(payload, fin, &mut scratch)?;
            let body: &[u8] = if compressed { &scratch } else { payload };
            if let Some(gauges) = &self.gauges {
                gauges.compressed(payload.len(), body.len());
            }
            let first = !self.in_message && opcode != 0;
            self.in_message = !fin;
            frame::write(out, fin, first && compressed, opcode, mask, body.len());
            let at = out.len();
            out.extend_from_slice(body);
            if let Some(key) = mask {
                frame::apply_mask(&mut out[at..], key, 0);
            }
            if scratch.capacity() > FRAME_CHUNK {
                *scratch = Vec::new();
            }
            Ok::<_, DeflateError>(())
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zlib::Mode;
    use crate::zlib::tests::PARAMS;

    /// A server's outbound and a client's inbound: what the server's WebSocket writes
    /// arrives at the client's WebSocket unchanged, however the bytes are cut.
    #[test]
    fn server_frames_survive_compression_in_any_cut() {
        let mut plain = Vec::new();
        for i in 0..30 {
            let text = format!(r#"{{"type":"next","id":"{i}","payload":{{"data":{{"n":{i}}}}}}}"#);
            frame::write(&mut plain, true, false, 1, None, text.len());
            plain.extend_from_slice(text.as_bytes());
            if i % 7 == 0 {
                frame::write(&mut plain, true, false, 9, None, 0); // a ping
            }
        }
        frame::write(&mut plain, true, false, 1, None, 0); // an empty message
        for cut in [1, 3, 17, 4096] {
            for takeover in [true, false] {
                let mut out = Outbound::new(Compressor::new(
                    PARAMS,
                    if takeover { Mode::Stream } else { Mode::Alone },
                ));
                let mut wire = Vec::new();
                for piece in plain.chunks(cut) {
                    out.encode(piece, &mut wire).unwrap();
                }
                if takeover {
                    assert!(
                        wire.len() * 2 < plain.len(),
                        "{} of {}",
                        wire.len(),
                        plain.len()
                    );
                }
                let mut inb = Inbound::new(false, 1 << 20, Decompressor::new(15, takeover));
                let mut up = Vec::new();
                for piece in wire.chunks(cut) {
                    inb.decode(piece, &mut up).unwrap();
                }
                assert_eq!(up, plain, "cut {cut}, takeover {takeover}");
            }
        }
    }

    /// A client's masked, fragmented message: the server hands it up masked with a zero
    /// key and whole.
    #[test]
    fn masked_fragments_from_a_client() {
        let key = [7, 1, 2, 3];
        let mut out = Outbound::new(Compressor::new(PARAMS, Mode::Alone));
        let mut wire = Vec::new();
        for (i, part) in [&b"{\"type\":"[..], b"\"ping\"}"].iter().enumerate() {
            let mut frame = Vec::new();
            let (op, fin) = if i == 0 { (1, false) } else { (0, true) };
            frame::write(&mut frame, fin, false, op, Some(key), part.len());
            let at = frame.len();
            frame.extend_from_slice(part);
            frame::apply_mask(&mut frame[at..], key, 0);
            out.encode(&frame, &mut wire).unwrap();
        }
        let (first, _) = frame::parse(&wire).unwrap();
        assert!(first.rsv1 && !first.fin && first.mask == Some(key));
        let mut inb = Inbound::new(true, 1024, Decompressor::new(15, false));
        let mut up = Vec::new();
        inb.decode(&wire, &mut up).unwrap();
        let (h, n) = frame::parse(&up).unwrap();
        assert_eq!(
            (h.fin, h.rsv1, h.opcode, h.mask),
            (true, false, 1, Some([0; 4]))
        );
        assert_eq!(&up[n..], b"{\"type\":\"ping\"}");
    }

    #[test]
    fn oversized_and_malformed_compressed_messages_fail() {
        let mut inb = Inbound::new(true, 1024, Decompressor::new(15, false));
        let mut wire = Vec::new();
        frame::write(&mut wire, true, true, 1, Some([0; 4]), 1 << 20);
        assert_eq!(
            inb.decode(&wire, &mut Vec::new()),
            Err(DeflateError::TooBig)
        );

        let mut inb = Inbound::new(true, 1024, Decompressor::new(15, false));
        let mut wire = Vec::new();
        frame::write(&mut wire, false, true, 1, Some([0; 4]), 1);
        wire.push(0);
        frame::write(&mut wire, true, true, 0, Some([0; 4]), 1);
        wire.push(0);
        assert!(matches!(
            inb.decode(&wire, &mut Vec::new()),
            Err(DeflateError::Protocol(_))
        ));
    }

    #[test]
    fn plain_frames_and_control_frames_pass_untouched() {
        let mut raw = Vec::new();
        frame::write(&mut raw, false, false, 1, Some([1, 2, 3, 4]), 3);
        raw.extend_from_slice(b"abc");
        frame::write(&mut raw, true, false, 10, Some([1, 2, 3, 4]), 2);
        raw.extend_from_slice(b"xy");
        frame::write(&mut raw, true, false, 0, Some([1, 2, 3, 4]), 1);
        raw.push(b'd');
        frame::write(&mut raw, true, true, 9, None, 0); // RSV1 on a ping: tungstenite refuses it
        let mut inb = Inbound::new(true, 1024, Decompressor::new(15, false));
        let mut up = Vec::new();
        for b in raw.chunks(1) {
            inb.decode(b, &mut up).unwrap();
        }
        assert_eq!(up, raw);
        assert!(!inb.holds_state());
    }
}
