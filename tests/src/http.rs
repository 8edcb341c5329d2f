//! A blocking HTTP/1.1 client for the HTTP transports, on a raw 127.0.0.1 socket with
//! deadlines: it reads the response head, de-chunks a streaming body as it arrives, and
//! splits it into SSE events or multipart parts, so a test can also reset, half-close or
//! stop reading at any point.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::DEADLINE;

/// A response: status, headers (lowercase names) and the socket positioned at the body.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// `(name, value)` pairs, names lowercase.
    pub headers: Vec<(String, String)>,
    tcp: TcpStream,
    /// Raw bytes read past what was consumed.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet consumed.
    body: Vec<u8>,
    chunked: bool,
    /// Remaining bytes of a `content-length` body, or of the current chunk.
    remaining: Option<usize>,
    ended: bool,
}

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event:` field (`next`, `complete`).
    pub event: String,
    /// The `data:` field.
    pub data: String,
    /// The `id:` field, if the event has one (the event id a browser's `EventSource`
    /// sends back as `Last-Event-ID` when it reconnects).
    pub id: Option<String>,
}

impl SseEvent {
    /// The event in one SSE block (its lines up to the blank line); `None` for a block
    /// with neither `event:` nor `data:` (a heartbeat comment, a `retry:` field).
    pub fn parse(block: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(block);
        let mut event = Self {
            event: String::new(),
            data: String::new(),
            id: None,
        };
        let mut any = false;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event.event = v.trim().to_owned();
                any = true;
            } else if let Some(v) = line.strip_prefix("data:") {
                event.data = v.trim().to_owned();
                any = true;
            } else if let Some(v) = line.strip_prefix("id:") {
                event.id = Some(v.trim().to_owned());
            }
        }
        any.then_some(event)
    }

    /// `data` as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// Sends one request and reads the response head.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let tcp = TcpStream::connect(addr).expect("connect");
    send(tcp, method, target, headers, body)
}

/// Sends one request on `tcp` and reads the response head.
pub fn send(
    mut tcp: TcpStream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).expect("write head");
    tcp.write_all(body).expect("write body");
    HttpResponse::read_head(tcp)
}

/// A JSON POST.
pub fn post_json(
    addr: SocketAddr,
    accept: &str,
    body: &Value,
    extra: &[(&str, &str)],
) -> HttpResponse {
    let mut headers = vec![("content-type", "application/json"), ("accept", accept)];
    headers.extend_from_slice(extra);
    request(
        addr,
        "POST",
        "/graphql",
        &headers,
        body.to_string().as_bytes(),
    )
}

/// A subscription over distinct-connections SSE.
pub fn sse(addr: SocketAddr, query: &str) -> HttpResponse {
    let r = post_json(
        addr,
        "text/event-stream",
        &serde_json::json!({ "query": query }),
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
    r
}

/// A subscription over Apollo multipart.
pub fn multipart(addr: SocketAddr, query: &str) -> HttpResponse {
    let r = post_json(
        addr,
        "multipart/mixed;subscriptionSpec=\"1.0\", application/json",
        &serde_json::json!({ "query": query }),
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
    r
}

/// The header that carries a single-connection stream token.
pub const TOKEN_HEADER: &str = "x-graphql-event-stream-token";

/// graphql-sse single-connection mode: reserves a stream (`PUT`, asserted 201) and returns
/// its token.
pub fn reserve(addr: SocketAddr) -> String {
    let r = request(addr, "PUT", "/graphql", &[], b"");
    assert_eq!(r.status, 201, "{r:?}");
    r.text()
}

/// Asks for the stream of reservation `token` (the caller checks the status).
pub fn open_stream(addr: SocketAddr, token: &str) -> HttpResponse {
    let headers = [("accept", "text/event-stream"), (TOKEN_HEADER, token)];
    request(addr, "GET", "/graphql", &headers, b"")
}

/// POSTs operation `id` running `query` to reservation `token` (the caller checks the
/// status: 202 when accepted).
pub fn post_operation(addr: SocketAddr, token: &str, id: &str, query: &str) -> HttpResponse {
    post_operation_with(addr, token, id, query, &serde_json::Map::new())
}

/// Like [`post_operation`], with more `extensions` (e.g. `lastEventId`) beside the
/// `operationId`.
pub fn post_operation_with(
    addr: SocketAddr,
    token: &str,
    id: &str,
    query: &str,
    extensions: &serde_json::Map<String, Value>,
) -> HttpResponse {
    let mut ext = extensions.clone();
    ext.insert("operationId".to_owned(), Value::from(id));
    let body = serde_json::json!({ "query": query, "extensions": ext });
    post_json(addr, "application/json", &body, &[(TOKEN_HEADER, token)])
}

impl HttpResponse {
    fn read_head(tcp: TcpStream) -> Self {
        Self::read_head_after(tcp, Vec::new())
    }

    /// The next response on the same connection, once this one's body has ended (the
    /// bytes read past it are its start).
    pub fn next_response(self) -> Self {
        assert!(self.ended, "the body has not ended");
        Self::read_head_after(self.tcp, self.raw)
    }

    /// Sends another request on this connection once the body has ended, and reads its
    /// response.
    pub fn then(self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        assert!(self.ended, "the body has not ended");
        assert!(self.raw.is_empty(), "unexpected bytes after the body");
        send(self.tcp, method, target, headers, body)
    }

    fn read_head_after(tcp: TcpStream, raw: Vec<u8>) -> Self {
        let mut r = Self {
            status: 0,
            headers: Vec::new(),
            tcp,
            raw,
            body: Vec::new(),
            chunked: false,
            remaining: None,
            ended: false,
        };
        let end = loop {
            if let Some(i) = find(&r.raw, b"\r\n\r\n") {
                break i;
            }
            assert!(
                r.read_more(),
                "connection ended before the response head: {:?}",
                String::from_utf8_lossy(&r.raw)
            );
        };
        let head = String::from_utf8_lossy(&r.raw[..end]).into_owned();
        r.raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        r.status = status
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                r.headers
                    .push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        r.chunked = r
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"));
        if !r.chunked {
            r.remaining = Some(
                r.header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            );
        }
        r
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn read_more(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match self.tcp.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no bytes from the server within {DEADLINE:?}")
            }
            Err(_) => false,
        }
    }

    /// Moves whatever is de-chunkable from `raw` to `body`.
    fn decode(&mut self) {
        loop {
            if self.ended {
                return;
            }
            match self.remaining {
                Some(0) if !self.chunked => {
                    self.ended = true;
                    return;
                }
                Some(usize::MAX) => {
                    if self.raw.len() < 2 {
                        return;
                    }
                    self.raw.drain(..2);
                    self.remaining = None;
                }
                Some(n) if n > 0 => {
                    let take = n.min(self.raw.len());
                    if take == 0 {
                        return;
                    }
                    self.body.extend(self.raw.drain(..take));
                    self.remaining = Some(n - take);
                    if self.chunked && n - take == 0 {
                        self.remaining = Some(usize::MAX); // expect the CRLF after the chunk
                    }
                }
                _ => {
                    let Some(i) = find(&self.raw, b"\r\n") else {
                        return;
                    };
                    let line = String::from_utf8_lossy(&self.raw[..i]).into_owned();
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                            .expect("chunk size");
                    self.raw.drain(..i + 2);
                    if size == 0 {
                        self.ended = true;
                        return;
                    }
                    self.remaining = Some(size);
                }
            }
        }
    }

    /// Waits until `body` holds `needle` (or the body ends: `None`).
    fn take_until(&mut self, needle: &[u8]) -> Option<Vec<u8>> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.decode();
            if let Some(i) = find(&self.body, needle) {
                let taken: Vec<u8> = self.body.drain(..i + needle.len()).collect();
                return Some(taken);
            }
            if self.ended {
                return None;
            }
            assert!(Instant::now() < deadline, "nothing within {DEADLINE:?}");
            if !self.read_more() {
                self.decode();
                if let Some(i) = find(&self.body, needle) {
                    return Some(self.body.drain(..i + needle.len()).collect());
                }
                return None;
            }
        }
    }

    /// The whole body (until its end).
    pub fn text(mut self) -> String {
        while !self.ended {
            self.decode();
            if self.ended || !self.read_more() {
                break;
            }
        }
        self.decode();
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The whole body as JSON.
    pub fn json(self) -> Value {
        let text = self.text();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The next SSE event (comments, i.e. heartbeats, are skipped); `None` when the stream
    /// ended.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let block = self.take_until(b"\n\n")?;
            if let Some(event) = SseEvent::parse(&block) {
                return Some(event);
            }
        }
    }

    /// The next raw SSE block (up to and including its blank line), whatever it holds:
    /// an event, a heartbeat comment, a `retry:` field; `None` when the stream ended.
    pub fn next_block(&mut self) -> Option<String> {
        self.take_until(b"\n\n")
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The next heartbeat comment of an SSE stream (events before it are an error).
    pub fn next_heartbeat(&mut self) {
        let block = self
            .take_until(b"\n\n")
            .expect("stream ended before a heartbeat");
        assert_eq!(
            block,
            b":\n\n",
            "expected a heartbeat, got {:?}",
            String::from_utf8_lossy(&block)
        );
    }

    /// The next non-heartbeat multipart part's JSON; `None` after the closing delimiter.
    pub fn next_part(&mut self) -> Option<Value> {
        loop {
            let part = self.next_any_part()?;
            if part != serde_json::json!({}) {
                return Some(part);
            }
        }
    }

    /// The next multipart part's JSON, heartbeats (`{}`) included; `None` after the
    /// closing delimiter.
    pub fn next_any_part(&mut self) -> Option<Value> {
        loop {
            // Each part ends with the next delimiter; `--` after it closes the stream.
            self.decode();
            if self.body.starts_with(b"--\r\n") {
                self.body.drain(..4);
                return None;
            }
            if self.body.len() < 4 && !self.ended {
                if !self.read_more() {
                    return None;
                }
                continue;
            }
            let part = self.take_until(b"\r\n--graphql")?;
            let text = String::from_utf8_lossy(&part).into_owned();
            let text = text.strip_suffix("\r\n--graphql").unwrap_or(&text);
            let Some((_, json)) = text.split_once("\r\n\r\n") else {
                continue; // the opening delimiter
            };
            let value: Value = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("part not JSON ({e}): {json:?}"));
            return Some(value);
        }
    }

    /// Reads until the body has ended (the terminating chunk, or the whole length),
    /// keeping the connection for [`Self::then`] or [`Self::next_response`].
    pub fn finish(mut self) -> (Vec<u8>, Self) {
        while !self.ended {
            self.decode();
            if self.ended {
                break;
            }
            assert!(self.read_more(), "the connection ended inside the body");
        }
        if self.chunked {
            // The last chunk's closing CRLF (no trailers).
            while self.raw.len() < 2 {
                assert!(self.read_more(), "the connection ended inside the body");
            }
            assert_eq!(
                &self.raw[..2],
                b"\r\n",
                "trailers or garbage after the last chunk"
            );
            self.raw.drain(..2);
        }
        (std::mem::take(&mut self.body), self)
    }

    /// Waits for the server to end the body (the terminating chunk), skipping anything
    /// else; fails if it does not within the deadline.
    pub fn expect_end(mut self) -> Vec<u8> {
        while !self.ended {
            self.decode();
            if self.ended || !self.read_more() {
                break;
            }
        }
        self.decode();
        self.body
    }

    /// The socket (to reset, half-close or stop reading).
    pub fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    /// Resets the connection: SO_LINGER 0, then close.
    pub fn reset(self) {
        let socket = socket2::Socket::from(self.tcp);
        socket.set_linger(Some(Duration::ZERO)).expect("linger");
        drop(socket);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads a response from `tcp` (the request was written by hand).
pub fn read_response(tcp: TcpStream) -> HttpResponse {
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    HttpResponse::read_head(tcp)
}
