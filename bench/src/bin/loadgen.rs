//! The load generator: one process, real sockets on 127.0.0.1, `graphql-transport-ws`
//! (or, with `--transport sse`, subscribers over graphql-sse). Prints one JSON line with
//! the scenario's figures.
//!
//! `loadgen --url URL --pid PID --scenario fanout|idle|churn|cleanup|broadcast|storm|fleet
//!          [--graphql true|false] [--connections C] [--subs S] [--messages P] [--window W]
//!          [--seconds T] [--samples K] [--publish-url URL] [--transport ws|sse]
//!          [--deflate true] [--active true] [--message-bytes B] [--ca PEM]
//!          [--extra E] [--parallel K] [--spread true] [--small-buffers true]
//!          [--events N] [--rounds R] [--timeline CSV]`
//!
//! The scale scenarios (`broadcast`, `storm`, and `idle` with `--parallel`) are in
//! [`scale`], and the Redis fleet (`fleet`: subscribers spread over several processes
//! with `--urls`, `--pids`, a publisher keeping `--in-flight` mutations outstanding) in
//! [`fleet`]; `--spread true` binds every client socket to a source address of its own
//! in 127.0.0.2-250 so ephemeral ports never run out, and no scenario opens more client
//! sockets than fit below the process's open-file limit (less a margin);
//! `--small-buffers true` gives its WebSockets 4 KiB read buffers.
//!
//! A `wss://` URL runs every connection over TLS, trusting `--ca`. `--transport h2-sse`
//! makes the fan-out's subscribers (and the idle scenario's) SSE streams, S of them on
//! each of C HTTP/2 connections (ALPN `h2` under TLS, else prior knowledge).
//!
//! With `--deflate true` every WebSocket offers permessage-deflate (as browsers do) and
//! runs it when the server agrees. The fan-out reports the bytes its subscribers read off
//! the wire per event either way; `--active true` makes the idle scenario publish a few
//! events to its subscriptions after measuring, and report the RSS per connection then
//! (a connection that has sent a compressed message holds its compression state).
//!
//! Over SSE the fan-out's C x S subscribers are C x S distinct-connection streams (what
//! `EventSource` does), and the idle scenario's are single-connection streams (one
//! reservation per connection, its subscriptions POSTed to it).
//!
//! The fan-out publisher keeps `--window` (default 64) `publish` mutations in flight, as a
//! real producer does, and the result always says how many events arrived of how many
//! were expected: a figure with any loss is reported as loss, never as throughput.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::Role;
use futures_lite::StreamExt;
use serde_json::{Value, json};
use subscope::deflate::{Agreed, DeflateConfig, Deflated, Side, client_offer};
use subscope_bench::port::{self, Conn};
use tokio::sync::Mutex;

#[path = "loadgen/fleet.rs"]
mod fleet;
#[path = "loadgen/scale.rs"]
mod scale;

type Ws = WebSocketStream<Deflated<Counted<TokioAdapter<Conn>>>>;

/// Every wait in the load generator is bounded by this.
const DEADLINE: Duration = Duration::from_secs(30);

/// `--deflate true`: offer permessage-deflate on every WebSocket.
static OFFER_DEFLATE: AtomicBool = AtomicBool::new(false);

/// `--small-buffers true`: 4 KiB WebSocket read buffers instead of tungstenite's 128 KiB
/// (the scale scenarios hold up to ~19,000 connections in this one process).
static SMALL_BUFFERS: AtomicBool = AtomicBool::new(false);

/// Bytes the fan-out's subscriber connections read off their sockets.
static SUBSCRIBER_BYTES: AtomicU64 = AtomicU64::new(0);

/// A socket that adds what it reads to a counter.
struct Counted<S> {
    io: S,
    counter: Option<&'static AtomicU64>,
}

impl<S: futures_io::AsyncRead + Unpin> futures_io::AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if let (std::task::Poll::Ready(Ok(n)), Some(counter)) = (&polled, self.counter) {
            counter.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: futures_io::AsyncWrite + Unpin> futures_io::AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_close(cx)
    }
}

struct Args(HashMap<String, String>);

