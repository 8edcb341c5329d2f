//! Helpers shared by the tests that run the `demo` binary and the runnable examples as a
//! user does.

#![allow(dead_code)] // each test file uses a different subset

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

pub(crate) struct Demo {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts `demo --addr 127.0.0.1:0 ARGS` and reads its announcement.
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut all = vec!["--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::spawn(env!("CARGO_BIN_EXE_demo"), &all)
    }

    /// Starts `program ARGS`, a server that announces `listening on ws://HOST:PORT/graphql`
    /// on its first line (the demo, or a runnable example), and reads that line.
    pub(crate) fn spawn(program: impl AsRef<OsStr>, args: &[&str]) -> Self {
        spawn(program.as_ref(), args)
    }

    /// `HOST:PORT` of the announced URL.
    pub(crate) fn addr(&self) -> &str {
        self.url
            .trim_start_matches("ws://")
            .trim_start_matches("wss://")
            .trim_end_matches("/graphql")
    }

    /// Sends SIGINT (Ctrl-C), the graceful shutdown.
    pub(crate) fn interrupt(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits, within the deadline, for the process to exit successfully.
    pub(crate) fn wait_success(&mut self) {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "exited with {status}");
                return;
            }
            assert!(Instant::now() < end, "did not exit after SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A free loopback port below the kernel's ephemeral range (`ip_local_port_range`), for a
/// demo a test restarts on its port: a port the kernel picked (port 0) may meanwhile
/// become an outgoing connection's source port (to Redis, say), and the restart could not
/// bind it. Each call starts its search elsewhere, so tests running at once differ.
/// (`xtask/src/interop.rs` has its twin for the interop clients.)
pub(crate) fn port_below_ephemeral_range() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(20_000).max(1);
    let offset = (std::process::id() % u32::from(span)) as u16;
    let offset = offset.wrapping_add(NEXT.fetch_add(97, Ordering::Relaxed)) % span;
    (0..span)
        .map(|i| 20_000 + (offset + i) % span)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
}

fn spawn(program: &OsStr, args: &[&str]) -> Demo {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(
        (url.starts_with("ws://127.0.0.1:") || url.starts_with("wss://127.0.0.1:"))
            && url.ends_with("/graphql"),
        "{url}"
    );
    assert!(!url.contains(":0/"), "the real port is printed: {url}");
    Demo { child, url }
}

pub(crate) fn connect(url: &str, protocol: &str) -> WebSocket<TcpStream> {
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let addr = url.trim_start_matches("ws://").trim_end_matches("/graphql");
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let (ws, response) = tungstenite::client(request, stream).expect("handshake");
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    ws
}

/// Sends `connection_init` and expects the ack.
pub(crate) fn init(ws: &mut WebSocket<TcpStream>) {
    send(ws, serde_json::json!({"type": "connection_init"}));
    assert_eq!(recv(ws)["type"], "connection_ack");
}

/// Connects with `protocol` and completes `connection_init`.
pub(crate) fn connect_acked(url: &str, protocol: &str) -> WebSocket<TcpStream> {
    let mut ws = connect(url, protocol);
    init(&mut ws);
    ws
}

/// Runs one query or mutation on a fresh `graphql-transport-ws` connection; its `data`.
pub(crate) fn query(url: &str, q: &str) -> serde_json::Value {
    let mut ws = connect_acked(url, "graphql-transport-ws");
    send(
        &mut ws,
        serde_json::json!({"id": "q", "type": "subscribe", "payload": {"query": q}}),
    );
    recv(&mut ws)["payload"]["data"].clone()
}

pub(crate) fn send(ws: &mut WebSocket<TcpStream>, v: serde_json::Value) {
    ws.send(Message::text(v.to_string())).expect("send");
}

pub(crate) fn recv(ws: &mut WebSocket<TcpStream>) -> serde_json::Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

pub(crate) fn close_code(ws: &mut WebSocket<TcpStream>) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return f.code.into(),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}
