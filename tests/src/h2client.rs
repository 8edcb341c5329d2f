//! TLS and HTTP/2 instruments for the socket suite, all blocking with deadlines like the
//! rest of it:
//!
//! - the fixture certificate ([`server_tls`] for the server, [`client_config`] trusting
//!   it) and a blocking rustls client stream ([`tls_connect`]) for HTTP/1.1 and WebSocket
//!   over TLS ([`http1_exchange`], [`WsClient::handshake`]);
//! - [`H2Client`]: the `h2` crate's client on a tokio runtime of its own (one worker
//!   thread, whatever runtime serves), over cleartext TCP with prior knowledge or over
//!   TLS with ALPN `h2`; each request's stream is an [`H2Stream`] (SSE events, a whole
//!   body, `RST_STREAM`), and an RFC 8441 WebSocket runs over one ([`H2Io`]);
//! - [`RawH2`]: hand-built HTTP/2 frames over a std `TcpStream`, for what a well-behaved
//!   client never does (floods, a `GOAWAY` with streams open) and to read exactly which
//!   frames the server sends.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, Method, Request};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Message, WebSocket};

use crate::http::SseEvent;
use crate::{DEADLINE, Frame};

/// The fixture certificate (PEM): self-signed, `localhost` and `127.0.0.1`, valid
/// 2020–2120 (`tests/certs/README.md` says how it was made).
pub const CERT_PEM: &[u8] = include_bytes!("../certs/localhost-cert.pem");

/// The fixture certificate's private key (PEM, PKCS#8).
pub const KEY_PEM: &[u8] = include_bytes!("../certs/localhost-key.pem");

/// The server side of the fixture: for [`subscope::Config::tls`].
pub fn server_tls() -> subscope::tls::Tls {
    subscope::tls::Tls::from_pem(CERT_PEM, KEY_PEM).expect("the fixture certificate loads")
}

/// A rustls client configuration (ring) that trusts only the fixture certificate and
/// offers `alpn` (in this order; nothing when empty).
pub fn client_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(CERT_PEM) {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("the fixture is a valid trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The name the fixture certificate is for.
fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a DNS name")
}

/// A blocking TLS client stream: rustls over a std TCP socket.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects to `addr` over TLS offering `alpn`, completes the handshake (within
/// [`DEADLINE`]: the socket's read timeout) and returns the stream.
pub fn tls_connect(addr: SocketAddr, alpn: &[&[u8]]) -> TlsStream {
    let tcp = TcpStream::connect(addr).expect("tcp connect");
    tcp.set_nodelay(true).expect("nodelay");
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let conn = rustls::ClientConnection::new(client_config(alpn), server_name())
        .expect("client connection");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("the TLS handshake completes");
    }
    tls
}

/// A whole HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Http1Response {
    /// The status code.
    pub status: u16,
    /// `(name, value)` pairs, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Http1Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one HTTP/1.1 request on `stream` (any byte stream: TLS here) and reads its whole
