//! An HTTP/1.1 connection whose first request opens an event stream, served without
//! hyper's connection state.
//!
//! hyper's HTTP/1 connection allocates an 8 KiB buffer for response heads when it is
//! created and grows its read buffer to 8 KiB at the first read, and keeps both for the
//! connection's life (neither size can be configured lower). For a stream that lives for
//! hours with one subscription, that is as much again as everything else it holds. So the
//! first request on a connection is read here: when it is one we can serve exactly (see
//! [`stream_request`]), it goes to the same service hyper calls, and its response is
//! written here, chunked, while the socket is watched for the peer leaving. Anything else,
//! and whatever follows a finished stream on a kept-alive connection, is served by hyper
//! with the bytes already read in front, so every other request behaves as before.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_graphql::Executor;
use bytes::Bytes;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use http_body::Body as _;
use http_body_util::Full;

use super::socket::Conn;
use super::{HandshakeError, Served, Server};
use crate::bounds::{HTTP_BUFFER, ROUNDS};
use crate::over_http::{ConnectionEnd, Http, HttpBody, HyperIo, Prefixed, Wants, wants};
use crate::rt::Runtime;
use crate::{CloseReason, Hooks};

/// What the first request on a connection left to do.
pub(super) enum First<S> {
    /// hyper serves the connection from here on: the socket, with what was read in front.
    Hyper(Prefixed<Conn<S>>),
    /// The connection ended here: after its stream, or before a whole request (a timeout,
    /// a failure, the peer leaving).
    Ended(Result<Served, HandshakeError>),
}

/// The most header fields a request served here may have (hyper's default limit is 100).
const MAX_HEADERS: usize = 64;
/// What one read takes from the socket while a head is incomplete.
const READ_CHUNK: usize = 1024;
/// What one read takes while a response streams: enough to see the end of input, or the
/// start of a pipelined request (left for hyper).
const PEEK: usize = 256;

/// A request served here, and how many body bytes follow its head.
struct StreamRequest {
    request: Request<Full<Bytes>>,
    head_len: usize,
    body_len: usize,
}

/// Reads the request head in `buf` when it is one this module serves: HTTP/1.1, `GET` or
/// `POST` on the GraphQL path, a body (if any) with a `Content-Length` of at most
/// [`HTTP_BUFFER`], no `Transfer-Encoding`, `Expect`, `Upgrade` or `Connection: close`,
/// every field valid, and an `Accept` the service reads as an event stream. `Err(())` for any other request
/// (hyper answers it); `Ok(None)` while the head is incomplete.
fn stream_request(buf: &[u8], path: &str) -> Result<Option<StreamRequest>, ()> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let method = match parsed.method {
        Some("GET") => Method::GET,
        Some("POST") => Method::POST,
        _ => return Err(()),
    };
    let target = parsed.path.ok_or(())?;
    if parsed.version != Some(1) || target.split('?').next() != Some(path) {
        return Err(());
    }
    // Framing hyper owns, before anything is allocated for the request.
    let mut body_len = None;
    for field in parsed.headers.iter() {
        let name = field.name;
        let value = field.value;
        if name.eq_ignore_ascii_case("content-length") {
            // Digits only, once (hyper's rule; anything else is its 400).
            let len = std::str::from_utf8(value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(())?;
            if body_len.replace(len).is_some() || len > HTTP_BUFFER {
                return Err(());
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
            || (name.eq_ignore_ascii_case("connection")
                && (contains_ignore_case(value, b"close")
                    || contains_ignore_case(value, b"upgrade")))
        {
            return Err(());
        }
    }
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .version(Version::HTTP_11);
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| ())?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| ())?;
        request = request.header(name, value);
    }
    let request = request.body(Full::new(Bytes::new())).map_err(|_| ())?;
    // The service's own reading of `Accept`, so exactly the requests it streams come here.
    if wants(request.headers()) != Some(Wants::EventStream) {
        return Err(());
    }
    Ok(Some(StreamRequest {
        request,
        head_len,
        body_len: body_len.unwrap_or(0),
    }))
}

/// Whether `hay` contains `needle`, ASCII case-insensitively.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Why a head was not read here.
enum Unread {
    /// Not a request served here, an incomplete head at the end of the input or past the
    /// head limit: hyper reads on from what `buf` holds.
    ToHyper,
    /// The socket failed.
    Failed(io::Error),
}

/// Reads until `buf` holds a whole request head served here.
async fn read_head<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Prefixed<Conn<S>>,
    buf: &mut Vec<u8>,
    path: &str,
) -> Result<StreamRequest, Unread> {
    loop {
        if let Some(found) = stream_request(buf, path).map_err(|()| Unread::ToHyper)? {
            return Ok(found);
        }
        if buf.len() >= HTTP_BUFFER {
            return Err(Unread::ToHyper);
        }
        if read_more(io, buf).await.map_err(Unread::Failed)? == 0 {
            return Err(Unread::ToHyper);
        }
    }
}

