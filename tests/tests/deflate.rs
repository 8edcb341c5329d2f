//! permessage-deflate on real sockets, every runtime: the negotiation, events compressed
//! on the wire (RSV1, deflate data that inflates to the events), the message size limit
//! applied after inflation (a bomb closes 1009), and corrupt compressed data ending the
//! connection with its subscriptions. The rest of the socket suite runs compressed with
//! `SUBSCOPE_TEST_DEFLATE=1` (`cargo xtask ci` does both runs).

use std::io::{Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::{Value, json};
use subscope::deflate::{Agreed, Context, DeflateConfig, Deflated, Side};
use subscope::{CloseReason, Config};
use subscope_tests::client::deflate_suite;
use subscope_tests::{Client, DEADLINE, TestRuntime, per_runtime, wait_until};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits";
const MODERN: &str = "Sec-WebSocket-Protocol: graphql-transport-ws";

fn deflating(config: Config) -> Config {
    config.deflate(Some(DeflateConfig::new()))
}

fn offering(addr: SocketAddr) -> Client {
    let headers = [MODERN.to_owned(), OFFER.to_owned()];
    Client::try_connect(addr, "/graphql", &headers).expect("upgrade")
}

fn hello_works(c: &mut Client) {
    c.subscribe("h", "{ hello }");
    assert_eq!(c.recv_json()["payload"]["data"]["hello"], "world");
}

fn negotiated_only_when_both_sides_want_it<R: TestRuntime>() {
    let s = R::start(deflating(Config::default()));
    let mut c = offering(s.addr);
    let agreed = c.deflate.expect("deflate agreed");
    // The server keeps its context (ratio) and asks the client not to (its memory).
    assert!(!agreed.server_no_context_takeover);
    assert!(agreed.client_no_context_takeover);
    c.init(None);
    hello_works(&mut c);
    // A client that offers something else runs uncompressed, on the same server.
    let other = [
        MODERN.to_owned(),
        "Sec-WebSocket-Extensions: x-webkit-deflate-frame".to_owned(),
    ];
    let mut plain = Client::try_connect(s.addr, "/graphql", &other).expect("upgrade");
    assert_eq!(plain.deflate, None);
    plain.init(None);
    hello_works(&mut plain);
    // An offer the server cannot honour (an 8-bit window) is declined, not failed.
    let eight = [
        MODERN.to_owned(),
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8".to_owned(),
    ];
    let mut declined = Client::try_connect(s.addr, "/graphql", &eight).expect("upgrade");
    assert_eq!(declined.deflate, None);
    declined.init(None);
    hello_works(&mut declined);
    if !deflate_suite() {
        // With deflate off (the default) an offer is ignored.
        let off = R::start(Config::default());
        let mut c = offering(off.addr);
        assert_eq!(c.deflate, None);
        c.init(None);
        hello_works(&mut c);
    }
}

/// Writes one masked text frame, uncompressed (a client may send either way).
fn send_frame(tcp: &mut TcpStream, first: u8, payload: &[u8]) {
    let mut frame = vec![first];
    let key = [3, 1, 4, 1];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    tcp.write_all(&frame).expect("write frame");
}

/// A raw client that offered deflate: the socket past the 101, and the agreement.
fn raw_upgrade(addr: SocketAddr) -> (TcpStream, Agreed) {
    let c = offering(addr);
    let agreed = c.deflate.expect("an extension answer");
    (c.into_tcp(), agreed)
}

/// Reads raw frames until `count` text frames have arrived; returns the bytes read and
/// whether each text frame carried RSV1.
fn read_text_frames(tcp: &mut TcpStream, count: usize) -> (Vec<u8>, Vec<bool>) {
    let mut raw = Vec::new();
    let mut at = 0;
    let mut texts = 0;
    let mut rsv1 = Vec::new();
    let mut chunk = [0u8; 4096];
    while texts < count {
        // Parse the complete frames we have (server frames: unmasked).
        loop {
            let rest = &raw[at..];
            if rest.len() < 2 {
                break;
            }
            let (len, header) = match rest[1] & 0x7f {
                126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                127 if rest.len() >= 10 => (
                    u64::from_be_bytes(rest[2..10].try_into().expect("8 bytes")) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if rest.len() < header + len {
                break;
            }
            if rest[0] & 0x0f == 1 {
                texts += 1;
                rsv1.push(rest[0] & 0x40 != 0);
            }
            at += header + len;
        }
        if texts >= count {
            break;
        }
        let n = tcp.read(&mut chunk).expect("read frames");
        assert!(n > 0, "the server closed after {texts} text frames");
        raw.extend_from_slice(&chunk[..n]);
    }
    raw.truncate(at);
    (raw, rsv1)
}

fn events_go_out_compressed_and_inflate_to_the_events<R: TestRuntime>() {
    let s = R::start(deflating(Config::default()));
    let (mut tcp, agreed) = raw_upgrade(s.addr);
    send_frame(&mut tcp, 0x81, br#"{"type":"connection_init"}"#);
    let subscribe = json!({"id": "t", "type": "subscribe",
        "payload": {"query": "subscription { payload(bytes: 2000, everyMs: 5) }"}});
    send_frame(&mut tcp, 0x81, subscribe.to_string().as_bytes());
    let events = 20;
    let (raw, rsv1) = read_text_frames(&mut tcp, events + 1);
    // The 25-byte ack does not shrink alone and goes out as it is; every event is
    // compressed.
    assert!(!rsv1[0], "connection_ack uncompressed");
    assert!(
        rsv1[1..].iter().all(|r| *r),
        "every event compressed (RSV1): {rsv1:?}"
    );
    // What the wire carried inflates to the protocol's messages.
    let socket = Deflated::new(
        Cursor::new(raw.clone()),
        Side::Client,
        &agreed,
        &DeflateConfig::new(),
        1 << 20,
    );
    let mut ws = WebSocket::from_raw_socket(socket, Role::Client, None);
    let mut texts = Vec::new();
    while texts.len() < events + 1 {
        match ws.read().expect("a message") {
            Message::Text(t) => texts.push(serde_json::from_str::<Value>(&t).expect("json")),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(texts[0]["type"], "connection_ack");
    let plain: usize = texts.iter().map(|t| t.to_string().len()).sum();
    for t in &texts[1..] {
        assert_eq!(t["type"], "next", "{t}");
        assert_eq!(t["id"], "t");
    }
    // 2,000-byte repetitive payloads: compressed, far fewer bytes than the text.
    assert!(
        raw.len() * 5 < plain,
        "{} bytes on the wire for {plain} bytes of messages",
        raw.len()
    );
}

fn a_deflate_bomb_closes_1009_and_others_go_on<R: TestRuntime>() {
    let limit = 64 * 1024;
    let s = R::start(deflating(Config::default().max_message_size(limit)));
    let mut bystander = offering(s.addr);
    bystander.init(None);
    bystander.subscribe("b", "subscription { ticks(everyMs: 20) }");
    assert_eq!(bystander.recv_json()["type"], "next");
    let mut c = offering(s.addr);
    assert!(c.deflate.is_some());
    c.init(None);
    // 16 MiB of one byte compresses to about 16 KiB: under the limit on the wire, 256
    // times over it once inflated.
    c.send_text(&"a".repeat(16 << 20));
    assert_eq!(c.expect_close().0, 1009);
    let e = s.recorder.wait_closes(1, DEADLINE);
    assert_eq!(e.closes[0].1, CloseReason::MessageTooBig);
    // A message over the limit that arrives compressed fails the same way when its
    // compressed size alone is over (no inflating it at all).
    let mut big = offering(s.addr);
    big.init(None);
    let noise: String = (0..2 * limit)
        .map(|i| char::from(b'a' + ((i * 7919) % 26) as u8))
        .collect();
    let _ = big.try_send_text(&noise);
    assert_eq!(big.expect_close().0, 1009);
    for _ in 0..3 {
        assert_eq!(bystander.recv_json()["type"], "next", "the others go on");
    }
}

fn corrupt_compressed_data_ends_the_connection_and_its_operations<R: TestRuntime>() {
    let s = R::start(deflating(Config::default()));
    let (mut tcp, _) = raw_upgrade(s.addr);
    send_frame(&mut tcp, 0x81, br#"{"type":"connection_init"}"#);
    let subscribe = json!({"id": "t", "type": "subscribe",
        "payload": {"query": "subscription { ticks(everyMs: 100000) }"}});
    send_frame(&mut tcp, 0x81, subscribe.to_string().as_bytes());
    wait_until("the subscription is live", DEADLINE, || s.live.get() == 1);
    // RSV1 and bytes that are no deflate stream.
    send_frame(&mut tcp, 0xc1, &[0xff; 24]);
    let e = s.recorder.wait_closes(1, DEADLINE);
    assert_eq!(e.closes[0].1, CloseReason::PeerGone);
    assert_eq!(e.completes.len(), 1, "its operation ended");
    s.wait_idle();
    assert_eq!(s.live.get(), 0);
}

/// The default ([`Context::Recent`]): events flow compressed against the last 2 KiB the
/// connection sent, and no connection ever holds a zlib stream.
fn by_default_no_connection_holds_a_zlib_stream<R: TestRuntime>() {
    let s = R::start(deflating(Config::default()));
    let mut busy = offering(s.addr);
    busy.init(None);
    busy.subscribe("t", "subscription { ticks(everyMs: 5) }");
    for i in 0..40 {
        let next = busy.recv_json();
        assert_eq!(next["type"], "next", "event {i}: {next}");
        assert_eq!(s.gauges.snapshot().deflate_streams, 0, "event {i}");
    }
    let gauges = s.gauges.snapshot();
    assert!(
        gauges.deflate_wire_bytes_total * 2 < gauges.deflate_payload_bytes_total,
        "events shrink against the kept text: {} wire bytes for {}",
        gauges.deflate_wire_bytes_total,
        gauges.deflate_payload_bytes_total
    );
}

/// [`Context::Stream`]: a zlib stream per connection while events flow, freed a
/// keepalive interval after they stop.
fn compression_state_is_held_only_while_events_flow<R: TestRuntime>() {
    let every = std::time::Duration::from_millis(150);
    let s = R::start(
        Config::default()
            .keepalive_interval(every)
            .keepalive_timeout(None)
            .deflate(Some(DeflateConfig::new().context(Context::Stream))),
    );
    let streams = || s.gauges.snapshot().deflate_streams;
    let mut idle = offering(s.addr);
    idle.init(None);
    idle.subscribe("quiet", "subscription { messages(topic: \"quiet\") }");
    wait_until("the quiet subscription", DEADLINE, || s.live.get() == 1);
    // The ack and the pings cost nothing: no stream for an idle connection.
    assert_eq!(streams(), 0, "an idle connection holds a zlib stream");
    // An event makes it active: it compresses with its own stream from then on...
    let mut busy = offering(s.addr);
    busy.init(None);
    busy.subscribe("t", "subscription { ticks(everyMs: 20) }");
    let until = std::time::Instant::now() + 6 * every;
    while std::time::Instant::now() < until {
        assert_eq!(busy.recv_json()["type"], "next");
        // ...and keeps it across keepalive intervals while events flow.
        assert_eq!(streams(), 1, "the busy connection's stream, and only it");
    }
    // A query's result is an event too; a keepalive interval without any frees the stream.
    hello_works(&mut idle);
    wait_until("two streams", DEADLINE, || streams() == 2);
    wait_until("the idle one freed again", DEADLINE, || streams() == 1);
    // A connection that ends frees its stream with it.
    busy.reset();
    wait_until("no stream left", DEADLINE, || streams() == 0);
    assert!(idle.deflate.is_some());
}

fn the_compressed_run_compresses<R: TestRuntime>() {
    let s = R::start(Config::default());
    let c = Client::modern(s.addr);
    // The switch the compressed run of the suite depends on, checked both ways.
    assert_eq!(c.deflate.is_some(), deflate_suite());
}

per_runtime!(
    negotiated_only_when_both_sides_want_it,
    events_go_out_compressed_and_inflate_to_the_events,
    a_deflate_bomb_closes_1009_and_others_go_on,
    corrupt_compressed_data_ends_the_connection_and_its_operations,
    by_default_no_connection_holds_a_zlib_stream,
    compression_state_is_held_only_while_events_flow,
    the_compressed_run_compresses,
);