/// response (a `content-length` or chunked body), leaving the connection open for the
/// next. Deadlines are the stream's.
pub fn http1_exchange<S: Read + Write>(
    stream: &mut S,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Http1Response {
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).expect("write request");
    stream.flush().expect("flush request");
    let mut raw = Vec::new();
    let read_more = |stream: &mut S, raw: &mut Vec<u8>| {
        let mut buf = [0u8; 8192];
        let n = stream.read(&mut buf).expect("read response");
        assert!(
            n > 0,
            "the connection ended mid-response: {:?}",
            String::from_utf8_lossy(raw)
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let end = loop {
        if let Some(i) = find(&raw, b"\r\n\r\n") {
            break i;
        }
        read_more(stream, &mut raw);
    };
    let text = String::from_utf8_lossy(&raw[..end]).into_owned();
    raw.drain(..end + 4);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut response = Http1Response {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        while raw.len() < len {
            read_more(stream, &mut raw);
        }
        response.body = raw[..len].to_vec();
        return response;
    }
    assert!(
        response
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked")),
        "neither content-length nor chunked: {response:?}"
    );
    loop {
        let Some(i) = find(&raw, b"\r\n") else {
            read_more(stream, &mut raw);
            continue;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..i])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .expect("chunk size");
        while raw.len() < i + 2 + size + 2 {
            read_more(stream, &mut raw);
        }
        if size == 0 {
            return response;
        }
        response.body.extend_from_slice(&raw[i + 2..i + 2 + size]);
        raw.drain(..i + 2 + size + 2);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A blocking WebSocket client over any byte stream (TLS, an HTTP/2 stream); reads are
/// bounded by the stream's own deadline.
#[derive(Debug)]
pub struct WsClient<S> {
    ws: WebSocket<S>,
}

impl<S: Read + Write> WsClient<S> {
    /// A client on a stream that already is a WebSocket's bytes (RFC 8441: the `CONNECT`
    /// stream after its 200).
    pub fn over(stream: S) -> Self {
        Self {
            ws: WebSocket::from_raw_socket(stream, Role::Client, None),
        }
    }

    /// The RFC 6455 upgrade on `stream` (HTTP/1.1, e.g. over TLS) for `url`, offering
    /// `protocol`; returns the client and the subprotocol the server chose.
    pub fn handshake(stream: S, url: &str, protocol: &str) -> (Self, Option<String>) {
        use tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("a WebSocket URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            protocol.parse().expect("a header value"),
        );
        let (ws, response) = match tungstenite::client(request, stream) {
            Ok(done) => done,
            Err(e) => panic!("the WebSocket upgrade failed: {e}"),
        };
        let chosen = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (Self { ws }, chosen)
    }

    /// Sends a JSON message.
    pub fn send(&mut self, value: Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .expect("send");
    }

    /// The next frame (pings and pongs skipped); panics if the stream's deadline passes.
    pub fn next_frame(&mut self) -> Frame {
        loop {
            if let Some(frame) = Frame::from_read(self.ws.read(), DEADLINE) {
                return frame;
            }
        }
    }

    /// The next JSON message that is not a legacy `ka`; panics on anything else.
    pub fn recv_json(&mut self) -> Value {
        loop {
            match self.next_frame() {
                Frame::Json(v) if v["type"] == "ka" => continue,
                Frame::Json(v) => return v,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// `connection_init`, then expects `connection_ack`.
    pub fn init(&mut self) {
        self.send(json!({"type": "connection_init"}));
        let ack = self.recv_json();
        assert_eq!(ack["type"], "connection_ack", "expected ack, got {ack}");
    }

    /// Sends a close frame (`code`, reason `bye`) and reads until the server's answer
    /// (messages before it skipped).
    pub fn close(&mut self, code: u16) -> Frame {
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

    /// The byte stream under the WebSocket.
    pub fn get_mut(&mut self) -> &mut S {
        self.ws.get_mut()
    }
}

/// An `h2` client connection with a blocking face: the connection task runs on a tokio
/// runtime of its own (one worker thread); every call waits at most [`DEADLINE`].
pub struct H2Client {
    rt: tokio::runtime::Runtime,
    send: SendRequest<Bytes>,
    driver: Option<tokio::task::JoinHandle<Result<(), h2::Error>>>,
    /// The same socket as the connection's, to close or reset it underneath HTTP/2.
    tcp: TcpStream,
    scheme: &'static str,
    alpn: Option<Vec<u8>>,
}

impl std::fmt::Debug for H2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Client")
            .field("tcp", &self.tcp)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// What a connection task returned when it ended.
pub type H2End = Result<(), h2::Error>;

impl H2Client {
    /// Cleartext HTTP/2 with prior knowledge (`h2c`: the preface, no upgrade).
    pub fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(addr, &h2::client::Builder::new())
    }

    /// [`H2Client::connect`] with the client's settings from `builder` (a small
    /// `initial_window_size`, ...).
    pub fn connect_with(addr: SocketAddr, builder: &h2::client::Builder) -> Self {
        let (rt, tcp, io) = socket(addr);
        let (send, conn) = rt
            .block_on(deadline(builder.handshake::<_, Bytes>(io)))
            .expect("the HTTP/2 handshake");
        let driver = rt.spawn(conn);
        Self {
            rt,
            send,
            driver: Some(driver),
            tcp,
            scheme: "http",
            alpn: None,
        }
    }

    /// HTTP/2 over TLS: ALPN offers only `h2`, the fixture certificate is trusted.
    pub fn connect_tls(addr: SocketAddr) -> Self {
        let (rt, tcp, io) = socket(addr);
        let connector = tokio_rustls::TlsConnector::from(client_config(&[b"h2"]));
        let tls = rt
            .block_on(deadline(connector.connect(server_name(), io)))
            .expect("the TLS handshake");
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let (send, conn) = rt
            .block_on(deadline(h2::client::handshake(tls)))
            .expect("the HTTP/2 handshake");
        let driver = rt.spawn(conn);
        Self {
            rt,
            send,
            driver: Some(driver),
            tcp,
            scheme: "https",
            alpn,
        }
    }

    /// The protocol TLS's ALPN agreed on (`None` in the clear).
    pub fn alpn(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// The client's address (the TCP connection every stream shares).
    pub fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr().expect("local addr")
    }

    /// A request for `path` with `headers` and `body` (end of stream after it; a request
    /// without body ends with its headers). Waits for the response head.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> H2Stream {
        let request = self.build(method, path, headers);
        self.send_request(request, Some(Bytes::copy_from_slice(body)))
    }

    fn build(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let peer = self.tcp.peer_addr().expect("peer addr");
        let mut request = Request::builder().method(method).uri(format!(
            "{}://127.0.0.1:{}{path}",
            self.scheme,
            peer.port()
        ));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).expect("a request")
    }

    /// Sends `request`, then `body` and the end of the stream (with `None`, the stream
    /// stays open for [`H2Stream::into_io`]); waits for the response head.
    pub fn send_request(&self, request: Request<()>, body: Option<Bytes>) -> H2Stream {
        self.start_request(request, body).wait()
    }

    /// [`H2Client::send_request`] without waiting for the response head.
    pub fn start_request(&self, request: Request<()>, body: Option<Bytes>) -> PendingResponse {
        let send = self.send.clone();
        let (response, send) = self.rt.block_on(async move {
            let mut send = deadline(send.ready())
                .await
                .expect("the connection takes a new stream");
            let end_with_headers = body.as_ref().is_some_and(Bytes::is_empty);
            let (response, mut stream) = send
                .send_request(request, end_with_headers)
                .expect("send the request");
            if let Some(body) = body.filter(|b| !b.is_empty()) {
                stream.send_data(body, true).expect("send the body");
            }
            (response, stream)
        });
        PendingResponse {
            handle: self.rt.handle().clone(),
            response,
            send,
        }
    }

    /// A subscription over distinct-connections SSE, not waiting for the response head.
    pub fn start_sse(&self, query: &str) -> PendingResponse {
        let body = json!({ "query": query }).to_string();
        let request = self.build(
            Method::POST,
            "/graphql",
            &[
                ("content-type", "application/json"),
                ("accept", "text/event-stream"),
            ],
        );
        self.start_request(request, Some(Bytes::from(body)))
    }

    /// A JSON POST to `/graphql` accepting `accept`.
    pub fn post_json(&self, accept: &str, body: &Value) -> H2Stream {
        self.request(
            Method::POST,
            "/graphql",
            &[("content-type", "application/json"), ("accept", accept)],
            body.to_string().as_bytes(),
        )
    }

    /// A subscription over distinct-connections SSE (asserted 200).
    pub fn sse(&self, query: &str) -> H2Stream {
        let r = self.post_json("text/event-stream", &json!({ "query": query }));
        assert_eq!(r.status, 200, "{r:?}");
        r
    }

    /// Waits until the server's SETTINGS allowed RFC 8441's extended CONNECT.
    pub fn wait_extended_connect(&self) {
        crate::wait_until("SETTINGS_ENABLE_CONNECT_PROTOCOL", DEADLINE, || {
            self.send.is_extended_connect_protocol_enabled()
        });
    }

    /// An RFC 8441 WebSocket on `/graphql` offering `protocol`: extended CONNECT
    /// (`:protocol websocket`), the response head, and the stream's DATA as the
    /// WebSocket's bytes (the stream is left open whatever the status; the caller checks
    /// it before [`H2Stream::into_io`]).
    pub fn connect_websocket(&self, protocol: &str) -> H2Stream {
        let mut request = self.build(
            Method::CONNECT,
            "/graphql",
            &[
                ("sec-websocket-version", "13"),
                ("sec-websocket-protocol", protocol),
            ],
        );
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        self.send_request(request, None)
    }

    /// Closes the TCP connection under HTTP/2 (FIN, both directions), with no `GOAWAY` and
    /// no `RST_STREAM`: what a client that vanishes politely does. Returns how the
    /// connection task ended.
    pub fn fin(mut self) -> H2End {
        self.tcp.shutdown(Shutdown::Both).expect("shutdown");
        self.wait_closed()
    }

    /// Ends the connection as a client that is done: drops its request handle, so once no
    /// stream is open `h2` sends `GOAWAY(NO_ERROR)` and closes. Returns how the connection
    /// task ended.
    pub fn close(self) -> H2End {
        let Self {
            rt, send, driver, ..
        } = self;
        drop(send);
        let driver = driver.expect("the connection task");
        rt.block_on(deadline(driver)).expect("the connection task")
    }

    /// Waits for the connection task to end (the server closed or cut the connection)
    /// and returns how it ended.
    pub fn wait_closed(&mut self) -> H2End {
        let driver = self.driver.take().expect("the connection task");
        self.rt
            .block_on(deadline(driver))
            .expect("the connection task")
    }
}

/// A current socket to `addr`, a clone of it, and the tokio stream over it on a new
/// runtime with one worker.
fn socket(addr: SocketAddr) -> (tokio::runtime::Runtime, TcpStream, tokio::net::TcpStream) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let std = TcpStream::connect(addr).expect("tcp connect");
    std.set_nodelay(true).expect("nodelay");
    let clone = std.try_clone().expect("clone");
    std.set_nonblocking(true).expect("nonblocking");
    let io = {
        let _entered = rt.enter();
        tokio::net::TcpStream::from_std(std).expect("adopt")
    };
    (rt, clone, io)
}

/// `fut` within [`DEADLINE`], or a panic that says so.
async fn deadline<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("nothing within {DEADLINE:?}"))
}

/// A request sent whose response head may not have arrived yet.
pub struct PendingResponse {
    handle: tokio::runtime::Handle,
    response: h2::client::ResponseFuture,
    send: SendStream<Bytes>,
}

impl std::fmt::Debug for PendingResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingResponse")
            .field("id", &self.send.stream_id().as_u32())
            .finish_non_exhaustive()
    }
}

