//! Per-connection memory under a flood, measured with dhat against the bound the config
//! states ([`subscope::Config::connection_buffer_bound`]), with the rate limit off.
//!
//! dhat is this binary's global allocator and allows one profiler per process, so one test
//! runs every scenario. Run with `cargo test -p subscope-testbench --features dhat-heap
//! --test memory -- --nocapture` to see the figures.

use serde_json::json;
use subscope::{Config, Subprotocol};
use subscope_testbench::{Bench, wire};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Heap bytes the server holds now: everything live minus the pipe's own buffers (the
/// "kernel" side of the socket, which the test also allocates).
fn server_bytes(b: &Bench) -> usize {
    dhat::HeapStats::get()
        .curr_bytes
        .saturating_sub(b.pipe.buffer_capacity())
}

/// The most a flood writes: 64 MiB, far past the 1 MiB window plus what the server may
/// hold, so a server that never stops reading fails quickly.
fn cap(message: &[u8]) -> usize {
    64 * 1024 * 1024 / message.len()
}

/// Floods `message` until the server stops reading; returns the highest server heap seen
/// above `base` and the messages written.
fn flood(b: &mut Bench, message: &[u8], base: usize) -> (usize, usize) {
    let (mut peak, mut sent, mut idle) = (0, 0, 0);
    while idle < 3 && sent < cap(message) {
        let before = b.pipe.consumed();
        while b.pipe.client_write(message) == message.len() {
            sent += 1;
            if sent % 16 == 0 {
                b.poll();
                peak = peak.max(server_bytes(b).saturating_sub(base));
            }
        }
        b.poll();
        peak = peak.max(server_bytes(b).saturating_sub(base));
        idle = if b.pipe.consumed() == before {
            idle + 1
        } else {
            0
        };
    }
    (peak, sent)
}

fn config() -> Config {
    Config::default()
        .inbound_rate(None)
        .keepalive_interval(None)
        .max_message_size(16 * 1024)
        .max_response_size(16 * 1024)
}

#[test]
fn per_connection_memory_stays_within_the_stated_bound_under_floods() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let bound = config().connection_buffer_bound();
    println!("stated bound for this config: {} KiB", bound / 1024);
    let pad = "p".repeat(15 * 1024);

    for protocol in Subprotocol::ALL {
        // Replies the peer never reads: pongs (modern) or connection_errors (legacy).
        let mut b = Bench::builder(protocol).config(config()).build();
        b.init();
        b.pipe.set_inbound_capacity(1024 * 1024);
        let base = server_bytes(&b);
        let message = match protocol {
            Subprotocol::GraphqlWs => wire::text(&json!({"type": "nope", "pad": pad}).to_string()),
            _ => wire::text(&json!({"type": "ping", "payload": {"pad": pad}}).to_string()),
        };
        let (peak, sent) = flood(&mut b, &message, base);
        println!(
            "{protocol}: reply flood of 15 KiB messages, {sent} written before TCP pushed back: \
             server heap +{} KiB (bound {} KiB)",
            peak / 1024,
            bound / 1024
        );
        assert!(
            sent < cap(&message),
            "{protocol}: the server never stopped reading"
        );
        assert!(peak <= bound, "{protocol}: +{peak} bytes > bound {bound}");
        assert!(b.is_running());
    }

    // The default limits, rate limit off, small pings: the figure a default server shows.
    let defaults = Config::default()
        .inbound_rate(None)
        .keepalive_interval(None);
    let mut b = Bench::builder(Subprotocol::GraphqlTransportWs)
        .config(defaults.clone())
        .build();
    b.init();
    b.pipe.set_inbound_capacity(1024 * 1024);
    let base = server_bytes(&b);
    let small = wire::text(r#"{"type":"ping","payload":{"n":1}}"#);
    let (peak, sent) = flood(&mut b, &small, base);
    println!(
        "defaults, ping flood without reading: {sent} pings written before TCP pushed back: \
         server heap +{} KiB (bound {} KiB)",
        peak / 1024,
        defaults.connection_buffer_bound() / 1024
    );
    assert!(
        sent < cap(&small) && peak <= 1024 * 1024,
        "defaults: +{peak} bytes"
    );

    // Messages held behind an on_connect that does not decide.
    let mut b = Bench::builder(Subprotocol::GraphqlTransportWs)
        .config(config())
        .gate_connect()
        .build();
    b.pipe.set_inbound_capacity(1024 * 1024);
    let base = server_bytes(&b);
    b.send(Bench::init_message());
    let ping = wire::text(&json!({"type": "ping", "payload": {"pad": pad}}).to_string());
    let (peak, sent) = flood(&mut b, &ping, base);
    println!(
        "held behind on_connect: {sent} written before TCP pushed back: server heap +{} KiB",
        peak / 1024
    );
    assert!(peak <= bound, "held: +{peak} bytes > bound {bound}");

    // Without the read gate the same floods would grow by what the peer sends: check the
    // figure means something by flooding a reader that does read.
    let mut b = Bench::builder(Subprotocol::GraphqlTransportWs)
        .config(config())
        .build();
    b.init();
    let base = server_bytes(&b);
    for _ in 0..2000 {
        b.pipe.client_write(&ping);
        b.poll();
        // Read and discard, so the client's side holds nothing.
        drop(b.frames());
    }
    let steady = server_bytes(&b).saturating_sub(base);
    println!(
        "a reading peer after 2000 pings: server heap +{} KiB",
        steady / 1024
    );
    assert!(steady <= bound);
}
