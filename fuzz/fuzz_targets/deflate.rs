//! permessage-deflate's frame rewriter: arbitrary bytes from a peer never panic it nor
//! make it hold more than the message limit, and any sequence of frames our WebSocket
//! writes arrives at the peer's WebSocket byte for byte, however the writes are cut.
#![no_main]

use std::io::{Cursor, Read, Write};

use subscope_deflate::{DeflateConfig, Deflated, Side, negotiate};

const LIMIT: usize = 4096;

fn frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let config = DeflateConfig::new()
        .client_no_context_takeover(flags & 1 == 0)
        .server_no_context_takeover(flags & 2 != 0)
        .level(flags >> 4);
    let offer = if flags & 4 != 0 {
        "permessage-deflate; client_max_window_bits=9"
    } else {
        "permessage-deflate; client_max_window_bits"
    };
    let Some(agreed) = negotiate([offer], &config) else {
        return;
    };

    // A hostile peer: whatever it sends, reading ends or fails, within the limit.
    let mut inbound = Deflated::new(Cursor::new(rest), Side::Server, &agreed, &config, LIMIT);
    let mut buf = [0u8; 700];
    while let Ok(n) = inbound.read(&mut buf) {
        if n == 0 {
            break;
        }
    }

    // Our frames, from the input's pieces: through our compressor and the peer's
    // decompressor, unchanged.
    let mut plain = Vec::new();
    for (i, piece) in rest.chunks(37 + usize::from(flags & 0x0f) * 50).enumerate() {
        frame(&mut plain, if i % 5 == 4 { 9 } else { 1 }, piece);
    }
    let mut server = Deflated::new(Vec::new(), Side::Server, &agreed, &config, LIMIT);
    let cut = 1 + usize::from(flags) % 97;
    for piece in plain.chunks(cut) {
        server.write_all(piece).expect("write");
    }
    server.flush().expect("flush");
    let wire = server.into_inner();
    let mut client = Deflated::new(Cursor::new(wire), Side::Client, &agreed, &config, 1 << 20);
    let mut back = Vec::new();
    client.read_to_end(&mut back).expect("inflate our own frames");
    assert_eq!(back, plain);
});