/// Reads once more into `buf` (at most [`READ_CHUNK`] bytes): how many came.
async fn read_more<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Prefixed<Conn<S>>,
    buf: &mut Vec<u8>,
) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + READ_CHUNK, 0);
    let read = future::poll_fn(|cx| Pin::new(&mut *io).poll_read(cx, &mut buf[start..])).await;
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

/// The socket with `front` (bytes read from it and not used) read first again.
fn rejoin<S>(front: &[u8], io: Prefixed<Conn<S>>) -> Prefixed<Conn<S>> {
    let (rest, io) = io.into_parts();
    let mut prefix = Vec::with_capacity(front.len() + rest.len());
    prefix.extend_from_slice(front);
    prefix.extend_from_slice(&rest);
    Prefixed::new(Bytes::from(prefix), io)
}

/// The response head, with the framing hyper would add: `Date`, and `Content-Length` for
/// a body of known length or `Transfer-Encoding: chunked` for a stream.
fn response_head(response: &http::response::Parts, body: &HttpBody) -> (Vec<u8>, Framing) {
    let status = response.status;
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &response.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !response.headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::None
    } else if let Some(len) = body.size_hint().exact() {
        if !response.headers.contains_key(header::CONTENT_LENGTH) {
            head.extend_from_slice(format!("content-length: {len}\r\n").as_bytes());
        }
        Framing::Length
    } else {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    head.extend_from_slice(b"\r\n");
    (head, framing)
}

/// How the body goes on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (204, 304).
    None,
    /// As it is, after a `Content-Length`.
    Length,
    /// In chunks, ended by an empty one.
    Chunked,
}

/// How writing a response ended.
enum Written {
    /// All of it; the connection may carry another request.
    Done,
    /// The peer closed or reset the connection before the response ended.
    PeerGone,
    /// A write failed or timed out.
    Failed(io::Error),
}

