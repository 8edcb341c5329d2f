//! Hostile clients: each gets its specified answer, and a well-behaved client on the same
//! server keeps receiving its events at its normal pace meanwhile.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use subscope::{CloseReason, Config, Rate};
use subscope_tests::{
    Client, DEADLINE, TestRuntime, expect_dropped_without_a_response, per_runtime, wait_until,
};
use tungstenite::Message;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// Ticks every 50 ms; a gap this long means the bystander was starved.
const STARVED: Duration = Duration::from_millis(1500);

/// A well-behaved client subscribed to `ticks(everyMs: 50)`, timing every event.
struct Bystander {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(usize, Duration)>,
}

impl Bystander {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut c = Client::modern(addr);
        c.init(None);
        c.subscribe("b", "subscription { ticks(everyMs: 50) }");
        assert_eq!(c.recv_json()["type"], "next");
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut count, mut worst, mut last) = (0, Duration::ZERO, Instant::now());
            while !flag.load(Ordering::Relaxed) {
                let m = c.recv_json();
                assert_eq!(m["type"], "next", "bystander got {m}");
                worst = worst.max(last.elapsed());
                last = Instant::now();
                count += 1;
            }
            (count, worst)
        });
        Self { stop, thread }
    }

    /// Stops and asserts the bystander kept receiving at its pace.
    fn assert_unharmed(self, during: &str) {
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        let (count, worst) = self.thread.join().expect("bystander thread");
        assert!(
            count >= 3,
            "bystander got only {count} events during {during}"
        );
        assert!(
            worst < STARVED,
            "bystander starved for {worst:?} during {during}"
        );
    }
}

fn huge_frame_closes_1009<R: TestRuntime>() {
    let s = R::start(Config::default());
    let b = Bystander::start(s.addr);
    let mut c = Client::modern(s.addr);
    c.init(None);
    let huge = "x".repeat(2 * 1024 * 1024);
    c.send(json!({"id": "1", "type": "subscribe", "payload": {"query": huge}}));
    assert_eq!(c.expect_close(), (1009, "Message too big".into()));
    b.assert_unharmed("a 2 MiB frame");
}

fn fragments(c: &mut Client, text: &str, pieces: usize) {
    let bytes = text.as_bytes();
    let size = bytes.len().div_ceil(pieces);
    let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let fin = i + 1 == chunks.len();
        c.send_message(Message::Frame(Frame::message(chunk.to_vec(), opcode, fin)));
    }
}

fn fragmented_frames_are_reassembled_and_size_checked<R: TestRuntime>() {
    let s = R::start(Config::default().max_message_size(64 * 1024));
    let mut c = Client::modern(s.addr);
    c.init(None);
    let msg = json!({"id": "f", "type": "subscribe", "payload": {"query": "{ hello }"}});
    fragments(&mut c, &msg.to_string(), 5);
    assert_eq!(c.recv_json()["payload"]["data"]["hello"], "world");
    assert_eq!(c.recv_json()["type"], "complete");
    // Small fragments adding up to more than the limit.
    let big = json!({"id": "g", "type": "subscribe", "payload": {"query": "x".repeat(100_000)}});
    fragments(&mut c, &big.to_string(), 50);
    assert_eq!(c.expect_close().0, 1009);
}

fn subscribe_flood_with_fresh_ids_hits_the_limit<R: TestRuntime>() {
    let s = R::start(Config::default().max_subscriptions(100));
    let b = Bystander::start(s.addr);
    let before = s.live.get();
    let mut c = Client::modern(s.addr);
    c.init(None);
    for i in 0..500 {
        c.subscribe(&format!("s{i}"), "subscription { delayed(ms: 60000) }");
    }
    let mut refused = 0;
    while refused < 400 {
        let m = c.recv_json();
        assert_eq!(
            m["payload"],
            json!([{"message": "Subscription limit reached"}]),
            "{m}"
        );
        refused += 1;
    }
    s.wait_live(before + 100);
    b.assert_unharmed("a subscribe flood");
    c.reset();
    // The bystander has left too: nothing may remain.
    s.wait_idle();
}

