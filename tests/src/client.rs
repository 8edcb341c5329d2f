//! A blocking WebSocket client over a real TCP socket, with a deadline on every read.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use subscope::deflate::{Agreed, DeflateConfig, Deflated, Side, client_offer};
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Message, WebSocket};

use crate::DEADLINE;

/// What the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A JSON text message.
    Json(Value),
    /// A close frame: code and reason.
    Close(u16, String),
    /// The socket ended without a close frame.
    Gone,
}

impl Frame {
    /// What one `read` of a client WebSocket gave, as a frame: `None` for what a test never
    /// looks at (pings, pongs), so the caller reads again. Panics on a binary frame, and on
    /// a read timeout (`within`, the deadline the socket was given).
    pub fn from_read(read: tungstenite::Result<Message>, within: Duration) -> Option<Self> {
        match read {
            Ok(Message::Text(t)) => Some(Self::Json(
                serde_json::from_str(t.as_str()).expect("server sent JSON"),
            )),
            Ok(Message::Close(frame)) => {
                let (code, reason) = frame
                    .map(|f: CloseFrame| (u16::from(f.code), f.reason.as_str().to_owned()))
                    .unwrap_or((1005, String::new()));
                Some(Self::Close(code, reason))
            }
            Ok(Message::Binary(_)) => panic!("server sent a binary frame"),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                panic!("no frame within {within:?}")
            }
            Err(_) => Some(Self::Gone),
        }
    }
}

/// A test client.
#[derive(Debug)]
pub struct Client {
    ws: WebSocket<Deflated<TcpStream>>,
    /// The subprotocol the server echoed, if any.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters the server agreed to, if it did.
    pub deflate: Option<Agreed>,
}

/// The trimmed value of header `name` (any case) in an HTTP response head.
fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, value) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Whether this test run offers permessage-deflate on every connection and runs the demo
/// server with it on (`SUBSCOPE_TEST_DEFLATE=1`: the socket suite over compressed
/// connections).
pub fn deflate_suite() -> bool {
    std::env::var_os("SUBSCOPE_TEST_DEFLATE").is_some_and(|v| v == "1")
}

impl Client {
    /// Connects offering `protocols` (as one header line, in this order; none if empty).
    pub fn connect(addr: SocketAddr, protocols: &[&str]) -> Self {
        let line = protocols.join(", ");
        let lines: &[&str] = if protocols.is_empty() {
            &[]
        } else {
            &[line.as_str()]
        };
        Self::connect_lines(addr, lines)
    }

    /// Connects with one `Sec-WebSocket-Protocol` header line per entry of `lines`.
    ///
    /// The upgrade is written by hand, like a raw-socket client: it does not validate the
    /// echoed subprotocol, so tests can see what the server answers when none fits.
    pub fn connect_lines(addr: SocketAddr, lines: &[&str]) -> Self {
        let lines: Vec<String> = lines
            .iter()
            .map(|l| format!("Sec-WebSocket-Protocol: {l}"))
            .collect();
        match Self::try_connect(addr, "/graphql", &lines) {
            Ok(client) => client,
            Err(head) => panic!("upgrade refused: {head}"),
        }
    }

