//! RFC 6455 frame headers, as much as permessage-deflate needs to rewrite frames: parse a
//! header from the front of a byte slice (without judging it: tungstenite does that),
//! write one, and apply a mask.

/// The longest header: 2 bytes, an 8-byte length and a 4-byte mask key.
pub(crate) const MAX_HEADER: usize = 14;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) rsv1: bool,
    /// RSV2 or RSV3 (no extension of ours uses them).
    pub(crate) rsv23: bool,
    pub(crate) opcode: u8,
    pub(crate) mask: Option<[u8; 4]>,
    pub(crate) len: u64,
}

impl Header {
    /// A text, binary or continuation frame (the frames a message's payload is in).
    pub(crate) fn is_data(&self) -> bool {
        matches!(self.opcode, 0..=2)
    }
}

/// The header at the front of `bytes` and its length, or `None` when more bytes are needed.
pub(crate) fn parse(bytes: &[u8]) -> Option<(Header, usize)> {
    let [b0, b1, rest @ ..] = bytes else {
        return None;
    };
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            let [a, b, ..] = *rest else { return None };
            (u64::from(u16::from_be_bytes([a, b])), 4)
        }
        127 => {
            let eight: [u8; 8] = rest.get(..8)?.try_into().ok()?;
            (u64::from_be_bytes(eight), 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let key: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    let header = Header {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        rsv23: b0 & 0x30 != 0,
        opcode: b0 & 0x0f,
        mask,
        len,
    };
    Some((header, at))
}

/// Appends a header for a `len`-byte payload.
pub(crate) fn write(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: usize,
) {
    let b0 = opcode | if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 };
    let masked = if mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    match len {
        0..=125 => out.push(masked | len as u8),
        126..=0xffff => {
            out.push(masked | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(masked | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// XORs `data` with `key`, `data[0]` being byte `offset` of the payload.
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_at_every_length_form() {
        for (len, mask) in [
            (0, None),
            (125, Some([1, 2, 3, 4])),
            (126, None),
            (65_535, Some([9, 9, 9, 9])),
            (65_536, None),
        ] {
            let mut out = Vec::new();
            write(&mut out, true, true, 1, mask, len);
            let (h, n) = parse(&out).expect("complete");
            assert_eq!(n, out.len());
            assert_eq!((h.fin, h.rsv1, h.rsv23, h.opcode), (true, true, false, 1));
            assert_eq!((h.len, h.mask), (len as u64, mask));
            for cut in 0..out.len() {
                assert_eq!(parse(&out[..cut]), None, "incomplete at {cut}");
            }
        }
    }

    #[test]
    fn masking_is_position_aware() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut whole = *b"Hello";
        apply_mask(&mut whole, key, 0);
        assert_eq!(whole, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 5.7
        let mut parts = *b"Hello";
        let (a, b) = parts.split_at_mut(2);
        apply_mask(a, key, 0);
        apply_mask(b, key, 2);
        assert_eq!(parts, whole);
    }
}
