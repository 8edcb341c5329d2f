//! What permessage-deflate adds to a connection's heap, at every instant between
//! messages (issue: a compressed connection costs at most 4 KiB more than a plain one).
//!
//! The server side of [`Deflated`] over the in-memory pipe, fed the frames our WebSocket
//! writes: small events, record-like 1 KiB events, chatter. After every frame the heap the
//! connection holds is measured with dhat (the pipe's own buffers, which stand in for the
//! kernel's, are left out; the per-thread zlib stream is made before measuring, as every
//! connection on the thread shares it). The default must stay within 4 KiB at every one of
//! those instants; a zlib stream of the connection's own ([`Context::Stream`]) is measured
//! the same way and must show it, so the measurement can see what it bounds.
//!
//! `cargo test -p subscope-testbench --features dhat-heap --test deflate_heap -- --nocapture`

use futures_lite::AsyncWriteExt;
use futures_lite::future::block_on;
use subscope::deflate::{Context, DeflateConfig, Deflated, Side, negotiate};
use subscope_testbench::Pipe;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// One unmasked text frame, as the server's WebSocket writes it.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// The messages one connection sends: an ack, then events of both kinds and chatter.
fn messages() -> Vec<Vec<u8>> {
    let mut all = vec![br#"{"type":"connection_ack"}"#.to_vec()];
    for i in 0..120 {
        let text = match i % 4 {
            0 | 1 => format!(
                r#"{{"id":"{}","type":"next","payload":{{"data":{{"messages":"event {i}"}}}}}}"#,
                i % 3
            ),
            2 => {
                let fields: String = (0..24)
                    .map(|f| format!(r#""field{f}":"value {} of {i}","#, f * 7 + i))
                    .collect();
                format!(
                    r#"{{"id":"r","type":"next","payload":{{"data":{{"record":{{{fields}"n":{i}}}}}}}}}"#
                )
            }
            _ => r#"{"type":"pong"}"#.to_owned(),
        };
        all.push(text.into_bytes());
    }
    all
}

fn heap(pipe: &Pipe) -> usize {
    dhat::HeapStats::get()
        .curr_bytes
        .saturating_sub(pipe.buffer_capacity())
}

/// The most heap a compressed connection held at any instant between its messages,
/// beyond what it held before it existed, and what it left behind once dropped.
fn peak_between_messages(config: &DeflateConfig, frames: &[Vec<u8>]) -> (usize, usize) {
    let agreed = negotiate(["permessage-deflate; client_max_window_bits"], config)
        .expect("the offer is accepted");
    let pipe = Pipe::new();
    let base = heap(&pipe);
    let mut conn = Deflated::new(pipe.clone(), Side::Server, &agreed, config, 1 << 20);
    let mut peak = 0;
    for f in frames {
        block_on(conn.write_all(f)).expect("write");
        block_on(conn.flush()).expect("flush");
        let wire = pipe.client_read();
        assert!(!wire.is_empty(), "the frame went out");
        peak = peak.max(heap(&pipe).saturating_sub(base));
    }
    drop(conn);
    (peak, heap(&pipe).saturating_sub(base))
}

#[test]
fn a_compressed_connection_holds_at_most_4_kib_more_at_every_instant() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let frames: Vec<Vec<u8>> = messages().iter().map(|m| frame(m)).collect();
    let default = DeflateConfig::new();
    let stream = DeflateConfig::new().context(Context::Stream);
    // Warm the thread: its shared zlib stream and scratch buffer exist from here on.
    peak_between_messages(&default, &frames);
    let mut peaks = Vec::new();
    for config in [
        default,
        stream,
        DeflateConfig::new().server_no_context_takeover(true),
    ] {
        let (peak, left) = peak_between_messages(&config, &frames);
        assert_eq!(left, 0, "{config:?}: everything came back when it dropped");
        peaks.push(peak);
    }
    let [recent, own, alone] = peaks[..] else {
        unreachable!()
    };
    println!(
        "peak heap between messages: default {:.2} KiB, no context takeover {:.2} KiB, \
         own zlib stream {:.2} KiB",
        recent as f64 / 1024.0,
        alone as f64 / 1024.0,
        own as f64 / 1024.0
    );
    assert!(recent <= 4096, "{recent} bytes with the default settings");
    assert!(alone <= recent, "{alone} bytes keeping no context");
    assert!(
        own > 64 * 1024,
        "a connection's own stream shows: {own} bytes"
    );
}