impl PendingResponse {
    /// Waits for the response head (within [`DEADLINE`]).
    pub fn wait(self) -> H2Stream {
        let response = self
            .handle
            .block_on(deadline(self.response))
            .expect("a response");
        let (parts, recv) = response.into_parts();
        H2Stream {
            handle: self.handle,
            status: parts.status.as_u16(),
            headers: parts.headers,
            send: self.send,
            recv,
            body: Vec::new(),
            ended: false,
            error: None,
        }
    }
}

/// One request's HTTP/2 stream, from the response head on.
pub struct H2Stream {
    handle: tokio::runtime::Handle,
    /// The response status.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    send: SendStream<Bytes>,
    recv: RecvStream,
    body: Vec<u8>,
    ended: bool,
    /// Why the body ended other than with `END_STREAM` (a reset, the connection's end).
    pub error: Option<h2::Error>,
}

impl std::fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Stream")
            .field("id", &self.id())
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl H2Stream {
    /// The stream's id on its connection.
    pub fn id(&self) -> u32 {
        self.send.stream_id().as_u32()
    }

    /// A response header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads the next DATA frame into the body (releasing its flow-control capacity);
    /// `false` once the stream ended (cleanly or not: see [`H2Stream::error`]).
    fn read_more(&mut self, within: Duration) -> bool {
        if self.ended {
            return false;
        }
        let recv = &mut self.recv;
        let next = self
            .handle
            .block_on(async { tokio::time::timeout(within, recv.data()).await })
            .unwrap_or_else(|_| panic!("no DATA within {within:?}"));
        match next {
            Some(Ok(data)) => {
                let _ = recv.flow_control().release_capacity(data.len());
                self.body.extend_from_slice(&data);
                true
            }
            Some(Err(e)) => {
                self.error = Some(e);
                self.ended = true;
                false
            }
            None => {
                self.ended = true;
                false
            }
        }
    }

    /// The next SSE event (heartbeat comments skipped); `None` once the stream ended.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(i) = find(&self.body, b"\n\n") {
                let block: Vec<u8> = self.body.drain(..i + 2).collect();
                if let Some(event) = SseEvent::parse(&block) {
                    return Some(event);
                }
                continue;
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no SSE event within {DEADLINE:?}");
            if !self.read_more(left) {
                return None;
            }
        }
    }

    /// The whole body, until the stream ends.
    pub fn text(mut self) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the body did not end within {DEADLINE:?}");
            if !self.read_more(left) {
                break;
            }
        }
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The whole body as JSON.
    pub fn json(self) -> Value {
        let text = self.text();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Resets the stream (`RST_STREAM` with `reason`).
    pub fn reset(&mut self, reason: Reason) {
        self.send.send_reset(reason);
    }

    /// The stream as a byte stream (an RFC 8441 WebSocket's).
    pub fn into_io(self) -> H2Io {
        H2Io {
            handle: self.handle,
            send: self.send,
            recv: self.recv,
            pending: Bytes::from(self.body),
        }
    }
}

