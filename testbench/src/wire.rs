//! The client's side of RFC 6455 framing, just enough to play a client by hand: masked
//! frames out (whole, fragmented or batched), unmasked server frames in.

/// A frame as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame (the server never fragments, so one frame is one message).
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A ping control frame.
    Ping(Vec<u8>),
    /// A pong control frame.
    Pong(Vec<u8>),
    /// A close frame with its code and reason, if it carried one.
    Close(Option<(u16, String)>),
}

impl Frame {
    /// The text frame parsed as JSON, if it is one.
    pub fn json(&self) -> Option<serde_json::Value> {
        match self {
            Self::Text(t) => serde_json::from_str(t).ok(),
            _ => None,
        }
    }
}

/// Opcodes of RFC 6455 section 5.2.
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// Text.
    pub const TEXT: u8 = 0x1;
    /// Binary.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One masked client frame.
pub fn encode(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(opcode | if fin { 0x80 } else { 0 });
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A masked text frame.
pub fn text(text: &str) -> Vec<u8> {
    encode(opcode::TEXT, text.as_bytes(), true)
}

/// A masked close frame with a code and reason.
pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    encode(opcode::CLOSE, &payload, true)
}

/// A text message split into `pieces` fragments (first TEXT, then CONTINUATION frames).
pub fn fragmented(text: &str, pieces: usize) -> Vec<u8> {
    let bytes = text.as_bytes();
    let size = bytes.len().div_ceil(pieces.max(1)).max(1);
    let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
    let last = chunks.len().saturating_sub(1);
    chunks
        .iter()
        .enumerate()
        .flat_map(|(i, chunk)| {
            let op = if i == 0 {
                opcode::TEXT
            } else {
                opcode::CONTINUATION
            };
            encode(op, chunk, i == last)
        })
        .collect()
}

/// Takes every complete server frame off the front of `buf`, leaving a partial one.
pub fn decode_all(buf: &mut Vec<u8>) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some((frame, used)) = decode_one(&buf[at..]) {
        frames.push(frame);
        at += used;
    }
    buf.drain(..at);
    frames
}

fn decode_one(buf: &[u8]) -> Option<(Frame, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "server frames are never masked");
    let (len, header) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 10)
        }
        n => (u64::from(n), 2),
    };
    let end = header + usize::try_from(len).ok()?;
    let payload = buf.get(header..end)?.to_vec();
    assert_ne!(b0 & 0x80, 0, "the server does not fragment");
    let frame = match b0 & 0x0f {
        opcode::TEXT => Frame::Text(String::from_utf8(payload).expect("server text is UTF-8")),
        opcode::BINARY => Frame::Binary(payload),
        opcode::PING => Frame::Ping(payload),
        opcode::PONG => Frame::Pong(payload),
        opcode::CLOSE if payload.len() >= 2 => Frame::Close(Some((
            u16::from_be_bytes([payload[0], payload[1]]),
            String::from_utf8_lossy(&payload[2..]).into_owned(),
        ))),
        opcode::CLOSE => Frame::Close(None),
        other => panic!("unexpected opcode {other:#x}"),
    };
    Some((frame, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_every_size_class_round_trip_through_the_header() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let frame = encode(opcode::TEXT, &vec![b'a'; len], true);
            let header = match len {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(frame.len(), header + 4 + len, "{len}");
        }
    }
}