/// Writes `head` and the body to the socket until the body ends, flushing after every
/// write (TLS holds written bytes until flushed, and a pending flush is what arms the write
/// timeout), and yielding after [`ROUNDS`] frames in a row. Meanwhile the socket is read
/// while nothing is kept in `extra`, as hyper does: the end of input ends the response,
/// dropping the body and with it its operations; bytes of a pipelined request stay in
/// `extra` (at most one small read) and the socket is not read further until hyper takes
/// over.
async fn write_response<S, R>(
    io: &mut HyperIo<Prefixed<Conn<S>>, R>,
    head: Vec<u8>,
    framing: Framing,
    mut body: HttpBody,
    extra: &mut Vec<u8>,
    ending: &ConnectionEnd,
) -> Written
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: crate::rt::Timer,
{
    let (mut out, mut sent, mut finished) = (head, 0usize, framing == Framing::None);
    let mut unflushed = false;
    future::poll_fn(|cx: &mut Context<'_>| {
        let mut rounds = 0;
        loop {
            if extra.is_empty() {
                let mut chunk = [0u8; PEEK];
                match Pin::new(&mut io.io).poll_read(cx, &mut chunk) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        ending.set(CloseReason::PeerGone);
                        return Poll::Ready(Written::PeerGone);
                    }
                    Poll::Ready(Ok(n)) => extra.extend_from_slice(&chunk[..n]),
                    Poll::Pending => {}
                }
            }
            if sent < out.len() {
                match hyper::rt::Write::poll_write(Pin::new(&mut *io), cx, &out[sent..]) {
                    Poll::Ready(Ok(0)) => {
                        ending.set(CloseReason::PeerGone);
                        return Poll::Ready(Written::PeerGone);
                    }
                    Poll::Ready(Ok(n)) => {
                        sent += n;
                        unflushed = true;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Written::Failed(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if unflushed {
                match hyper::rt::Write::poll_flush(Pin::new(&mut *io), cx) {
                    Poll::Ready(Ok(())) => unflushed = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Written::Failed(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            // Everything queued is out: the buffer goes back to the allocator while the
            // stream idles.
            out = Vec::new();
            sent = 0;
            if finished {
                return Poll::Ready(Written::Done);
            }
            rounds += 1;
            if rounds > ROUNDS {
                // Others on this worker get their turn (smol and async-std have no budget).
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if framing == Framing::Chunked {
                        out.reserve_exact(data.len() + 12);
                        out.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
                        out.extend_from_slice(&data);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(&data);
                    }
                }
                Poll::Ready(None) => {
                    if framing == Framing::Chunked {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    finished = true;
                }
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

impl<E: Executor, H: Hooks, R: Runtime> Server<E, H, R> {
    /// Serves the connection's first request when it opens an event stream (see the
    /// module); otherwise hands the socket to hyper untouched but for what was read.
    pub(super) async fn first_request<S>(
        &self,
        mut io: Prefixed<Conn<S>>,
        peer: Option<SocketAddr>,
    ) -> First<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let inner = &self.inner;
        let mut buf = Vec::new();
        let path = inner.config.graphql_path.as_str();
        // The head within the handshake timeout, like hyper's `header_read_timeout`; its
        // future boxed, so the stream's future is not sized for it.
        let read = Box::pin(read_head(&mut io, &mut buf, path));
        let read = match inner.config.handshake_timeout {
            Some(limit) => {
                let timeout = async {
                    inner.runtime.sleep(limit).await;
                    None
                };
                future::or(async { Some(read.await) }, timeout).await
            }
            None => Some(read.await),
        };
        let found = match read {
            None => {
                tracing::debug!(?peer, "no complete request within the handshake timeout");
                return First::Ended(Err(HandshakeError::TimedOut));
            }
            Some(Err(Unread::ToHyper)) => return First::Hyper(rejoin(&buf, io)),
            Some(Err(Unread::Failed(e))) => {
                tracing::debug!(?peer, error = %e, "http connection failed");
                return First::Ended(Err(HandshakeError::Http(e.to_string())));
            }
            Some(Ok(found)) => found,
        };
        let StreamRequest {
            request,
            head_len,
            body_len,
        } = found;
        // The body, as hyper would read it: no deadline (a client that stops sending holds
        // only this connection), at most `HTTP_BUFFER`.
        let end = head_len + body_len;
        while buf.len() < end {
            match Box::pin(read_more(&mut io, &mut buf)).await {
                Ok(0) => return First::Ended(Ok(Served::Http)),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(?peer, error = %e, "http connection failed");
                    return First::Ended(Err(HandshakeError::Http(e.to_string())));
                }
            }
        }
        tracing::trace!(?peer, "an event stream served without hyper");
        let body = Bytes::copy_from_slice(&buf[head_len..end]);
        let mut extra = buf.split_off(end);
        drop(buf);
        let request = request.map(|_| Full::new(body));
        let ending = Arc::new(ConnectionEnd::default());
        // Boxed: the service's future lives only until the response is there.
        let response =
            Box::pin(Http::new(Arc::clone(inner)).serve(request, peer, Some(Arc::clone(&ending))))
                .await;
        let (parts, body) = response.into_parts();
        let (head, framing) = response_head(&parts, &body);
        drop(parts);
        let mut io = HyperIo::new(
            io,
            inner.runtime.clone(),
            inner.config.protocol.write_timeout,
            Arc::clone(&ending),
        );
        match write_response(&mut io, head, framing, body, &mut extra, &ending).await {
            Written::Done => First::Hyper(rejoin(&extra, io.io)),
            // hyper's verdict for the same ending.
            Written::PeerGone => First::Ended(Err(HandshakeError::Http(
                "connection closed before the response completed".into(),
            ))),
            Written::Failed(e) => {
                tracing::debug!(?peer, error = %e, "http connection failed");
                First::Ended(Err(HandshakeError::Http(e.to_string())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<StreamRequest>, ()> {
        stream_request(text.as_bytes(), "/graphql")
    }

    #[test]
    fn an_event_stream_request_is_served_here() {
        let get = "GET /graphql?query=subscription%7Bx%7D HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n";
        let found = parse(get).unwrap().unwrap();
        assert_eq!((found.head_len, found.body_len), (get.len(), 0));
        assert_eq!(
            found.request.uri().query(),
            Some("query=subscription%7Bx%7D")
        );
        let post = "POST /graphql HTTP/1.1\r\nAccept: text/event-stream, */*\r\nContent-Length: 12\r\n\r\n{\"query\":1}";
        let found = parse(post).unwrap().unwrap();
        assert_eq!(found.body_len, 12);
        assert_eq!(found.request.headers()[header::CONTENT_LENGTH], "12");
    }

    #[test]
    fn an_incomplete_head_waits() {
        assert!(matches!(
            parse("GET /graphql HTTP/1.1\r\nAccept: text/ev"),
            Ok(None)
        ));
    }

    #[test]
    fn every_other_request_goes_to_hyper() {
        for text in [
            // Not an event stream, or not our path, method or version.
            "GET /graphql HTTP/1.1\r\nAccept: application/json\r\n\r\n",
            "GET /graphql HTTP/1.1\r\nAccept: text/event-stream;q=0, application/json\r\n\r\n",
            "GET /other HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            "PUT /graphql HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            "GET /graphql HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n",
            // Framing or connection handling hyper owns.
            "POST /graphql HTTP/1.1\r\nAccept: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /graphql HTTP/1.1\r\nAccept: text/event-stream\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            "POST /graphql HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "POST /graphql HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: x\r\n\r\n",
            "POST /graphql HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: +2\r\n\r\n",
            "POST /graphql HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: 999999\r\n\r\n",
            "GET /graphql HTTP/1.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
            "GET /graphql HTTP/1.1\r\nAccept: text/event-stream\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            // Malformed.
            "GET /graphql HTTP/1.1\r\nAccept text/event-stream\r\n\r\n",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
