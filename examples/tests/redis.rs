//! Several demo processes behind one Redis: a publish on either reaches subscribers on all;
//! abrupt disconnects unsubscribe the channel at Redis; a Redis restart mid-stream is
//! survived. Needs `redis-server` (installed by `cargo xtask ci`); on every runtime.

#![cfg(feature = "redis")]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Demo, connect_acked, init, query, recv, send};

const DEADLINE: Duration = Duration::from_secs(15);

/// A redis-server on a free loopback port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (install it, or run `cargo xtask ci`)");
        let redis = Self { child, port };
        let end = Instant::now() + DEADLINE;
        while redis.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(Instant::now() < end, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// A redis-server on a port no other test of this binary has had: a restart test frees
    /// its port while it restarts, and a parallel test must not pick it up meanwhile (the
    /// kernel may hand it out again), or one test's demo talks to the other's Redis.
    fn start() -> Self {
        static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
        let port = loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
            if !handed_out.contains(&port) {
                handed_out.push(port);
                break port;
            }
        };
        Self::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One RESP command; the first reply line (and the rest for arrays), or None.
    fn command(&self, args: &[&str]) -> Option<String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        tcp.write_all(req.as_bytes()).ok()?;
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned())
    }

    /// `PUBSUB NUMSUB channel`: how many connections are subscribed to it.
    fn numsub(&self, channel: &str) -> Option<u64> {
        let reply = self.command(&["PUBSUB", "NUMSUB", channel])?;
        reply.lines().last()?.trim_start_matches(':').parse().ok()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn subscribe(url: &str, protocol: &str, topic: &str) -> tungstenite::WebSocket<TcpStream> {
    let mut ws = connect_acked(url, protocol);
    let q = format!("subscription {{ messages(topic: \"{topic}\") }}");
    let (ty, id) = if protocol == "graphql-ws" {
        ("start", "m")
    } else {
        ("subscribe", "m")
    };
    send(
        &mut ws,
        serde_json::json!({"id": id, "type": ty, "payload": {"query": q}}),
    );
    ws
}

fn publish(url: &str, topic: &str, message: &str) -> u64 {
    let q = format!("mutation {{ publish(topic: \"{topic}\", message: \"{message}\") }}");
    query(url, &q)["publish"].as_u64().unwrap_or(0)
}

/// Next `messages` value on a subscription (skipping `ka`).
fn next_message(ws: &mut tungstenite::WebSocket<TcpStream>) -> String {
    let m = recv(ws);
    m["payload"]["data"]["messages"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn wait_numsub(redis: &Redis, channel: &str, n: u64) {
    let end = Instant::now() + DEADLINE;
    while redis.numsub(channel) != Some(n) {
        assert!(
            Instant::now() < end,
            "PUBSUB NUMSUB {channel} stayed at {:?}, expected {n}",
            redis.numsub(channel)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reset(ws: tungstenite::WebSocket<TcpStream>) {
    let tcp = ws.into_inner();
    socket2::SockRef::from(&tcp)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(tcp);
}

fn two_processes_one_redis(runtime: &str) {
    let redis = Redis::start();
    let a = Demo::start(&["--runtime", runtime, "--redis", &redis.url()]);
    let b = Demo::start(&["--runtime", runtime, "--redis", &redis.url()]);
    let mut on_a = subscribe(&a.url, "graphql-transport-ws", "news");
    let mut on_b = subscribe(&b.url, "graphql-ws", "news");
    assert_eq!(recv(&mut on_b)["type"], "ka");
    // Both processes subscribe the channel once each, however many local streams.
    wait_numsub(&redis, "news", 2);
    assert_eq!(publish(&a.url, "news", "from-a"), 2);
    assert_eq!(next_message(&mut on_a), "from-a");
    assert_eq!(next_message(&mut on_b), "from-a");
    assert_eq!(publish(&b.url, "news", "from-b"), 2);
    assert_eq!(next_message(&mut on_a), "from-b");
    assert_eq!(next_message(&mut on_b), "from-b");

    // Clients vanish abruptly: each process unsubscribes its last stream.
    let started = Instant::now();
    reset(on_a);
    reset(on_b);
    wait_numsub(&redis, "news", 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

fn stats(url: &str) -> serde_json::Value {
    let q = "{ serverStats { brokerGaps eventsDropped subscriptionsLagged } }";
    query(url, q)["serverStats"].clone()
}

/// Publishes on `a` until a process receives it (Redis is back and `live` subscribed).
fn publish_until_received(a: &Demo, topic: &str) {
    let end = Instant::now() + DEADLINE;
    let mut n = 0;
    loop {
        n += 1;
        if publish(&a.url, topic, &format!("after-{n}")) == 1 {
            return;
        }
        assert!(Instant::now() < end, "publishing never worked again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// redis-server killed and restarted under a live stream. With `--overflow end` (the
/// default) the stream is told of the gap (`BROKER_GAP`) and completes; with a drop
/// policy it goes on and the gap is counted.
fn redis_restart_mid_stream(runtime: &str, overflow: &str) {
    let mut redis = Redis::start();
    let port = redis.port;
    let args = [
        "--runtime",
        runtime,
        "--redis",
        &redis.url(),
        "--overflow",
        overflow,
    ];
    let a = Demo::start(&args);
    let b = Demo::start(&args);
    let mut on_b = subscribe(&b.url, "graphql-transport-ws", "live");
    wait_numsub(&redis, "live", 1);
    assert_eq!(publish(&a.url, "live", "before"), 1);
    assert_eq!(next_message(&mut on_b), "before");

    redis.kill();
    // During the gap the subscription stays open; publishes fail or reach nobody.
    let mut redis = Redis::start_on(port);
    if overflow == "end" {
        // Once back (and re-subscribed), the process tells the stream of the gap; the
        // stream then ends, and with it the channel's last local stream.
        let m = recv(&mut on_b);
        assert_eq!(m["type"], "next", "{m}");
        assert_eq!(m["payload"]["data"], serde_json::Value::Null, "{m}");
        assert_eq!(
            m["payload"]["errors"][0]["extensions"]["code"], "BROKER_GAP",
            "{m}"
        );
        assert_eq!(recv(&mut on_b)["type"], "complete");
        // A new subscriber gets what is published from now on.
        let mut fresh = subscribe(&b.url, "graphql-transport-ws", "live");
        wait_numsub(&redis, "live", 1);
        publish_until_received(&a, "live");
        let got = next_message(&mut fresh);
        assert!(got.starts_with("after-"), "got {got}");
    } else {
        // The subscriber process re-subscribes on its own, and the stream goes on.
        wait_numsub(&redis, "live", 1);
        publish_until_received(&a, "live");
        let got = next_message(&mut on_b);
        assert!(got.starts_with("after-"), "got {got}");
    }
    let s = stats(&b.url);
    assert_eq!(s["brokerGaps"], 1, "{s}");
    assert_eq!(s["subscriptionsLagged"], 0, "{s}");
    redis.kill();
}

/// Whether `got` holds every one of `sent` exactly once.
fn exactly_once(got: &[String], sent: &[String]) -> bool {
    let mut got = got.to_vec();
    got.sort();
    let mut sent = sent.to_vec();
    sent.sort();
    got == sent
}

/// Publishes `messages` on `url` keeping `window` mutations in flight (a new one as each
/// completes); returns each publish's receiver count, in message order.
fn publish_pipelined(url: &str, topic: &str, messages: &[String], window: usize) -> Vec<u64> {
    let mut ws = connect_acked(url, "graphql-transport-ws");
    let go = |ws: &mut tungstenite::WebSocket<TcpStream>, i: usize| {
        let q = format!(
            "mutation {{ publish(topic: {}, message: {}) }}",
            serde_json::json!(topic),
            serde_json::json!(messages[i])
        );
        send(
            ws,
            serde_json::json!({"id": format!("p{i}"), "type": "subscribe", "payload": {"query": q}}),
        );
    };
    let mut next = 0;
    while next < messages.len().min(window) {
        go(&mut ws, next);
        next += 1;
    }
    let (mut results, mut done) = (vec![0; messages.len()], 0);
    while done < messages.len() {
        let m = recv(&mut ws);
        let i: usize = m["id"]
            .as_str()
            .and_then(|id| id[1..].parse().ok())
            .expect("id");
        match m["type"].as_str() {
            Some("next") => {
                results[i] = m["payload"]["data"]["publish"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("publish failed: {m}"))
            }
            Some("complete") => {
                done += 1;
                if next < messages.len() {
                    go(&mut ws, next);
                    next += 1;
                }
            }
            _ => panic!("publisher got {m}"),
        }
    }
    results
}

/// Opens `subs` `messages(topic)` subscriptions on one connection and reads until each
/// got `want` values (or ended); returns the values per id and the final errors.
fn read_subscriptions(
    url: &str,
    topic: &str,
    subs: usize,
    want: usize,
    ready: std::sync::mpsc::Sender<()>,
) -> (Vec<Vec<String>>, Vec<serde_json::Value>) {
    let mut ws = connect_acked(url, "graphql-transport-ws");
    let q = format!(
        "subscription {{ messages(topic: {}) }}",
        serde_json::json!(topic)
    );
    for i in 0..subs {
        send(
            &mut ws,
            serde_json::json!({"id": format!("s{i}"), "type": "subscribe", "payload": {"query": q}}),
        );
    }
    let _ = ready.send(());
    let mut values = vec![Vec::new(); subs];
    let mut errors = Vec::new();
    let mut open = subs;
    while open > 0 {
        let m = recv(&mut ws);
        let i: usize = m["id"]
            .as_str()
            .and_then(|id| id[1..].parse().ok())
            .expect("id");
        match m["type"].as_str() {
            Some("next") => match m["payload"]["data"]["messages"].as_str() {
                Some(v) => {
                    values[i].push(v.to_owned());
                    if values[i].len() == want {
                        open -= 1;
                    }
                }
                None => errors.push(m["payload"]["errors"][0].clone()),
            },
            Some("complete") => open -= 1,
            _ => panic!("subscriber got {m}"),
        }
    }
    (values, errors)
}

/// A publisher keeping 64 mutations in flight on one process reaches 1,000 subscriptions
/// over 50 connections spread over two processes: every one gets every message exactly
/// once, all in the same order (the channel's).
fn pipelined_publisher_through_redis(runtime: &str) {
    let redis = Redis::start();
    let args = ["--runtime", runtime, "--redis", &redis.url()];
    let (a, b) = (Demo::start(&args), Demo::start(&args));
    let (tx, rx) = std::sync::mpsc::channel();
    let messages: Vec<String> = (0..100).map(|i| format!("{i:04}")).collect();
    let readers: Vec<_> = (0..50)
        .map(|c| {
            let url = if c % 2 == 0 {
                a.url.clone()
            } else {
                b.url.clone()
            };
            let tx = tx.clone();
            std::thread::spawn(move || read_subscriptions(&url, "wide", 20, 100, tx))
        })
        .collect();
    for _ in 0..50 {
        rx.recv_timeout(DEADLINE).expect("subscribers ready");
    }
    // Both processes have subscribed the channel at Redis, and every local stream is
    // registered (each process counts itself once, so 2 receivers means both).
    wait_numsub(&redis, "wide", 2);
    let live = |url: &str| {
        query(url, "{ liveStreams }")["liveStreams"]
            .as_u64()
            .unwrap_or(0)
    };
    let end = Instant::now() + DEADLINE;
    while live(&a.url) != 500 || live(&b.url) != 500 {
        assert!(
            Instant::now() < end,
            "1,000 subscriptions never became live"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let receivers = publish_pipelined(&a.url, "wide", &messages, 64);
    assert!(receivers.iter().all(|&n| n == 2), "{receivers:?}");
    // Concurrent mutations reach Redis in the order the server runs them; Redis then
    // orders the channel. So: every message exactly once, and every subscription, on
    // either process, in the one order Redis published.
    let mut order: Option<Vec<String>> = None;
    for r in readers {
        let (values, errors) = r.join().expect("reader");
        assert!(errors.is_empty(), "{errors:?}");
        for v in values {
            assert!(
                exactly_once(&v, &messages),
                "got {} of {}",
                v.len(),
                messages.len()
            );
            let order = order.get_or_insert_with(|| v.clone());
            assert!(v == *order, "two subscriptions saw different orders");
        }
    }
    for url in [&a.url, &b.url] {
        let s = stats(url);
        assert_eq!(
            (
                s["eventsDropped"].as_u64(),
                s["subscriptionsLagged"].as_u64()
            ),
            (Some(0), Some(0)),
            "{s}"
        );
    }
}

/// A `messages(topic)` subscriber on `url` whose TCP receive window is small from the
/// start (a phone on a bad link), so it stalls the server quickly once it stops reading.
fn stalled_subscriber(url: &str, topic: &str) -> tungstenite::WebSocket<TcpStream> {
    let addr = url.trim_start_matches("ws://").trim_end_matches("/graphql");
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
    socket
        .connect(&addr.parse::<std::net::SocketAddr>().expect("addr").into())
        .expect("connect");
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(url).expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut ws, _) = tungstenite::client(request, tcp).expect("handshake");
    init(&mut ws);
    let q = format!(
        "subscription {{ messages(topic: {}) }}",
        serde_json::json!(topic)
    );
    send(
        &mut ws,
        serde_json::json!({"id": "s", "type": "subscribe", "payload": {"query": q}}),
    );
    ws
}

/// Through Redis, `drop-oldest` and `drop-newest` keep a stalled subscriber's stream going
/// and count exactly what they dropped: received + eventsDropped = published.
fn drop_policies_through_redis(runtime: &str) {
    for overflow in ["drop-oldest", "drop-newest"] {
        let redis = Redis::start();
        let args = [
            "--runtime",
            runtime,
            "--redis",
            &redis.url(),
            "--overflow",
            overflow,
            "--subscriber-buffer",
            "16",
            "--write-timeout-ms",
            "120000",
            "--keepalive-ms",
            "0",
        ];
        let (a, b) = (Demo::start(&args), Demo::start(&args));
        let mut slow = stalled_subscriber(&b.url, "t");
        wait_numsub(&redis, "t", 1);
        std::thread::sleep(Duration::from_millis(200)); // the local stream registered
        let n = 4000;
        let messages: Vec<String> = (0..n)
            .map(|i| format!("{i:06}{}", "m".repeat(2048)))
            .collect();
        for chunk in messages.chunks(500) {
            publish_pipelined(&a.url, "t", chunk, 64);
        }
        // Nothing more is published: read until the server has nothing left to send.
        slow.get_ref()
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut got = Vec::new();
        loop {
            match slow.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let m: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                    assert_eq!(m["type"], "next", "{overflow}: the stream goes on: {m}");
                    let v = m["payload"]["data"]["messages"].as_str().expect("a value");
                    got.push(v.to_owned());
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => panic!("{overflow}: {e}"),
            }
        }
        let s = stats(&b.url);
        let dropped = s["eventsDropped"].as_u64().expect("eventsDropped");
        assert!(dropped > 0, "{overflow}: nothing dropped");
        assert_eq!(
            got.len() as u64 + dropped,
            n as u64,
            "{overflow}: count is exact ({s})"
        );
        assert_eq!(s["subscriptionsLagged"], 0, "{s}");
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "{overflow}: each at most once");
    }
}

/// Through Redis: a subscriber on the other process that stops reading lags alone — a
/// contiguous prefix, then SUBSCRIBER_LAGGED with the exact count, then complete — while
/// a reading subscriber on the same process loses nothing.
fn stalled_subscriber_through_redis(runtime: &str) {
    let redis = Redis::start();
    let args = [
        "--runtime",
        runtime,
        "--redis",
        &redis.url(),
        "--write-timeout-ms",
        "120000",
        "--keepalive-ms",
        "0",
    ];
    let (a, b) = (Demo::start(&args), Demo::start(&args));
    // The stalled one: a small receive window, subscribed, never read until the end.
    let mut slow = stalled_subscriber(&b.url, "flood");
    let n = 6000;
    let messages: Vec<String> = (0..n)
        .map(|i| format!("{i:06}{}", "m".repeat(2048)))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let url = b.url.clone();
    let fast = std::thread::spawn(move || read_subscriptions(&url, "flood", 1, n, tx));
    rx.recv_timeout(DEADLINE).expect("fast subscriber ready");
    wait_numsub(&redis, "flood", 1);
    std::thread::sleep(Duration::from_millis(200)); // both local streams registered
    for chunk in messages.chunks(500) {
        publish_pipelined(&a.url, "flood", chunk, 64);
    }
    let (values, errors) = fast.join().expect("fast reader");
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        exactly_once(&values[0], &messages),
        "the reading subscriber lost nothing ({} of {n})",
        values[0].len()
    );
    // The channel's order, as Redis published it.
    let order = &values[0];
    let mut prefix = Vec::new();
    let error = loop {
        let m = recv(&mut slow);
        assert_eq!(m["type"], "next", "{m}");
        match m["payload"]["data"]["messages"].as_str() {
            Some(v) => prefix.push(v.to_owned()),
            None => break m["payload"]["errors"][0].clone(),
        }
    };
    assert_eq!(recv(&mut slow)["type"], "complete");
    assert!(
        prefix.len() < n && prefix[..] == order[..prefix.len()],
        "a contiguous prefix of the channel"
    );
    assert_eq!(error["extensions"]["code"], "SUBSCRIBER_LAGGED", "{error}");
    assert_eq!(
        error["extensions"]["dropped"],
        (n - prefix.len()) as u64,
        "{error}"
    );
    let s = stats(&b.url);
    assert_eq!(s["subscriptionsLagged"], 1, "{s}");
    assert_eq!(s["eventsDropped"], (n - prefix.len()) as u64, "{s}");
}

macro_rules! per_runtime {
    ($($rt:ident => $name:literal, $feature:literal;)*) => {
        $(
            #[cfg(feature = $feature)]
            mod $rt {
                #[test]
                fn two_processes_one_redis() {
                    super::two_processes_one_redis($name);
                }

                #[test]
                fn pipelined_publisher_through_redis() {
                    super::pipelined_publisher_through_redis($name);
                }

                #[test]
                fn drop_policies_through_redis() {
                    super::drop_policies_through_redis($name);
                }

                #[test]
                fn stalled_subscriber_through_redis() {
                    super::stalled_subscriber_through_redis($name);
                }

                #[test]
                fn redis_restart_mid_stream_ends_with_the_gap() {
                    super::redis_restart_mid_stream($name, "end");
                }

                #[test]
                fn redis_restart_mid_stream_counts_the_gap_and_goes_on() {
                    super::redis_restart_mid_stream($name, "drop-newest");
                }
            }
        )*
    };
}

per_runtime! {
    tokio => "tokio", "tokio";
    smol => "smol", "smol";
    async_std => "async-std", "async-std";
}
