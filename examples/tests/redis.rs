//! Several demo processes behind one Redis: a publish on either reaches subscribers on all;
//! abrupt disconnects unsubscribe the channel at Redis; a Redis restart mid-stream is
//! survived. With `--history` (Redis Streams): subscribers of a SIGKILLed process resume
//! on another one, or on the same one restarted, exactly once; a resume past what Redis
//! retained starts with `RESUME_GAP`; dropped Redis connections are a replay, not a gap,
//! unless the stream was trimmed meanwhile. Needs `redis-server` (installed by
//! `cargo xtask ci`); on every runtime.

#![cfg(feature = "redis")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Demo, connect_acked, init, port_below_ephemeral_range, query, recv, send};

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
    publish_pipelined_counted(url, topic, messages, window, &AtomicUsize::new(0))
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

// ---- Resumption through Redis Streams (`--history`) ----

/// One `messages` result: its value and `extensions.eventId`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    value: String,
    id: String,
}

/// A RESP reply.
#[derive(Debug)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Self>>),
}

impl Resp {
    fn read(r: &mut impl BufRead) -> std::io::Result<Self> {
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP");
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end_matches("\r\n");
        let (tag, rest) = (line.get(..1).ok_or_else(bad)?, &line[1..]);
        let n = || rest.parse::<i64>().map_err(|_| bad());
        Ok(match tag {
            "+" => Self::Simple(rest.to_owned()),
            "-" => Self::Error(rest.to_owned()),
            ":" => Self::Int(n()?),
            "$" if n()? < 0 => Self::Bulk(None),
            "$" => {
                let mut buf = vec![0; n()? as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(buf.len() - 2);
                Self::Bulk(Some(String::from_utf8(buf).map_err(|_| bad())?))
            }
            "*" if n()? < 0 => Self::Array(None),
            "*" => Self::Array(Some(
                (0..n()?).map(|_| Self::read(r)).collect::<Result<_, _>>()?,
            )),
            _ => return Err(bad()),
        })
    }

    fn items(self) -> Vec<Self> {
        match self {
            Self::Array(Some(items)) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn text(self) -> String {
        match self {
            Self::Simple(s) | Self::Bulk(Some(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }
}

impl Redis {
    /// One command on a connection of its own, its whole reply.
    fn query(&self, args: &[&str]) -> Resp {
        self.session().query(args)
    }

    /// A connection for several commands.
    fn session(&self) -> Session {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let reader = BufReader::new(tcp.try_clone().expect("clone"));
        Session { tcp, reader }
    }

    /// `XRANGE subscope:topic:<topic> - + [COUNT n]`: the stream's entries (the demo's
    /// events are JSON strings in field `p`).
    fn xrange(&self, topic: &str, count: Option<usize>) -> Vec<Event> {
        let key = format!("subscope:topic:{topic}");
        let count = count.map(|n| n.to_string());
        let mut args = vec!["XRANGE", &key, "-", "+"];
        if let Some(n) = &count {
            args.extend(["COUNT", n]);
        }
        self.query(&args)
            .items()
            .into_iter()
            .map(|entry| {
                let mut entry = entry.items().into_iter();
                let id = entry.next().expect("id").text();
                let fields: Vec<String> = entry
                    .next()
                    .expect("fields")
                    .items()
                    .into_iter()
                    .map(Resp::text)
                    .collect();
                assert_eq!(fields[0], "p", "{fields:?}");
                let value = serde_json::from_str(&fields[1]).expect("a JSON string");
                Event { value, id }
            })
            .collect()
    }
}

/// One connection to Redis.
struct Session {
    tcp: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Session {
    /// One command, its whole reply.
    fn query(&mut self, args: &[&str]) -> Resp {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.tcp.write_all(req.as_bytes()).expect("send to redis");
        match Resp::read(&mut self.reader).expect("redis reply") {
            Resp::Error(e) => panic!("{args:?}: {e}"),
            reply => reply,
        }
    }
}

/// Subscribes `messages(topic)` as `s{i}` for each `(i, after)`, resuming after `after`
/// (`extensions.lastEventId`) where given.
fn subscribe_many(
    ws: &mut tungstenite::WebSocket<TcpStream>,
    protocol: &str,
    topic: &str,
    subs: &[(usize, Option<String>)],
) {
    let q = format!(
        "subscription {{ messages(topic: {}) }}",
        serde_json::json!(topic)
    );
    let ty = if protocol == "graphql-ws" {
        "start"
    } else {
        "subscribe"
    };
    for (i, after) in subs {
        let mut payload = serde_json::json!({ "query": q });
        if let Some(after) = after {
            payload["extensions"] = serde_json::json!({ "lastEventId": after });
        }
        send(
            ws,
            serde_json::json!({"id": format!("s{i}"), "type": ty, "payload": payload}),
        );
    }
}

/// Whether a connection went on or died.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Lost,
}

/// Reads results of subscriptions `s{i}` into `items[i]` (error items into `errors`) until
/// `done(items, errors)`; `Lost` if the connection dies first. Panics past the deadline
/// (keep-alives do not count), or on a `complete` or anything else unexpected.
fn read_until(
    ws: &mut tungstenite::WebSocket<TcpStream>,
    items: &mut [Vec<Event>],
    errors: &mut Vec<serde_json::Value>,
    done: impl Fn(&[Vec<Event>], &[serde_json::Value]) -> bool,
) -> Outcome {
    let end = Instant::now() + DEADLINE;
    while !done(items, errors) {
        if Instant::now() > end {
            let got: Vec<usize> = items.iter().map(Vec::len).collect();
            panic!(
                "not done within the deadline; items per subscription: {got:?}, errors: {errors:?}"
            )
        }
        let text = match ws.read() {
            Ok(tungstenite::Message::Text(t)) => t,
            Ok(tungstenite::Message::Close(_)) => return Outcome::Lost,
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                let got: Vec<usize> = items.iter().map(Vec::len).collect();
                panic!(
                    "nothing more arrived in time; items per subscription: {got:?}, errors: {errors:?}"
                )
            }
            Err(_) => return Outcome::Lost,
        };
        let m: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
        if m["type"] == "ka" {
            continue;
        }
        let i: usize = m["id"]
            .as_str()
            .and_then(|id| id.strip_prefix('s')?.parse().ok())
            .unwrap_or_else(|| panic!("unexpected {m}"));
        match m["type"].as_str() {
            Some("next" | "data") => match m["payload"]["data"]["messages"].as_str() {
                Some(v) => items[i].push(Event {
                    value: v.to_owned(),
                    id: m["payload"]["extensions"]["eventId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("no eventId: {m}"))
                        .to_owned(),
                }),
                None => errors.push(m["payload"].clone()),
            },
            _ => panic!("s{i}: unexpected {m} (errors before: {errors:?})"),
        }
    }
    Outcome::Done
}

/// Every subscription has at least `n` results.
fn each_has(n: usize) -> impl Fn(&[Vec<Event>], &[serde_json::Value]) -> bool {
    move |items, _| items.iter().all(|v| v.len() >= n)
}

fn resume_stats(url: &str) -> serde_json::Value {
    let q = "{ serverStats { resumeGaps eventsReplayed brokerGaps eventsDropped subscriptionsLagged } }";
    query(url, q)["serverStats"].clone()
}

/// Waits until the demo at `url` serves `n` `messages` streams.
fn wait_live_streams(url: &str, n: u64) {
    let end = Instant::now() + DEADLINE;
    loop {
        let live = query(url, "{ liveStreams }")["liveStreams"].as_u64();
        if live == Some(n) {
            return;
        }
        assert!(
            Instant::now() < end,
            "liveStreams stayed at {live:?}, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What one resuming subscriber connection saw: results per subscription, how many each
/// had when its first connection died (`None`: it never died), and error items.
type Seen = (Vec<Vec<Event>>, Option<Vec<usize>>, Vec<serde_json::Value>);

/// `subs` subscriptions on one connection to `first`; once each has its first result,
/// `warm` is signalled; when the connection dies, each unfinished subscription resumes on
/// `then` after the last event id it saw. Reads until each has `want` results.
fn resuming_subscriber(
    first: &str,
    then: &str,
    topic: &str,
    subs: usize,
    want: usize,
    warm: &std::sync::mpsc::Sender<()>,
) -> Seen {
    let protocol = "graphql-transport-ws";
    let mut ws = connect_acked(first, protocol);
    let fresh: Vec<_> = (0..subs).map(|i| (i, None)).collect();
    subscribe_many(&mut ws, protocol, topic, &fresh);
    let (mut items, mut errors) = (vec![Vec::new(); subs], Vec::new());
    let read = read_until(&mut ws, &mut items, &mut errors, each_has(1));
    assert_eq!(
        read,
        Outcome::Done,
        "the first process died before the warm-up"
    );
    let _ = warm.send(());
    let mut before = None;
    if read_until(&mut ws, &mut items, &mut errors, each_has(want)) == Outcome::Lost {
        before = Some(items.iter().map(Vec::len).collect());
        let mut ws = connect_acked(then, protocol);
        let resume: Vec<_> = items
            .iter()
            .enumerate()
            .filter(|(_, v)| v.len() < want)
            .map(|(i, v)| (i, v.last().map(|e| e.id.clone())))
            .collect();
        subscribe_many(&mut ws, protocol, topic, &resume);
        let read = read_until(&mut ws, &mut items, &mut errors, each_has(want));
        assert_eq!(read, Outcome::Done, "the second process went away too");
    }
    (items, before, errors)
}

/// [`publish_pipelined`], counting completed publishes in `acked` as they complete.
fn publish_pipelined_counted(
    url: &str,
    topic: &str,
    messages: &[String],
    window: usize,
    acked: &AtomicUsize,
) -> Vec<u64> {
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
                acked.fetch_add(1, Ordering::Relaxed);
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

/// Waits for `n` signals on `rx`, within the deadline.
fn await_signals(rx: &std::sync::mpsc::Receiver<()>, n: usize, what: &str) {
    let end = Instant::now() + DEADLINE;
    for got in 0..n {
        let left = end.saturating_duration_since(Instant::now());
        rx.recv_timeout(left)
            .unwrap_or_else(|_| panic!("{what}: {got} of {n} within the deadline"));
    }
}

/// Process A is SIGKILLed while a publisher on process B is mid-way through 300
/// pipelined publishes; A's 1,000 subscriptions (50 connections × 20) each reconnect to B
/// with the last event id they saw and end with every event exactly once, in the order B's
/// own subscriber saw them, with the same event ids.
fn sigkill_mid_publish_resume_elsewhere(runtime: &str) {
    const CONNECTIONS: usize = 50;
    const SUBS: usize = 20;
    const N: usize = 300;
    let redis = Redis::start();
    let args = [
        "--runtime",
        runtime,
        "--redis",
        &redis.url(),
        "--history",
        "100000",
    ];
    let (mut a, b) = (Demo::start(&args), Demo::start(&args));
    let total = N + 1; // the warm-up, then the numbered messages
    let (warm, warmed) = std::sync::mpsc::channel();
    let control = {
        let (url, warm) = (b.url.clone(), warm.clone());
        std::thread::spawn(move || resuming_subscriber(&url, &url, "k", 1, total, &warm))
    };
    let subscribers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (a, b, warm) = (a.url.clone(), b.url.clone(), warm.clone());
            std::thread::spawn(move || resuming_subscriber(&a, &b, "k", SUBS, total, &warm))
        })
        .collect();
    wait_live_streams(&a.url, (CONNECTIONS * SUBS) as u64);
    wait_live_streams(&b.url, 1);
    assert_eq!(publish(&b.url, "k", "warm-up"), 1);
    await_signals(&warmed, CONNECTIONS + 1, "subscribers got the warm-up");

    let messages: Vec<String> = (0..N).map(|i| format!("{i:04}")).collect();
    let acked = std::sync::Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (url, messages, acked) = (b.url.clone(), messages.clone(), acked.clone());
        std::thread::spawn(move || publish_pipelined_counted(&url, "k", &messages, 64, &acked))
    };
    let end = Instant::now() + DEADLINE;
    while acked.load(Ordering::Relaxed) < N / 3 {
        assert!(Instant::now() < end, "publishing stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reaped");
    let killed_at = acked.load(Ordering::Relaxed);
    let receivers = publisher.join().expect("publisher");
    assert!(receivers.iter().all(|&n| n == 1), "{receivers:?}");

    let (control, _, errors) = control.join().expect("control subscriber");
    assert!(errors.is_empty(), "{errors:?}");
    let order = &control[0];
    let mut values: Vec<String> = order.iter().map(|e| e.value.clone()).collect();
    assert_eq!(values.remove(0), "warm-up");
    assert!(
        exactly_once(&values, &messages),
        "the control got every message"
    );
    // Each subscription's results: every one once, in the control's order, with its ids.
    // (A subscription that had them all before the kill has nothing to resume.)
    let (mut resumed, mut missing) = (0, 0);
    for s in subscribers {
        let (items, before, errors) = s.join().expect("subscriber");
        assert!(errors.is_empty(), "{errors:?}");
        let before = before.unwrap_or_else(|| vec![total; SUBS]);
        for (v, before) in items.iter().zip(before) {
            if before < total {
                resumed += 1;
                missing += total - before;
            }
            assert!(
                v == order,
                "exactly once, in the control's order, same ids: had {before} before the kill"
            );
        }
    }
    assert!(
        resumed > 0,
        "killed after {killed_at} of {N} publishes acknowledged, yet no subscription resumed"
    );
    let s = resume_stats(&b.url);
    assert_eq!(s["resumeGaps"], 0, "{s}");
    assert_eq!(s["brokerGaps"], 0, "{s}");
    assert_eq!(s["eventsDropped"], 0, "{s}");
    // What the resumes replayed (the rest came live from B after they caught up).
    let replayed = s["eventsReplayed"].as_u64().unwrap_or(0);
    assert!(
        replayed > 0 && replayed <= missing as u64,
        "{resumed} resumed, {missing} missing, {s}"
    );
}

/// The only process with the subscriber is SIGKILLed and started again on the same port
/// behind the same Redis; what was published meanwhile (through another process) arrives
/// exactly once on resume, then live events.
fn restart_on_the_same_redis(runtime: &str) {
    let redis = Redis::start();
    let args = [
        "--runtime",
        runtime,
        "--redis",
        &redis.url(),
        "--history",
        "1000",
    ];
    let publisher = Demo::start(&args);
    // Restarted on its port below: one the kernel never picks for an outgoing connection.
    let addr = format!("127.0.0.1:{}", port_below_ephemeral_range());
    let mut with_addr = vec!["--addr", addr.as_str()];
    with_addr.extend_from_slice(&args);
    let mut a = Demo::spawn(env!("CARGO_BIN_EXE_demo"), &with_addr);
    let protocol = "graphql-transport-ws";
    let mut ws = connect_acked(&a.url, protocol);
    subscribe_many(&mut ws, protocol, "r", &[(0, None)]);
    wait_live_streams(&a.url, 1);
    let (mut items, mut errors) = (vec![Vec::new()], Vec::new());
    let mut sent = Vec::new();
    let mut publish_some = |from: usize| {
        for i in from..from + 5 {
            let m = format!("r{i:02}");
            assert_eq!(publish(&publisher.url, "r", &m), 1);
            sent.push(m);
        }
    };
    publish_some(0);
    let read = read_until(&mut ws, &mut items, &mut errors, each_has(5));
    assert_eq!(read, Outcome::Done);

    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reaped");
    let read = read_until(&mut ws, &mut items, &mut errors, each_has(6));
    assert_eq!(read, Outcome::Lost, "the connection dies with the process");
    publish_some(5); // while no process serves the subscriber

    let restarted = Demo::spawn(env!("CARGO_BIN_EXE_demo"), &with_addr);
    assert_eq!(restarted.url, a.url, "the same port");
    let mut ws = connect_acked(&restarted.url, protocol);
    let last = items[0].last().map(|e| e.id.clone());
    subscribe_many(&mut ws, protocol, "r", &[(0, last)]);
    let read = read_until(&mut ws, &mut items, &mut errors, each_has(10));
    assert_eq!(read, Outcome::Done);
    publish_some(10); // live again
    let read = read_until(&mut ws, &mut items, &mut errors, each_has(15));
    assert_eq!(read, Outcome::Done);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        items[0],
        redis.xrange("r", None),
        "the stream, exactly once"
    );
    let values: Vec<_> = items[0].iter().map(|e| e.value.clone()).collect();
    assert_eq!(values, sent);
    let s = resume_stats(&restarted.url);
    assert_eq!(
        (s["resumeGaps"].as_u64(), s["eventsReplayed"].as_u64()),
        (Some(0), Some(5)),
        "{s}"
    );
}

/// `--history 5` after 1,000 publishes: Redis trimmed (approximately) past the first
/// event, so resuming after it starts with `RESUME_GAP` whose `oldestEventId` is the
/// stream's first retained entry, then exactly the retained entries, then live. Over the
/// legacy protocol (the id in the `start` payload).
fn resume_gap_after_trimming(runtime: &str) {
    let redis = Redis::start();
    let args = [
        "--runtime",
        runtime,
        "--redis",
        &redis.url(),
        "--history",
        "5",
    ];
    let a = Demo::start(&args);
    let messages: Vec<String> = (0..1000).map(|i| format!("{i:04}")).collect();
    assert_eq!(publish(&a.url, "c", &messages[0]), 1);
    let first = redis.xrange("c", Some(1)).remove(0);
    assert_eq!(first.value, messages[0]);
    publish_pipelined(&a.url, "c", &messages[1..], 64);
    let retained = redis.xrange("c", None);
    assert!(
        retained.len() >= 5 && retained.len() < 500 && retained[0] != first,
        "trimmed to about 5: {} left",
        retained.len()
    );
    assert_eq!(retained.last().map(|e| &e.value), messages.last());

    let protocol = "graphql-ws";
    let mut ws = connect_acked(&a.url, protocol);
    subscribe_many(&mut ws, protocol, "c", &[(0, Some(first.id.clone()))]);
    let (mut items, mut errors) = (vec![Vec::new()], Vec::new());
    // The first item, whichever it is.
    let read = read_until(&mut ws, &mut items, &mut errors, |items, errors| {
        !items[0].is_empty() || !errors.is_empty()
    });
    assert_eq!(read, Outcome::Done);
    assert!(items[0].is_empty(), "the gap comes first: {:?}", items[0]);
    let gap = &errors[0];
    assert!(gap["data"].is_null(), "{gap}");
    let extensions = &gap["errors"][0]["extensions"];
    assert_eq!(extensions["code"], "RESUME_GAP", "{gap}");
    assert_eq!(
        extensions["oldestEventId"],
        retained[0].id.as_str(),
        "the first entry Redis retained: {gap}"
    );
    assert!(gap["extensions"]["eventId"].is_null(), "no eventId: {gap}");
    let read = read_until(&mut ws, &mut items, &mut errors, each_has(retained.len()));
    assert_eq!(read, Outcome::Done);
    assert_eq!(items[0], retained, "exactly the retained entries, in order");
    assert_eq!(publish(&a.url, "c", "live"), 1);
    let read = read_until(
        &mut ws,
        &mut items,
        &mut errors,
        each_has(retained.len() + 1),
    );
    assert_eq!(read, Outcome::Done);
    let live = redis.xrange("c", None).pop();
    assert_eq!(items[0].last(), live.as_ref(), "then live");
    assert_eq!(items[0].last().map(|e| e.value.as_str()), Some("live"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let s = resume_stats(&a.url);
    assert_eq!(s["resumeGaps"], 1, "{s}");
}

/// Publishes `messages` one at a time, `pace` apart, tolerating failures (Redis dropped
/// the process's connection); counts attempts in `progress`; returns which were
/// acknowledged.
fn publish_paced(
    url: &str,
    topic: &str,
    messages: &[String],
    pace: Duration,
    progress: &AtomicUsize,
) -> Vec<bool> {
    let mut ws = connect_acked(url, "graphql-transport-ws");
    let mut acked = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let q = format!(
            "mutation {{ publish(topic: {}, message: {}) }}",
            serde_json::json!(topic),
            serde_json::json!(message)
        );
        send(
            &mut ws,
            serde_json::json!({"id": format!("p{i}"), "type": "subscribe", "payload": {"query": q}}),
        );
        let mut ok = false;
        loop {
            let m = recv(&mut ws);
            match m["type"].as_str() {
                Some("next") => ok = m["payload"]["data"]["publish"] == 1,
                Some("complete") => break,
                _ => panic!("publisher got {m}"),
            }
        }
        acked.push(ok);
        progress.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(pace);
    }
    acked
}

/// Redis drops every client connection (`CLIENT KILL TYPE normal`) three times while a
/// publisher goes on: the subscribers' process reconnects its reader and reads on from
/// the last id it delivered, so each subscription gets the stream exactly once, in
/// order, without `BROKER_GAP`.
fn redis_blip_with_streams(runtime: &str) {
    const CONNECTIONS: usize = 2;
    const SUBS: usize = 5;
    let redis = Redis::start();
    let args = [
        "--runtime",
        runtime,
        "--redis",
        &redis.url(),
        "--history",
        "100000",
    ];
    let (a, p) = (Demo::start(&args), Demo::start(&args));
    let subscribers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let url = a.url.clone();
            std::thread::spawn(move || {
                let protocol = "graphql-transport-ws";
                let mut ws = connect_acked(&url, protocol);
                let fresh: Vec<_> = (0..SUBS).map(|i| (i, None)).collect();
                subscribe_many(&mut ws, protocol, "d", &fresh);
                let (mut items, mut errors) = (vec![Vec::new(); SUBS], Vec::new());
                let ended = |items: &[Vec<Event>], _: &[serde_json::Value]| {
                    items
                        .iter()
                        .all(|v| v.last().is_some_and(|e| e.value == "end"))
                };
                let read = read_until(&mut ws, &mut items, &mut errors, ended);
                assert_eq!(read, Outcome::Done);
                (items, errors)
            })
        })
        .collect();
    wait_live_streams(&a.url, (CONNECTIONS * SUBS) as u64);
    let messages: Vec<String> = (0..300).map(|i| format!("d{i:03}")).collect();
    let progress = std::sync::Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (url, messages, progress) = (p.url.clone(), messages.clone(), progress.clone());
        std::thread::spawn(move || {
            publish_paced(&url, "d", &messages, Duration::from_millis(2), &progress)
        })
    };
    let end = Instant::now() + DEADLINE;
    for at in [75, 150, 225] {
        // Both processes' readers are connected (again), besides this client.
        while progress.load(Ordering::Relaxed) < at
            || redis.query(&["CLIENT", "LIST"]).text().lines().count() < 3
        {
            assert!(Instant::now() < end, "publishing stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
        match redis.query(&["CLIENT", "KILL", "TYPE", "normal"]) {
            Resp::Int(n) => assert!(n >= 2, "killed {n} connections"),
            other => panic!("CLIENT KILL: {other:?}"),
        }
    }
    let acked = publisher.join().expect("publisher");
    assert_eq!(publish(&p.url, "d", "end"), 1);
    let stream = redis.xrange("d", None);
    let values: Vec<&str> = stream.iter().map(|e| e.value.as_str()).collect();
    for (m, ok) in messages.iter().zip(&acked) {
        let n = values.iter().filter(|v| **v == m).count();
        assert!(n <= 1, "{m} stored {n} times");
        assert!(
            !ok || n == 1,
            "{m} was acknowledged, so it is in the stream"
        );
    }
    assert_eq!(values.last(), Some(&"end"));
    for s in subscribers {
        let (items, errors) = s.join().expect("subscriber");
        assert!(errors.is_empty(), "no BROKER_GAP: {errors:?}");
        for v in items {
            assert!(
                v == stream,
                "the stream exactly once, in order: got {} of {}",
                v.len(),
                stream.len()
            );
        }
    }
    let s = resume_stats(&a.url);
    assert_eq!(s["brokerGaps"], 0, "{s}");
    assert_eq!(s["eventsDropped"], 0, "{s}");
}

/// The subscribers' process cannot reach Redis (its reader's connection killed, new ones
/// refused) while more than its history is published elsewhere: back, the stream was
/// trimmed past the last id it delivered, and its subscriber is told (`BROKER_GAP`, then
/// `complete` under `--overflow end`), not served the rest as if nothing was missed.
fn redis_blip_past_history_is_a_gap(runtime: &str) {
    let redis = Redis::start();
    let args = [
        "--runtime",
        runtime,
        "--redis",
        &redis.url(),
        "--history",
        "5",
    ];
    let (a, p) = (Demo::start(&args), Demo::start(&args));
    let protocol = "graphql-transport-ws";
    let mut ws = connect_acked(&a.url, protocol);
    subscribe_many(&mut ws, protocol, "e", &[(0, None)]);
    wait_live_streams(&a.url, 1);
    let (mut items, mut errors) = (vec![Vec::new()], Vec::new());
    for m in ["e0", "e1", "e2"] {
        assert_eq!(publish(&p.url, "e", m), 1);
    }
    let read = read_until(&mut ws, &mut items, &mut errors, each_has(3));
    assert_eq!(read, Outcome::Done);

    // A's reader is the one client blocked in XREAD (B has no subscriber).
    let mut admin = redis.session();
    let list = admin.query(&["CLIENT", "LIST"]).text();
    let readers: Vec<&str> = list
        .lines()
        .filter(|l| l.contains(" cmd=xread "))
        .filter_map(|l| l.split(' ').next()?.strip_prefix("id="))
        .collect();
    assert_eq!(readers.len(), 1, "{list}");
    // No new connection until told: the killed reader cannot come back.
    let full = (list.lines().count() - 1).to_string();
    admin.query(&["CONFIG", "SET", "maxclients", &full]);
    admin.query(&["CLIENT", "KILL", "ID", readers[0]]);
    let messages: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    publish_pipelined(&p.url, "e", &messages, 64);
    match admin.query(&["XLEN", "subscope:topic:e"]) {
        Resp::Int(n) => assert!(n < 300, "trimmed: {n} left"),
        other => panic!("XLEN: {other:?}"),
    }
    admin.query(&["CONFIG", "SET", "maxclients", "10000"]);

    // The next item says the gap: no retained entry is served as if nothing was missed.
    let m = recv(&mut ws);
    if let Some(v) = m["payload"]["data"]["messages"].as_str() {
        panic!("{v} after the trimmed-away events, with no gap said");
    }
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "BROKER_GAP",
        "{m}"
    );
    assert_eq!(recv(&mut ws)["type"], "complete");
    let s = resume_stats(&a.url);
    assert_eq!(s["brokerGaps"], 1, "{s}");
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

                #[test]
                fn sigkill_mid_publish_resume_elsewhere() {
                    super::sigkill_mid_publish_resume_elsewhere($name);
                }

                #[test]
                fn restart_on_the_same_redis() {
                    super::restart_on_the_same_redis($name);
                }

                #[test]
                fn resume_gap_after_trimming() {
                    super::resume_gap_after_trimming($name);
                }

                #[test]
                fn redis_blip_with_streams() {
                    super::redis_blip_with_streams($name);
                }

                #[test]
                fn redis_blip_past_history_is_a_gap() {
                    super::redis_blip_past_history_is_a_gap($name);
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