fn ping_flood_is_rate_limited<R: TestRuntime>() {
    let s = R::start(Config::default().inbound_rate(Some(Rate::new(200, 400))));
    let b = Bystander::start(s.addr);
    let mut c = Client::modern(s.addr);
    c.init(None);
    // Write without reading; the server closes once the bucket is empty.
    let mut sent = 0;
    for _ in 0..5000 {
        if c.try_send_text(r#"{"type":"ping"}"#).is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > 400, "only {sent} pings went out");
    assert_eq!(
        c.expect_close_skipping_data(),
        (1008, "Rate limit exceeded".into())
    );
    let e = s.recorder.wait("the flooder's close", DEADLINE, |e| {
        e.closes.iter().any(|(_, r)| *r == CloseReason::RateLimited)
    });
    assert_eq!(e.closes.len(), 1);
    b.assert_unharmed("a ping flood");
}

fn websocket_ping_frame_flood_is_rate_limited<R: TestRuntime>() {
    let s = R::start(Config::default().inbound_rate(Some(Rate::new(200, 400))));
    let b = Bystander::start(s.addr);
    let mut c = Client::modern(s.addr);
    c.init(None);
    for _ in 0..5000 {
        if c.try_send(Message::Ping(vec![1, 2, 3].into())).is_err() {
            break;
        }
    }
    assert_eq!(c.expect_close_skipping_data().0, 1008);
    b.assert_unharmed("a ping-frame flood");
}

fn invalid_utf8_text_frame_closes_4400<R: TestRuntime>() {
    let s = R::start(Config::default());
    let mut c = Client::modern(s.addr);
    c.init(None);
    c.send_message(Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    )));
    assert_eq!(c.expect_close(), (4400, "Invalid message received".into()));
}

fn long_ids_and_large_inits_are_refused<R: TestRuntime>() {
    let s = R::start(Config::default().max_id_length(16).max_init_size(1024));
    let mut c = Client::modern(s.addr);
    c.send(json!({"type": "connection_init", "payload": {"blob": "x".repeat(2000)}}));
    assert_eq!(c.expect_close().0, 4400);
    let mut c = Client::modern(s.addr);
    c.init(None);
    c.subscribe(&"i".repeat(17), "{ hello }");
    assert_eq!(c.expect_close().0, 4400);
    let mut c = Client::legacy(s.addr);
    c.init(None);
    c.start(&"i".repeat(17), "{ hello }");
    let m = c.recv_json_skip_ka();
    assert_eq!(m["type"], "connection_error", "{m}");
}

fn unfinished_upgrades_are_dropped<R: TestRuntime>() {
    let s = R::start(Config::default().handshake_timeout(Duration::from_millis(300)));
    let b = Bystander::start(s.addr);
    let mut lorises: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut t = TcpStream::connect(s.addr).expect("connect");
            t.write_all(b"GET /graphql HTTP/1.1\r\nHost: x\r\n")
                .expect("write");
            t
        })
        .collect();
    for t in &mut lorises {
        expect_dropped_without_a_response(t);
    }
    b.assert_unharmed("200 unfinished upgrades");
}

/// File descriptors this process may open (soft limit), from /proc.
fn fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(1024)
}

fn thousands_of_half_open_connections_are_dropped<R: TestRuntime>() {
    // Both ends of every connection live in this process: two descriptors each.
    let n = 2000.min(fd_limit().saturating_sub(300) / 2);
    let s = R::start(
        Config::default()
            .keepalive_interval(Duration::from_millis(300))
            .keepalive_timeout(Duration::from_millis(600)),
    );
    let b = Bystander::start(s.addr);
    let silent: Vec<Client> = (0..n)
        .map(|_| {
            let mut c = Client::modern(s.addr);
            c.send(json!({"type": "connection_init"}));
            c
        })
        .collect();
    // Nobody reads: no pong ever comes back.
    let e = s.recorder.wait(
        &format!("{n} keepalive closes"),
        Duration::from_secs(60),
        |e| {
            e.closes
                .iter()
                .filter(|(_, r)| *r == CloseReason::KeepaliveTimeout)
                .count()
                >= n
        },
    );
    assert!(e.closes.len() >= n);
    b.assert_unharmed("thousands of half-open connections");
    drop(silent);
    wait_until("only the bystander's connection left", DEADLINE, || {
        s.gauges.connections() <= 1
    });
}

per_runtime!(
    huge_frame_closes_1009,
    fragmented_frames_are_reassembled_and_size_checked,
    subscribe_flood_with_fresh_ids_hits_the_limit,
    ping_flood_is_rate_limited,
    websocket_ping_frame_flood_is_rate_limited,
    invalid_utf8_text_frame_closes_4400,
    long_ids_and_large_inits_are_refused,
    unfinished_upgrades_are_dropped,
    thousands_of_half_open_connections_are_dropped,
);