impl Args {
    fn get(&self, k: &str, default: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| default.to_owned())
    }
    fn num(&self, k: &str, default: u64) -> u64 {
        self.0
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

async fn connect(url: &str) -> Ws {
    connect_counting(url, None).await
}

/// A `graphql-transport-ws` connection, acknowledged; the upgrade is written by hand so
/// permessage-deflate can run under tungstenite when agreed.
async fn connect_counting(url: &str, counter: Option<&'static AtomicU64>) -> Ws {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = authority(url);
    let path = url
        .split_once("://")
        .and_then(|(_, r)| r.find('/').map(|i| &r[i..]))
        .unwrap_or("/graphql");
    let mut tcp = Conn::open(url, b"http/1.1").await;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: graphql-transport-ws\r\n"
    );
    if OFFER_DEFLATE.load(Ordering::Relaxed) {
        request.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", client_offer()));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.expect("upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tokio::time::timeout(DEADLINE, tcp.read_u8())
            .await
            .expect("upgrade answered in time")
            .expect("upgrade response");
        head.push(b);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    let agreed = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| Agreed::from_response(value.trim()))
            .flatten()
    });
    let socket = Counted {
        io: TokioAdapter::new(tcp),
        counter,
    };
    let socket = match agreed {
        Some(agreed) => Deflated::new(
            socket,
            Side::Client,
            &agreed,
            &DeflateConfig::new(),
            64 << 20,
        ),
        None => Deflated::plain(socket),
    };
    let config = SMALL_BUFFERS.load(Ordering::Relaxed).then(|| {
        async_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
    });
    let mut ws = WebSocketStream::from_raw_socket(socket, Role::Client, config).await;
    send(&mut ws, json!({"type": "connection_init"})).await;
    loop {
        if recv(&mut ws).await["type"] == "connection_ack" {
            return ws;
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return serde_json::from_str(t.as_str()).expect("json");
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

fn reset(ws: Ws) {
    let conn = ws.into_inner().into_inner().io.into_inner();
    let _ = socket2::SockRef::from(conn.tcp()).set_linger(Some(Duration::ZERO));
    drop(conn);
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(&pid.to_string(), "VmRSS:")
}

/// A `/proc/<proc>/status` field in KiB (`VmRSS:`, `VmHWM:`), 0 when unreadable.
fn status_kib(proc: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{proc}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The server's CPU time so far (user + system), in milliseconds (`/proc/PID/stat` counts in
/// USER_HZ ticks, 100 per second on Linux).
fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Issues queries on one connection (the observer).
struct Observer {
    ws: Ws,
    n: u64,
}

impl Observer {
    async fn new(url: &str) -> Self {
        Self {
            ws: connect(url).await,
            n: 0,
        }
    }

    async fn query(&mut self, q: &str) -> Value {
        self.n += 1;
        let id = format!("q{}", self.n);
        send(
            &mut self.ws,
            json!({"id": id, "type": "subscribe", "payload": {"query": q}}),
        )
        .await;
        let mut data = Value::Null;
        loop {
            let m = recv(&mut self.ws).await;
            if m["id"] != id.as_str() {
                continue;
            }
            match m["type"].as_str() {
                Some("next") => data = m["payload"]["data"].clone(),
                _ => return data,
            }
        }
    }

    async fn live_streams(&mut self) -> u64 {
        self.query("{ liveStreams }").await["liveStreams"]
            .as_u64()
            .unwrap_or(0)
    }

    /// `(liveStreams, serverStats.sharedSubscriptions)`.
    async fn live_and_shared(&mut self) -> (u64, u64) {
        let d = self
            .query("{ liveStreams serverStats { sharedSubscriptions } }")
            .await;
        (
            d["liveStreams"].as_u64().unwrap_or(0),
            d["serverStats"]["sharedSubscriptions"]
                .as_u64()
                .unwrap_or(0),
        )
    }

    /// Waits until `n` subscriptions are live beyond `base` (GraphQL contenders): `n` demo
    /// streams, or, when the server shares executions, `n` subscribers of running
    /// upstreams. Without GraphQL, a fixed settle time.
    async fn wait_live(&mut self, graphql: bool, base: u64, n: u64) {
        if !graphql {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        let end = Instant::now() + DEADLINE;
        loop {
            let (live, shared) = self.live_and_shared().await;
            if live == base + n || (shared == n && live > base) {
                return;
            }
            assert!(Instant::now() < end, "subscriptions never reached {n}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `host:port` of a `ws://host:port/path` URL.
fn authority(url: &str) -> String {
    port::authority(url)
}

/// Sends one HTTP/1.1 request on a fresh connection; returns the socket, positioned after
/// the response head, and the head.
async fn http_request(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (Conn, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = authority(url);
    let mut tcp = Conn::open(url, b"http/1.1").await;
    let mut req = format!(
        "{method} /graphql HTTP/1.1\r\nhost: {host}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            let rest = buf[i + 4..].to_vec();
            return (tcp, head, rest);
        }
        let n = tokio::time::timeout(DEADLINE, tcp.read(&mut chunk))
            .await
            .expect("response head in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Opens one distinct-connection SSE subscription.
async fn sse_subscribe(url: &str, query: &str) -> (Conn, Vec<u8>) {
    let body = json!({ "query": query }).to_string();
    let (tcp, head, rest) = http_request(
        url,
        "POST",
        &[
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
        ],
        &body,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "SSE refused: {head}");
    (tcp, rest)
}

/// Reads an SSE stream, calling `event` with each complete event's text (chunk framing
/// included: one event is one chunk, so the pattern never straddles one).
async fn read_events(
    mut tcp: Conn,
    mut buf: Vec<u8>,
    stop: &AtomicBool,
    mut event: impl FnMut(&str),
) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        while let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
            let text = String::from_utf8_lossy(&buf[..i]).into_owned();
            event(&text);
            buf.drain(..i + 2);
        }
        match tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
    }
}

/// Reads one SSE stream of an HTTP/2 connection until told to stop; its latencies and
/// when its last event came.
async fn read_h2_events(
    mut body: h2::RecvStream,
    stop: &AtomicBool,
    sent: &Mutex<Vec<Option<Instant>>>,
    received: &AtomicU64,
) -> (Vec<f64>, Option<Instant>) {
    let mut buf = Vec::new();
    let mut hits = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
            let text = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            if let Some(rest) = text.split("\"messages\":\"").nth(1)
                && let Some(idx) = leading_index(rest)
            {
                hits.push((idx, Instant::now()));
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
        match tokio::time::timeout(Duration::from_millis(50), port::h2_next(&mut body)).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(_) => continue,
        }
    }
    let sent = sent.lock().await;
    let mut lat = Vec::new();
    let mut last = None;
    for (idx, now) in hits {
        if let Some(Some(at)) = sent.get(idx) {
            lat.push(now.duration_since(*at).as_secs_f64() * 1000.0);
        }
        last = Some(now);
    }
    (lat, last)
}

async fn fanout(url: &str, a: &Args, pid: u32, graphql: bool) -> Value {
    let (c, s, p) = (
        a.num("--connections", 10),
        a.num("--subs", 10),
        a.num("--messages", 500),
    );
    let mut obs = Observer::new(url).await;
    let base = if graphql { obs.live_streams().await } else { 0 };
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; p as usize]));
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let window = a.num("--window", 64).max(1);
    let mut readers = Vec::new();
    let transport = a.get("--transport", "ws");
    let query = "subscription { messages(topic: \"bench\") }";
    let mut streams = Vec::new();
    let mut h2_conns = Vec::new();
    match transport.as_str() {
        // One distinct-connection stream per subscriber.
        "sse" => {
            for _ in 0..c * s {
                streams.push(sse_subscribe(url, query).await);
            }
        }
        // C single-connection streams carrying S subscriptions each (WebSocket's topology).
        "sse-single" => {
            for _ in 0..c {
                let (tcp, rest, token) = sse_open_reserved(url).await;
                for i in 0..s {
                    sse_post_operation(url, &token, &format!("s{i}"), query).await;
                }
                streams.push((tcp, rest));
            }
        }
        // C HTTP/2 connections carrying S distinct-mode SSE streams each (a browser page's
        // EventSources over one connection).
        "h2-sse" => {
            for _ in 0..c {
                let mut conn = port::h2_connect(url).await;
                for _ in 0..s {
                    let body = port::h2_sse(&mut conn, url, query).await;
                    let (sent, received, stop) =
                        (Arc::clone(&sent), Arc::clone(&received), Arc::clone(&stop));
                    readers.push(tokio::spawn(async move {
                        read_h2_events(body, &stop, &sent, &received).await
                    }));
                }
                h2_conns.push(conn);
            }
        }
        _ => {}
    }
    let sse = transport != "ws";
    for (tcp, rest) in streams {
        let (sent, received, stop) = (Arc::clone(&sent), Arc::clone(&received), Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut last = None;
            let mut hits = Vec::new();
            read_events(tcp, rest, &stop, |text| {
                if let Some(rest) = text.split("\"messages\":\"").nth(1)
                    && let Some(idx) = leading_index(rest)
                {
                    hits.push((idx, Instant::now()));
                    received.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
            let sent = sent.lock().await;
            for (idx, now) in hits {
                if let Some(Some(at)) = sent.get(idx) {
                    lat.push(now.duration_since(*at).as_secs_f64() * 1000.0);
                }
                last = Some(now);
            }
            (lat, last)
        }));
    }
    for _ in 0..(if sse { 0 } else { c }) {
        let mut ws = connect_counting(url, Some(&SUBSCRIBER_BYTES)).await;
        for i in 0..s {
            send(
                &mut ws,
                json!({"id": format!("s{i}"), "type": "subscribe",
                "payload": {"query": "subscription { messages(topic: \"bench\") }"}}),
            )
            .await;
        }
        let (sent, received, stop) = (Arc::clone(&sent), Arc::clone(&received), Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut last = None;
            // Until told to stop: everything arrived, or nothing more is coming.
            while !stop.load(Ordering::Relaxed) {
                let t = match tokio::time::timeout(Duration::from_millis(50), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => t,
                    Ok(Some(Ok(_))) | Err(_) => continue,
                    Ok(_) => break,
                };
                let now = Instant::now();
                let Some(rest) = t.as_str().split("\"messages\":\"").nth(1) else {
                    continue;
                };
                let Some(idx) = leading_index(rest) else {
                    continue;
                };
                if let Some(Some(at)) = sent.lock().await.get(idx) {
                    lat.push(now.duration_since(*at).as_secs_f64() * 1000.0);
                }
                last = Some(now);
                received.fetch_add(1, Ordering::Relaxed);
            }
            (lat, last)
        }));
    }
    obs.wait_live(graphql, base, c * s).await;
    // Cross-process runs publish on another server (through Redis).
    let publish_url = a.get("--publish-url", url);
    if publish_url != url {
        // Let the subscriber process's SUBSCRIBE reach Redis.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut publisher = connect(&publish_url).await;
    let bytes_before = SUBSCRIBER_BYTES.load(Ordering::Relaxed);
    let cpu_before = cpu_ms(pid);
    let started = Instant::now();
    publish_windowed(
        &mut publisher,
        p,
        window,
        a.num("--message-bytes", 0),
        &sent,
    )
    .await;
    let expected = p * c * s;
    wait_for_all_or_quiet(&received, expected).await;
    let cpu_after = cpu_ms(pid);
    let wire = SUBSCRIBER_BYTES.load(Ordering::Relaxed) - bytes_before;
    stop.store(true, Ordering::Relaxed);
    // Readers stop once everything arrived; their latencies come back with them.
    let mut lat = Vec::new();
    let mut last = started;
    for r in readers {
        let (l, t) = r.await.expect("reader");
        lat.extend(l);
        if let Some(t) = t {
            last = last.max(t);
        }
    }
    drop(h2_conns);
    lat.sort_by(f64::total_cmp);
    let delivered = received.load(Ordering::Relaxed);
    let secs = last.duration_since(started).as_secs_f64().max(1e-9);
    let cpu = cpu_before.zip(cpu_after).map(|(b, a)| a - b);
    json!({
        // No throughput for a run that lost events: it is reported as lost.
        "events_per_s": (delivered == expected).then(|| delivered as f64 / secs),
        // Server CPU (user + system) over the publish-to-last-event phase.
        "server_cpu_ms": cpu,
        "cpu_ms_per_1000_events": cpu
            .filter(|_| delivered == expected && delivered > 0)
            .map(|ms| ms * 1000.0 / delivered as f64),
        "delivered": delivered,
        "expected": expected,
        "lost": expected - delivered.min(expected),
        // WebSocket subscribers only: what they read off their sockets per event.
        "wire_bytes_per_event": (!sse && delivered > 0).then(|| wire as f64 / delivered as f64),
        "window": window,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
    })
}

/// Waits until `expected` events arrived, or nothing has for 3 s (events were lost), or
/// the deadline passed.
async fn wait_for_all_or_quiet(received: &AtomicU64, expected: u64) {
    let end = Instant::now() + DEADLINE;
    let (mut seen, mut quiet_since) = (0, Instant::now());
    while received.load(Ordering::Relaxed) < expected && Instant::now() < end {
        let now = received.load(Ordering::Relaxed);
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
        } else if quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The message index a `messages` event starts with.
fn leading_index(text: &str) -> Option<usize> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// About `bytes` of record-like text for message `i` (`--message-bytes`): fields that repeat
/// from event to event with values that change, as a feed of quotes or telemetry does.
fn padding(i: u64, bytes: u64) -> String {
    let mut out = String::new();
    let mut k = 0u64;
    while (out.len() as u64) < bytes {
        let n = i.wrapping_mul(7919).wrapping_add(k.wrapping_mul(104_729)) % 100_000;
        out.push_str(&format!(
            " symbol=S{:03} price={}.{:02} volume={} venue=XNAS seq={k};",
            (i + k) % 500,
            n / 100,
            n % 100,
            n * 3 + 17
        ));
        k += 1;
    }
    out.truncate(bytes as usize);
    out
}

/// Publishes messages `0..p` to `bench`, keeping `window` mutations in flight: the next one
/// goes out as soon as one completes. Records when each was sent. Each message is its index
/// followed by `pad` bytes of [`padding`].
async fn publish_windowed(
    ws: &mut Ws,
    p: u64,
    window: u64,
    pad: u64,
    sent: &Mutex<Vec<Option<Instant>>>,
) {
    publish_range(ws, 0..p, window, pad, sent).await;
}

/// Publishes messages `range` as [`publish_windowed`] does.
/// The publish mutation every fan-out publisher sends.
const PUBLISH: &str = "mutation($m: String!) { publish(topic: \"bench\", message: $m) }";

async fn publish_range(
    ws: &mut Ws,
    range: std::ops::Range<u64>,
    window: u64,
    pad: u64,
    sent: &Mutex<Vec<Option<Instant>>>,
) {
    let (mut next, mut done, mut in_flight) = (range.start, range.start, 0);
    while done < range.end {
        while in_flight < window && next < range.end {
            if let Some(at) = sent.lock().await.get_mut(next as usize) {
                *at = Some(Instant::now());
            }
            // One document for every publish, the message in a variable, as a real
            // producer sends it (a server may reuse the parsed document).
            let message = format!("{next}{}", padding(next, pad));
            send(
                ws,
                json!({"id": format!("p{next}"), "type": "subscribe", "payload": {
                    "query": PUBLISH,
                    "variables": {"m": message},
                }}),
            )
            .await;
            next += 1;
            in_flight += 1;
        }
        let m = recv(ws).await;
        match m["type"].as_str() {
            Some("complete") => {
                done += 1;
                in_flight -= 1;
            }
            Some("next") => {}
            _ => panic!("publisher got {m}"),
        }
    }
}

/// Reserves a single-connection stream and opens it: the stream's socket, what was read
/// past its head, and the token.
async fn sse_open_reserved(url: &str) -> (Conn, Vec<u8>, String) {
    use tokio::io::AsyncReadExt;
    let (mut tcp, head, mut token) = http_request(url, "PUT", &[], "").await;
    assert!(
        head.starts_with("HTTP/1.1 201"),
        "reservation refused: {head}"
    );
    // The body is the 32-character token.
    while token.len() < 32 {
        let mut more = [0u8; 64];
        let k = tcp.read(&mut more).await.expect("token");
        assert!(k > 0, "reservation body cut short");
        token.extend_from_slice(&more[..k]);
    }
    let token = String::from_utf8_lossy(&token).trim().to_owned();
    let (stream, head, rest) = http_request(
        url,
        "GET",
        &[
            ("accept", "text/event-stream"),
            ("x-graphql-event-stream-token", &token),
        ],
        "",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "stream refused: {head}");
    (stream, rest, token)
}

/// POSTs one subscription to a single-connection reservation.
async fn sse_post_operation(url: &str, token: &str, id: &str, query: &str) {
    let body = json!({ "query": query, "extensions": { "operationId": id } }).to_string();
    let (_tcp, head, _) = http_request(
        url,
        "POST",
        &[
            ("content-type", "application/json"),
            ("x-graphql-event-stream-token", token),
        ],
        &body,
    )
    .await;
    assert!(
        head.starts_with("HTTP/1.1 202"),
        "operation refused: {head}"
    );
}

const IDLE_QUERY: &str = "subscription { messages(topic: \"idle\") }";

/// One idle subscriber connection: a WebSocket, or (over SSE) a single-connection stream
/// and its token, which its subscriptions are POSTed with.
enum IdleConn {
    Ws(Box<Ws>),
    /// An HTTP/2 connection whose subscriptions are distinct-mode SSE streams on it.
    H2 {
        send: h2::client::SendRequest<bytes::Bytes>,
        streams: Vec<h2::RecvStream>,
    },
    /// The stream is only held open; nothing is read from an idle one.
    Sse {
        _stream: Conn,
        token: String,
    },
}

impl IdleConn {
    async fn open(url: &str, transport: &str) -> Self {
        if transport == "h2-sse" {
            return Self::H2 {
                send: port::h2_connect(url).await,
                streams: Vec::new(),
            };
        }
        if transport != "ws" {
            let (stream, _, token) = sse_open_reserved(url).await;
            Self::Sse {
                _stream: stream,
                token,
            }
        } else {
            Self::Ws(Box::new(connect(url).await))
        }
    }

    async fn subscribe(&mut self, url: &str, id: &str) {
        match self {
            Self::Ws(ws) => {
                let m = json!({"id": id, "type": "subscribe", "payload": {"query": IDLE_QUERY}});
                send(ws, m).await;
            }
            Self::Sse { token, .. } => sse_post_operation(url, token, id, IDLE_QUERY).await,
            Self::H2 { send, streams } => streams.push(port::h2_sse(send, url, IDLE_QUERY).await),
        }
    }
}

/// Many idle subscriptions: N connections (over SSE, single-connection streams), 1 then
/// 1 + `--extra` (default 4) quiet subscriptions each; RSS per connection and per extra
/// subscription. `--parallel K` opens K connections at a time (default 1); a connection
/// that failed to open is counted in `errors`, the per-connection figure is over the rest.
async fn idle(url: &str, a: &Args, pid: u32, graphql: bool) -> Value {
    let transport = a.get("--transport", "ws");
    let requested = a.num("--connections", 200);
    let extra = a.num("--extra", 4);
    scale::check_fds(requested + 2);
    let mut obs = Observer::new(url).await;
    let base_live = if graphql { obs.live_streams().await } else { 0 };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    let epoch = Instant::now();
    let (url_owned, transport_owned) = (url.to_owned(), transport.clone());
    let (mut conns, errors) = scale::open_bounded(
        requested,
        a.num("--parallel", 1),
        epoch,
        Arc::default(),
        Arc::default(),
        |_| {
            let (url, transport) = (url_owned.clone(), transport_owned.clone());
            async move {
                let mut conn = IdleConn::open(&url, &transport).await;
                conn.subscribe(&url, "i0").await;
                conn
            }
        },
    )
    .await;
    let setup_s = epoch.elapsed().as_secs_f64();
    let n = conns.len() as u64;
    obs.wait_live(graphql, base_live, n).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let with_one = rss_kib(pid);
    for conn in &mut conns {
        for i in 1..=extra {
            conn.subscribe(url, &format!("i{i}")).await;
        }
    }
    obs.wait_live(graphql, base_live, n * (1 + extra)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let with_more = rss_kib(pid);
    // Active: every connection gets events (compressed ones allocate their state).
    let active = if a.get("--active", "false") == "true" {
        for i in 0..3 {
            let q = format!(
                "mutation {{ publish(topic: \"idle\", message: \"event {i} for every idle subscription\") }}"
            );
            obs.query(&q).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some(rss_kib(pid))
    } else {
        None
    };
    drop(conns);
    let (own_rss, own_cpu) = scale::own_usage();
    json!({
        "kib_per_connection": with_one.saturating_sub(before) as f64 / n.max(1) as f64,
        "kib_per_subscription": (extra > 0)
            .then(|| with_more.saturating_sub(with_one) as f64 / (n * extra).max(1) as f64),
        "kib_per_active_connection": active.map(|a| a.saturating_sub(before) as f64 / n.max(1) as f64),
        "connections": n,
        "errors": errors,
        "extra_subscriptions": n * extra,
        "setup_s": setup_s,
        "rss_before_kib": before,
        "rss_one_kib": with_one,
        "rss_after_kib": with_more,
        "loadgen_peak_rss_kib": own_rss,
        "loadgen_cpu_ms": own_cpu,
    })
}

async fn churn(url: &str, a: &Args, pid: u32, graphql: bool) -> Value {
    let seconds = a.num("--seconds", 3);
    let mut obs = Observer::new(url).await;
    let base_live = if graphql { obs.live_streams().await } else { 0 };
    let before = rss_kib(pid);
    let started = Instant::now();
    let mut cycles = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let mut ws = connect(url).await;
        send(
            &mut ws,
            json!({"id": "c", "type": "subscribe",
            "payload": {"query": "subscription { messages(topic: \"churn\") }"}}),
        )
        .await;
        reset(ws);
        cycles += 1;
    }
    let rate = cycles as f64 / started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live_after = if graphql {
        Some(obs.live_streams().await.saturating_sub(base_live))
    } else {
        None
    };
    json!({
        "cycles_per_s": rate,
        "cycles": cycles,
        "live_after": live_after,
        "rss_growth_kib": rss_kib(pid) as i64 - before as i64,
    })
}

async fn cleanup(url: &str, a: &Args, graphql: bool) -> Value {
    if !graphql {
        return json!({"p50_ms": null, "p99_ms": null});
    }
    let k = a.num("--samples", 30);
    let mut obs = Observer::new(url).await;
    let base = obs.live_streams().await;
    let mut times = Vec::new();
    for _ in 0..k {
        let mut ws = connect(url).await;
        send(
            &mut ws,
            json!({"id": "d", "type": "subscribe",
            "payload": {"query": "subscription { delayed(ms: 600000) }"}}),
        )
        .await;
        obs.wait_live(true, base, 1).await;
        let t = Instant::now();
        reset(ws);
        while obs.live_streams().await != base {
            assert!(
                t.elapsed() < DEADLINE,
                "the reset subscription was never dropped"
            );
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    json!({"p50_ms": percentile(&times, 0.5), "p99_ms": percentile(&times, 0.99)})
}

/// Reads one subscription's `messages` results off `ws`: `(index, eventId)` each, until
/// `want` arrived (or the connection ended).
async fn read_indexed(ws: &mut Ws, want: u64) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while (got.len() as u64) < want {
        let t = match tokio::time::timeout(DEADLINE, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
            _ => break,
        };
        let m: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
        if let (Some(v), Some(id)) = (
            m["payload"]["data"]["messages"].as_str(),
            m["payload"]["extensions"]["eventId"].as_str(),
        ) && let Some(i) = leading_index(v)
        {
            got.push((i as u64, id.to_owned()));
        }
    }
    got
}

fn subscribe_after(id: &str, last: Option<&str>) -> Value {
    let mut payload = json!({"query": "subscription { messages(topic: \"bench\") }"});
    if let Some(last) = last {
        payload["extensions"] = json!({ "lastEventId": last });
    }
    json!({"id": id, "type": "subscribe", "payload": payload})
}

/// Replay speed against the live rate, in one run (the server keeps history): one live
/// subscriber receives `--messages` pipelined publishes (the live rate); then a new
/// subscriber resumes after the first one's id and catches up on the rest (the replay
/// rate). Both count delivered/expected.
async fn replay(url: &str, a: &Args) -> Value {
    let p = a.num("--messages", 10_000);
    let window = a.num("--window", 64).max(1);
    let mut live = connect(url).await;
    send(&mut live, subscribe_after("live", None)).await;
    let mut obs = Observer::new(url).await;
    let base = obs.live_streams().await;
    obs.wait_live(true, base.saturating_sub(1), 1).await;
    let sent = Mutex::new(vec![None; p as usize]);
    let mut publisher = connect(url).await;
    let started = Instant::now();
    let reading = read_indexed(&mut live, p);
    let publishing = publish_windowed(&mut publisher, p, window, 0, &sent);
    let (got, ()) = tokio::join!(reading, publishing);
    let live_secs = started.elapsed().as_secs_f64();
    let live_ok = got.iter().map(|g| g.0).eq(0..p);
    let first = got.first().map(|g| g.1.clone()).unwrap_or_default();
    let mut resumed = connect(url).await;
    let started = Instant::now();
    send(&mut resumed, subscribe_after("r", Some(&first))).await;
    let replayed = read_indexed(&mut resumed, p - 1).await;
    let replay_secs = started.elapsed().as_secs_f64();
    let replay_ok = replayed.iter().map(|g| g.0).eq(1..p);
    json!({
        "live_events_per_s": live_ok.then(|| p as f64 / live_secs),
        "replay_events_per_s": replay_ok.then(|| (p - 1) as f64 / replay_secs),
        "delivered": got.len() + replayed.len(),
        "expected": p + p - 1,
        "lost": (p + p - 1).saturating_sub((got.len() + replayed.len()) as u64),
    })
}

/// A rolling restart: subscribers on process A (`--url`), the publisher on process B
/// (`--publish-url`), both behind Redis Streams; A is killed (SIGKILL, `--kill-pid`) when
/// half is published; every subscriber reconnects to B with its last event id. Counts, per
/// subscription, events received exactly once and in order across the fleet.
async fn rolling(url: &str, a: &Args) -> Value {
    let (c, s, p) = (
        a.num("--connections", 10),
        a.num("--subs", 10),
        a.num("--messages", 500),
    );
    let window = a.num("--window", 64).max(1);
    let publish_url = a.get("--publish-url", url);
    let kill_pid = a.num("--kill-pid", 0);
    let stop = Arc::new(AtomicBool::new(false));
    let killed_flag = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let warmed = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..c {
        let mut ws = connect(url).await;
        for i in 0..s {
            send(&mut ws, subscribe_after(&format!("s{i}"), None)).await;
        }
        let (publish_url, stop, killed_flag, received, warmed) = (
            publish_url.clone(),
            Arc::clone(&stop),
            Arc::clone(&killed_flag),
            Arc::clone(&received),
            Arc::clone(&warmed),
        );
        readers.push(tokio::spawn(async move {
            // Per subscription: indices in arrival order, and the last id.
            let mut seen: HashMap<String, (Vec<u64>, Option<String>)> = HashMap::new();
            let mut ws = Some(ws);
            while !stop.load(Ordering::Relaxed) {
                let Some(conn) = ws.as_mut() else { break };
                let t = match tokio::time::timeout(Duration::from_millis(50), conn.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => t,
                    Ok(Some(Ok(_))) | Err(_) => continue,
                    Ok(_) => {
                        // A is gone: resume every subscription on B after its last id.
                        if !killed_flag.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        let mut b = connect(&publish_url).await;
                        for i in 0..s {
                            let id = format!("s{i}");
                            let last = seen.get(&id).and_then(|e| e.1.clone());
                            send(&mut b, subscribe_after(&id, last.as_deref())).await;
                        }
                        ws = Some(b);
                        continue;
                    }
                };
                let m: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                let id = m["id"].as_str().unwrap_or_default().to_owned();
                if let (Some(v), Some(eid)) = (
                    m["payload"]["data"]["messages"].as_str(),
                    m["payload"]["extensions"]["eventId"].as_str(),
                ) {
                    let e = seen.entry(id).or_default();
                    e.1 = Some(eid.to_owned());
                    match leading_index(v) {
                        Some(i) => {
                            e.0.push(i as u64);
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            warmed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            seen
        }));
    }
    let mut obs = Observer::new(url).await;
    obs.wait_live(true, 0, c * s).await;
    let mut publisher = connect(&publish_url).await;
    // A client resumes after the last id it saw: one that has seen none has nothing to
    // resume from (an application gets its starting id with its initial state). So every
    // subscriber first sees one warm-up event, which is not counted.
    let end = Instant::now() + DEADLINE;
    while warmed.load(Ordering::Relaxed) < c * s {
        assert!(
            Instant::now() < end,
            "the warm-up never reached every subscriber"
        );
        if warmed.load(Ordering::Relaxed) == 0 {
            send(
                &mut publisher,
                json!({"id": "w", "type": "subscribe", "payload": {"query":
                    "mutation { publish(topic: \"bench\", message: \"warm-up\") }"}}),
            )
            .await;
            while recv(&mut publisher).await["type"] != "complete" {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = Mutex::new(vec![None; p as usize]);
    let started = Instant::now();
    publish_range(&mut publisher, 0..p / 2, window, 0, &sent).await;
    // SIGKILL: no drain, no close frames.
    let _ = std::process::Command::new("kill")
        .args(["-9", &kill_pid.to_string()])
        .status();
    killed_flag.store(true, Ordering::Relaxed);
    publish_range(&mut publisher, p / 2..p, window, 0, &sent).await;
    let expected = p * c * s;
    wait_for_all_or_quiet(&received, expected).await;
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut exact, mut duplicates, mut delivered) = (0u64, 0u64, 0u64);
    for r in readers {
        for (_, (indices, _)) in r.await.expect("reader") {
            delivered += indices.len() as u64;
            let mut unique = indices.clone();
            unique.sort_unstable();
            unique.dedup();
            duplicates += (indices.len() - unique.len()) as u64;
            if indices.iter().copied().eq(0..p) {
                exact += 1;
            } else if std::env::var_os("LOADGEN_DEBUG").is_some() {
                let missing = (0..p).find(|i| !unique.contains(i));
                eprintln!(
                    "inexact: {} received, first missing {missing:?}, last {:?}",
                    indices.len(),
                    indices.last()
                );
            }
        }
    }
    json!({
        "subscriptions_exact": exact,
        "subscriptions": c * s,
        "delivered": delivered,
        "expected": expected,
        "duplicates": duplicates,
        "lost": expected.saturating_sub(delivered - duplicates.min(delivered)),
        "seconds": seconds,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = Args(
        raw.chunks(2)
            .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
            .collect(),
    );
    let url = args.get("--url", "ws://127.0.0.1:8000/graphql");
    if let Some(ca) = args.0.get("--ca") {
        port::trust(&std::fs::read(ca).expect("--ca PEM"));
    }
    let pid: u32 = args.num("--pid", 0) as u32;
    let graphql = args.get("--graphql", "true") == "true";
    let scenario = args.get("--scenario", "fanout");
    OFFER_DEFLATE.store(args.get("--deflate", "false") == "true", Ordering::Relaxed);
    port::spread_sources(args.get("--spread", "false") == "true");
    SMALL_BUFFERS.store(
        args.get("--small-buffers", "false") == "true",
        Ordering::Relaxed,
    );
    if matches!(scenario.as_str(), "broadcast" | "storm" | "fleet")
        || args.0.contains_key("--parallel")
    {
        scale::quiet_panics();
    }
    let result = match scenario.as_str() {
        s if s.starts_with("fanout") || s == "deep" => fanout(&url, &args, pid, graphql).await,
        s if s.starts_with("idle") => idle(&url, &args, pid, graphql).await,
        "churn" => churn(&url, &args, pid, graphql).await,
        "cleanup" => cleanup(&url, &args, graphql).await,
        "replay" => replay(&url, &args).await,
        "rolling" => rolling(&url, &args).await,
        "broadcast" => scale::broadcast(&url, &args, pid, graphql).await,
        "storm" => scale::storm(&url, &args, pid).await,
        "fleet" => fleet::fleet(&args).await,
        other => panic!("unknown scenario {other}"),
    };
    println!("{result}");
}