/// An open HTTP/2 stream as a blocking byte stream: reads are DATA frames (within
/// [`DEADLINE`], else `TimedOut`), writes are DATA frames.
pub struct H2Io {
    handle: tokio::runtime::Handle,
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
}

impl std::fmt::Debug for H2Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Io")
            .field("id", &self.send.stream_id().as_u32())
            .finish_non_exhaustive()
    }
}

impl H2Io {
    /// Resets the stream (`RST_STREAM` with `reason`).
    pub fn reset(&mut self, reason: Reason) {
        self.send.send_reset(reason);
    }
}

impl Read for H2Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            let recv = &mut self.recv;
            let next = self
                .handle
                .block_on(async { tokio::time::timeout(DEADLINE, recv.data()).await });
            match next {
                Err(_) => return Err(ErrorKind::TimedOut.into()),
                Ok(None) => return Ok(0),
                Ok(Some(Err(e))) => return Err(io::Error::new(ErrorKind::ConnectionReset, e)),
                Ok(Some(Ok(data))) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.advance(n);
        Ok(n)
    }
}

impl Write for H2Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // h2 buffers what the window does not take yet; the connection task sends it.
        self.send
            .send_data(Bytes::copy_from_slice(buf), false)
            .map_err(|e| io::Error::new(ErrorKind::BrokenPipe, e))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// HTTP/2 frame types (RFC 9113 6).
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
}

