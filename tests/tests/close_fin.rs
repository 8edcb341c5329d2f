//! A connection the client closes ends promptly on every runtime: the server's FIN follows
//! its close echo (or, for an HTTP stream, the client's FIN), well before the close
//! timeout's linger would end it. Measured from outside, on the raw socket.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use subscope::Config;
use subscope_tests::http::sse;
use subscope_tests::{Client, DEADLINE, TestRuntime, TestServer, per_runtime, wait_until};

/// The close timeout the server runs with: how long it would linger for a peer that never
/// closes.
const LINGER: Duration = Duration::from_secs(2);

/// How soon the server's side must be gone: clearly below [`LINGER`], far above a
/// loopback round trip (about a millisecond on every runtime).
const PROMPT: Duration = Duration::from_millis(500);

fn start<R: TestRuntime>() -> TestServer {
    R::start(Config::default().close_timeout(LINGER))
}

/// Reads (discarding) until the server's FIN and returns when it came; fails on a reset or
/// if nothing ends the socket within [`DEADLINE`].
fn wait_for_fin(tcp: &mut TcpStream) -> Instant {
    tcp.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    let mut sink = [0u8; 4096];
    loop {
        match tcp.read(&mut sink) {
            Ok(0) => return Instant::now(),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no FIN from the server within {DEADLINE:?}")
            }
            Err(e) => panic!("expected the server's FIN, got {e}"),
        }
    }
}

/// Writes one final frame with `opcode` and a short `payload`, masked as a client must.
fn send_frame(tcp: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let len = u8::try_from(payload.len()).expect("a short payload");
    assert!(len < 126, "a short payload");
    let mut frame = vec![0x80 | opcode, 0x80 | len];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    tcp.write_all(&frame).expect("write frame");
}

/// Writes a close frame with `code`.
fn send_close(tcp: &mut TcpStream, code: u16) {
    send_frame(tcp, 0x8, &code.to_be_bytes());
}

/// Reads frames until a close frame and returns its code (skipping the data frames a
/// server may still have had in flight).
fn read_close(tcp: &mut TcpStream) -> u16 {
    tcp.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    loop {
        let mut head = [0u8; 2];
        tcp.read_exact(&mut head).expect("a frame header");
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                tcp.read_exact(&mut ext).expect("length");
                u64::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0u8; 8];
                tcp.read_exact(&mut ext).expect("length");
                u64::from_be_bytes(ext)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).expect("frame length")];
        tcp.read_exact(&mut payload).expect("a frame payload");
        if head[0] & 0x0f == 0x8 {
            assert!(payload.len() >= 2, "close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

/// A client past the ack with one live subscription, as a raw socket.
fn subscribed(s: &TestServer) -> TcpStream {
    let mut c = Client::modern(s.addr);
    c.init(None);
    c.subscribe("1", "subscription { delayed(ms: 60000) }");
    s.wait_live(1);
    c.into_tcp()
}

/// The client closes: the server echoes the close frame, then its FIN follows at once.
fn client_close_gets_the_echo_then_fin<R: TestRuntime>() {
    let s = start::<R>();
    let mut tcp = subscribed(&s);
    let sent = Instant::now();
    send_close(&mut tcp, 4000);
    assert_eq!(read_close(&mut tcp), 4000, "the close echo");
    let echoed = sent.elapsed();
    let fin = wait_for_fin(&mut tcp).duration_since(sent);
    eprintln!(
        "{}: close echo after {echoed:?}, server FIN after {fin:?}",
        R::NAME
    );
    assert!(
        fin < PROMPT,
        "the server's FIN came {fin:?} after the client's close frame (linger {LINGER:?})"
    );
    s.wait_idle();
}

/// The server closes (a protocol violation) and the client answers: the server's FIN
/// follows the client's answer at once.
fn server_close_answered_then_fin<R: TestRuntime>() {
    let s = start::<R>();
    let mut tcp = subscribed(&s);
    // A message that is not JSON: the server closes 4400.
    send_frame(&mut tcp, 0x1, b"{not json");
    assert_eq!(read_close(&mut tcp), 4400, "the server's close frame");
    let sent = Instant::now();
    send_close(&mut tcp, 4400);
    let fin = wait_for_fin(&mut tcp).duration_since(sent);
    eprintln!("{}: server FIN {fin:?} after the client's answer", R::NAME);
    assert!(
        fin < PROMPT,
        "the server's FIN came {fin:?} after the client's answer (linger {LINGER:?})"
    );
    s.wait_idle();
}

/// Waits until the HTTP stream, its operation and the demo stream are all gone.
fn http_idle_within(s: &TestServer, within: Duration) {
    wait_until("the SSE stream to end", within, || {
        let g = s.gauges.snapshot();
        s.live.get() == 0 && g.operations == 0 && g.http_streams == 0
    });
}

/// The client half-closes an SSE stream: the stream ends and the server's FIN follows.
fn sse_client_fin_ends_the_stream_at_once<R: TestRuntime>() {
    let s = start::<R>();
    let r = sse(s.addr, "subscription { delayed(ms: 60000) }");
    s.wait_live(1);
    let mut tcp = r.socket().try_clone().expect("clone");
    let sent = Instant::now();
    tcp.shutdown(Shutdown::Write).expect("fin");
    let fin = wait_for_fin(&mut tcp).duration_since(sent);
    eprintln!("{}: SSE: server FIN {fin:?} after the client's", R::NAME);
    assert!(
        fin < PROMPT,
        "the server's FIN came {fin:?} after the client's"
    );
    http_idle_within(&s, PROMPT.saturating_sub(sent.elapsed()));
    drop(r);
}

/// The client drops an SSE stream (closes its socket): the server's side is gone at once.
fn sse_client_drop_ends_the_stream_at_once<R: TestRuntime>() {
    let s = start::<R>();
    let r = sse(s.addr, "subscription { delayed(ms: 60000) }");
    s.wait_live(1);
    let sent = Instant::now();
    drop(r);
    http_idle_within(&s, PROMPT);
    eprintln!(
        "{}: SSE: stream gone {:?} after the drop",
        R::NAME,
        sent.elapsed()
    );
}

per_runtime!(
    client_close_gets_the_echo_then_fin,
    server_close_answered_then_fin,
    sse_client_fin_ends_the_stream_at_once,
    sse_client_drop_ends_the_stream_at_once,
);