    /// Upgrades `path` with these extra header lines (`Name: value`, `Sec-WebSocket-Protocol`
    /// included); `Err` holds the response head when the server did not answer 101.
    pub fn try_connect(addr: SocketAddr, path: &str, headers: &[String]) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        Self::upgrade_with(stream, addr, path, headers)
    }

    /// A `graphql-transport-ws` client whose TCP receive buffer is `bytes` from the start,
    /// so a client that stops reading stalls the server after little data (as a phone on a
    /// bad link does), not after the megabytes loopback autotuning would allow.
    pub fn modern_with_receive_buffer(addr: SocketAddr, bytes: usize) -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        socket.connect(&addr.into()).expect("tcp connect");
        let lines = ["Sec-WebSocket-Protocol: graphql-transport-ws".to_owned()];
        match Self::upgrade_with(socket.into(), addr, "/graphql", &lines) {
            Ok(client) => client,
            Err(head) => panic!("upgrade refused: {head}"),
        }
    }

    fn upgrade_with(
        mut stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        headers: &[String],
    ) -> Result<Self, String> {
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        for line in headers {
            request.push_str(&format!("{line}\r\n"));
        }
        let offers_own = headers.iter().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("sec-websocket-extensions")
        });
        if deflate_suite() && !offers_own {
            request.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", client_offer()));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).expect("write upgrade");
        // Read the response head byte by byte so no frame after it is consumed.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).expect("read upgrade response");
            assert_eq!(
                n,
                1,
                "server closed during the upgrade: {:?}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("ascii head");
        if !head.starts_with("HTTP/1.1 101") {
            return Err(head);
        }
        let protocol = header_value(&head, "sec-websocket-protocol").map(str::to_owned);
        let deflate =
            header_value(&head, "sec-websocket-extensions").and_then(Agreed::from_response);
        let stream = match &deflate {
            Some(agreed) => Deflated::new(
                stream,
                Side::Client,
                agreed,
                &DeflateConfig::new(),
                64 << 20,
            ),
            None => Deflated::plain(stream),
        };
        let ws = WebSocket::from_raw_socket(stream, Role::Client, None);
        Ok(Self {
            ws,
            protocol,
            deflate,
        })
    }

    /// Connects with `graphql-transport-ws`.
    pub fn modern(addr: SocketAddr) -> Self {
        Self::connect(addr, &["graphql-transport-ws"])
    }

    /// Connects with the legacy `graphql-ws`.
    pub fn legacy(addr: SocketAddr) -> Self {
        Self::connect(addr, &["graphql-ws"])
    }

    /// Sends a JSON message.
    pub fn send(&mut self, value: Value) {
        self.send_text(&value.to_string());
    }

    /// Sends a raw text frame.
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    /// Sends a raw text frame, reporting failure instead of panicking (for floods).
    pub fn try_send_text(&mut self, text: &str) -> Result<(), tungstenite::Error> {
        self.try_send(Message::text(text))
    }

    /// Sends any message, reporting failure instead of panicking (for floods).
    pub fn try_send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        self.ws.send(message)
    }

    /// Sends any message (binary, ping...).
    pub fn send_message(&mut self, message: Message) {
        self.ws.send(message).expect("send");
    }

    /// Sends `connection_init` with `payload` and expects `connection_ack` (and on the
    /// legacy protocol, the first `ka` if `expect_ka`).
    pub fn init(&mut self, payload: Option<Value>) -> Value {
        let mut msg = json!({"type": "connection_init"});
        if let Some(p) = payload {
            msg["payload"] = p;
        }
        self.send(msg);
        let ack = self.recv_json();
        assert_eq!(ack["type"], "connection_ack", "expected ack, got {ack}");
        ack
    }

    /// `subscribe` (modern) with a query.
    pub fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query}}));
    }

    /// `start` (legacy) with a query.
    pub fn start(&mut self, id: &str, query: &str) {
        self.send(json!({"id": id, "type": "start", "payload": {"query": query}}));
    }

    /// The next frame within `within`, skipping pings/pongs. Panics on timeout.
    pub fn next_frame_within(&mut self, within: Duration) -> Frame {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no frame within {within:?}");
            self.ws
                .get_ref()
                .get_ref()
                .set_read_timeout(Some(left))
                .expect("timeout");
            if let Some(frame) = Frame::from_read(self.ws.read(), within) {
                return frame;
            }
        }
    }

    /// The next frame within the default deadline.
    pub fn next_frame(&mut self) -> Frame {
        self.next_frame_within(DEADLINE)
    }

    /// The next JSON message; panics on anything else.
    pub fn recv_json(&mut self) -> Value {
        match self.next_frame() {
            Frame::Json(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Next JSON message that is not a legacy `ka`.
    pub fn recv_json_skip_ka(&mut self) -> Value {
        loop {
            let v = self.recv_json();
            if v["type"] != "ka" {
                return v;
            }
        }
    }

    /// Expects a close frame and returns its code and reason (skipping other messages of
    /// types in `skip`).
    pub fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.next_frame() {
                Frame::Close(code, reason) => return (code, reason),
                Frame::Json(v) if v["type"] == "ka" => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Expects a close frame, skipping any messages before it.
    pub fn expect_close_skipping_data(&mut self) -> (u16, String) {
        loop {
            match self.next_frame() {
                Frame::Close(code, reason) => return (code, reason),
                Frame::Json(_) => continue,
                Frame::Gone => panic!("socket ended without a close frame"),
            }
        }
    }

    /// Asserts that nothing but `ka`/pings arrives for `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) {
        let end = Instant::now() + quiet;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.ws
                .get_ref()
                .get_ref()
                .set_read_timeout(Some(left))
                .expect("timeout");
            match self.ws.read() {
                Ok(Message::Text(t)) if t.as_str() == r#"{"type":"ka"}"# => {}
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Ok(other) => panic!("expected silence, got {other:?}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return;
                }
                Err(e) => panic!("expected silence, got error {e}"),
            }
        }
    }

    /// Sends a close frame (reason `bye`), in the same write as anything [`Client::queue`]d,
    /// and reads until the server's answer.
    pub fn close(mut self, code: u16) -> Frame {
        self.ws
            .close(Some(CloseFrame {
                code: code.into(),
                reason: "bye".into(),
            }))
            .expect("close");
        loop {
            match self.next_frame() {
                Frame::Json(_) => continue,
                other => return other,
            }
        }
    }

    /// The TCP socket, for a test that goes on with raw bytes (nothing is buffered on it
    /// right after the upgrade).
    pub fn into_tcp(self) -> TcpStream {
        self.ws.into_inner().into_inner()
    }

    /// Vanishes abruptly: `SO_LINGER` 0, so the kernel sends a TCP reset.
    pub fn reset(self) {
        let stream = self.into_tcp();
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(stream);
    }

    /// Closes the TCP socket without a close frame (FIN).
    pub fn drop_tcp(self) {
        drop(self.into_tcp());
    }

    /// Queues a message without flushing (so several go out in one write).
    pub fn queue(&mut self, message: Message) {
        self.ws.write(message).expect("queue");
    }

    /// Tries to write out what the client has queued; `false` while the socket is full.
    pub fn try_flush(&mut self) -> bool {
        self.ws.flush().is_ok()
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        self.ws.get_ref().get_ref()
    }
}