/// HTTP/2 frame flags.
pub mod flag {
    /// END_STREAM (DATA, HEADERS).
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING).
    pub const ACK: u8 = 0x1;
    /// END_HEADERS (HEADERS).
    pub const END_HEADERS: u8 = 0x4;
}

/// The HTTP/2 connection preface a client starts with.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Its type ([`kind`]).
    pub kind: u8,
    /// Its flags ([`flag`]).
    pub flags: u8,
    /// Its stream id (0: the connection).
    pub stream: u32,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// A GOAWAY's last stream id and error code.
    pub fn goaway(&self) -> Option<(u32, u32)> {
        (self.kind == kind::GOAWAY && self.payload.len() >= 8).then(|| {
            (
                u32_at(&self.payload, 0) & 0x7fff_ffff,
                u32_at(&self.payload, 4),
            )
        })
    }

    /// An RST_STREAM's error code.
    pub fn rst_code(&self) -> Option<u32> {
        (self.kind == kind::RST_STREAM && self.payload.len() == 4).then(|| u32_at(&self.payload, 0))
    }

    /// Whether it ends its stream (DATA or HEADERS with END_STREAM).
    pub fn ends_stream(&self) -> bool {
        matches!(self.kind, kind::DATA | kind::HEADERS) && self.flags & flag::END_STREAM != 0
    }

    /// Whether it is an ACK (of a PING or SETTINGS).
    pub fn is_ack(&self) -> bool {
        matches!(self.kind, kind::PING | kind::SETTINGS) && self.flags & flag::ACK != 0
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One frame's bytes: the 9-byte header (length, type, flags, stream id), then `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a frame's length");
    assert!(len < 1 << 24, "a frame's length fits 24 bits");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix, the prefix's high bits set to `high`.
fn hpack_int(out: &mut Vec<u8>, n: u8, high: u8, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A header block of `fields`, each a literal without indexing with a literal name (no
/// Huffman, no table): the simplest valid HPACK.
pub fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 7, 0, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 7, 0, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// A request's HEADERS frame on `stream` (pseudo-headers first, `:scheme http`,
/// `:authority 127.0.0.1`), ending the stream when `end_stream`.
pub fn request_headers(
    stream: u32,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    end_stream: bool,
) -> Vec<u8> {
    let mut fields = vec![
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1"),
    ];
    fields.extend_from_slice(headers);
    let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
    frame(kind::HEADERS, flags, stream, &hpack(&fields))
}

/// A cleartext HTTP/2 client that writes hand-built frames and reads the server's frames
/// one by one, over a std `TcpStream`; it answers SETTINGS and PING itself (unless told
/// not to), nothing else.
#[derive(Debug)]
pub struct RawH2 {
    tcp: TcpStream,
    inbuf: Vec<u8>,
    next_stream: u32,
    answer: bool,
}

impl RawH2 {
    /// Connects with prior knowledge: the preface, SETTINGS (no push, stream windows of
    /// 2^31-1) and a connection WINDOW_UPDATE to 2^31-1, so flow control never holds the
    /// server back.
    pub fn connect(addr: SocketAddr) -> Self {
        let mut c = Self::connect_bare(addr);
        let mut settings = Vec::new();
        settings.extend_from_slice(&2u16.to_be_bytes()); // SETTINGS_ENABLE_PUSH
        settings.extend_from_slice(&0u32.to_be_bytes());
        settings.extend_from_slice(&4u16.to_be_bytes()); // SETTINGS_INITIAL_WINDOW_SIZE
        settings.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
        let mut out = frame(kind::SETTINGS, 0, 0, &settings);
        out.extend(frame(
            kind::WINDOW_UPDATE,
            0,
            0,
            &(0x7fff_ffffu32 - 65_535).to_be_bytes(),
        ));
        c.send(&out).expect("write settings");
        c
    }

    /// Connects and writes only the preface and an empty SETTINGS.
    pub fn connect_bare(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).expect("tcp connect");
        tcp.set_nodelay(true).expect("nodelay");
        let mut c = Self {
            tcp,
            inbuf: Vec::new(),
            next_stream: 1,
            answer: true,
        };
        let mut out = PREFACE.to_vec();
        out.extend(frame(kind::SETTINGS, 0, 0, &[]));
        c.send(&out).expect("write the preface");
        c
    }

    /// Whether reads answer the server's SETTINGS and PINGs (on by default; off when
    /// another thread writes on the socket).
    pub fn set_answer(&mut self, answer: bool) {
        self.answer = answer;
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tcp.write_all(bytes)
    }

    /// Writes one frame.
    pub fn write_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.send(&frame(kind, flags, stream, payload))
            .expect("write a frame");
    }

    /// The id the next request gets, and reserves it.
    pub fn take_stream_id(&mut self) -> u32 {
        let id = self.next_stream;
        self.next_stream += 2;
        id
    }

    /// A request on a new stream: HEADERS, then `body` as one DATA frame with END_STREAM
    /// (no body: END_STREAM on the HEADERS). Returns the stream id.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> u32 {
        let id = self.take_stream_id();
        let mut out = request_headers(id, method, path, headers, body.is_empty());
        if !body.is_empty() {
            out.extend(frame(kind::DATA, flag::END_STREAM, id, body));
        }
        self.send(&out).expect("write a request");
        id
    }

    /// A subscription over distinct-connections SSE on a new stream; returns its id.
    pub fn sse(&mut self, query: &str) -> u32 {
        let body = json!({ "query": query }).to_string();
        self.request(
            "POST",
            "/graphql",
            &[
                ("content-type", "application/json"),
                ("accept", "text/event-stream"),
            ],
            body.as_bytes(),
        )
    }

    /// Sends GOAWAY (`last_stream` 0: the client accepts no pushed stream).
    pub fn goaway(&mut self, code: u32) {
        let mut payload = 0u32.to_be_bytes().to_vec();
        payload.extend_from_slice(&code.to_be_bytes());
        self.write_frame(kind::GOAWAY, 0, 0, &payload);
    }

    /// Sends RST_STREAM on `stream`.
    pub fn rst(&mut self, stream: u32, code: u32) {
        self.write_frame(kind::RST_STREAM, 0, stream, &code.to_be_bytes());
    }

    /// Half-closes the TCP connection (FIN).
    pub fn fin(&self) {
        self.tcp.shutdown(Shutdown::Write).expect("shutdown");
    }

    /// Resets the TCP connection: `SO_LINGER` 0, then close.
    pub fn reset(self) {
        socket2::SockRef::from(&self.tcp)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(self.tcp);
    }

    /// Another handle to the socket (a flood's writer thread).
    pub fn try_clone_tcp(&self) -> TcpStream {
        self.tcp.try_clone().expect("clone")
    }

    /// The next frame from the server, within `within`; `None` once the connection ended
    /// (EOF or reset). With answering on, SETTINGS are ACKed and PINGs answered (the frame
    /// is still returned).
    pub fn next_frame_within(&mut self, within: Duration) -> Option<RawFrame> {
        let end = Instant::now() + within;
        loop {
            if self.inbuf.len() >= 9 {
                let len = usize::from(self.inbuf[0]) << 16
                    | usize::from(self.inbuf[1]) << 8
                    | usize::from(self.inbuf[2]);
                if self.inbuf.len() >= 9 + len {
                    let f = RawFrame {
                        kind: self.inbuf[3],
                        flags: self.inbuf[4],
                        stream: u32_at(&self.inbuf, 5) & 0x7fff_ffff,
                        payload: self.inbuf[9..9 + len].to_vec(),
                    };
                    self.inbuf.drain(..9 + len);
                    if self.answer && !f.is_ack() {
                        // Best effort: the server may be gone already.
                        if f.kind == kind::SETTINGS {
                            let _ = self.send(&frame(kind::SETTINGS, flag::ACK, 0, &[]));
                        } else if f.kind == kind::PING {
                            let _ = self.send(&frame(kind::PING, flag::ACK, 0, &f.payload));
                        }
                    }
                    return Some(f);
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no frame within {within:?}");
            self.tcp.set_read_timeout(Some(left)).expect("timeout");
            let mut buf = [0u8; 16 * 1024];
            match self.tcp.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("no frame within {within:?}")
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// The next frame within [`DEADLINE`] (`None`: the connection ended).
    pub fn next_frame(&mut self) -> Option<RawFrame> {
        self.next_frame_within(DEADLINE)
    }

    /// Reads frames until each of `streams` got a non-empty DATA frame; returns every
    /// frame read. Panics if the connection ends first.
    pub fn wait_data(&mut self, streams: &[u32]) -> Vec<RawFrame> {
        let mut waiting: Vec<u32> = streams.to_vec();
        let mut seen = Vec::new();
        while !waiting.is_empty() {
            let f = self
                .next_frame()
                .unwrap_or_else(|| panic!("the connection ended; waiting for {waiting:?}"));
            if f.kind == kind::DATA && !f.payload.is_empty() {
                waiting.retain(|s| *s != f.stream);
            }
            seen.push(f);
        }
        seen
    }

    /// Every frame until the server closes the connection (within [`DEADLINE`] in all).
    pub fn read_to_end(&mut self) -> Vec<RawFrame> {
        let end = Instant::now() + DEADLINE;
        let mut frames = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the server did not close within {DEADLINE:?}: {frames:?}"
            );
            match self.next_frame_within(left) {
                Some(f) => frames.push(f),
                None => return frames,
            }
        }
    }
}
