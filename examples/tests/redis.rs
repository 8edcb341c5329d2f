//! Several demo processes behind one Redis: a publish on either reaches subscribers on all;
//! abrupt disconnects unsubscribe the channel at Redis; a Redis restart mid-stream is
//! survived. Needs `redis-server` (installed by `cargo xtask ci`); on every runtime.

#![cfg(feature = "redis")]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Demo, connect, recv, send};

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

    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
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
    let mut ws = connect(url, protocol);
    send(&mut ws, serde_json::json!({"type": "connection_init"}));
    assert_eq!(recv(&mut ws)["type"], "connection_ack");
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
    let mut ws = connect(url, "graphql-transport-ws");
    send(&mut ws, serde_json::json!({"type": "connection_init"}));
    assert_eq!(recv(&mut ws)["type"], "connection_ack");
    let q = format!("mutation {{ publish(topic: \"{topic}\", message: \"{message}\") }}");
    send(
        &mut ws,
        serde_json::json!({"id": "p", "type": "subscribe", "payload": {"query": q}}),
    );
    let m = recv(&mut ws);
    m["payload"]["data"]["publish"].as_u64().unwrap_or(0)
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
    let mut ws = connect(url, "graphql-transport-ws");
    send(&mut ws, serde_json::json!({"type": "connection_init"}));
    assert_eq!(recv(&mut ws)["type"], "connection_ack");
    let q = "{ serverStats { brokerGaps eventsDropped subscriptionsLagged } }";
    send(
        &mut ws,
        serde_json::json!({"id": "s", "type": "subscribe", "payload": {"query": q}}),
    );
    recv(&mut ws)["payload"]["data"]["serverStats"].clone()
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
