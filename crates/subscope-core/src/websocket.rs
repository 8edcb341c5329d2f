//! The transport contract: what a WebSocket must offer subscope, in subscope's own types.
//!
//! A [`WebSocket`] is a stream of [`Message`]s in and a sink of [`Message`]s out, with a
//! [`WebSocketError`] that says what went wrong in terms the protocol answers differently:
//! a message above the size limit closes 1009, invalid UTF-8 closes 4400, anything else
//! ends the connection as lost. [`Tungstenite`] adapts an async-tungstenite socket (what
//! the standalone server uses); `subscope-axum` adapts axum's.
//!
//! What a transport must do by itself, as tungstenite does: answer a ping with a pong,
//! and answer the peer's close frame (echoing its code) on the next flush.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::{CloseFrame as WsCloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use futures_core::Stream;
use futures_io::{AsyncRead, AsyncWrite};
use futures_sink::Sink;

use crate::bounds::{READ_BUFFER, WRITE_BUFFER};

/// One WebSocket message, in either direction.
///
/// subscope sends only [`Message::Text`], [`Message::Ping`] and [`Message::Close`]; it
/// never reads the payload of a binary message, a ping or a pong, so none is carried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message (invalid on both subprotocols; its content is not kept).
    Binary,
    /// A ping. Received: the transport has answered it already (or will on the next
    /// flush). Sent: a liveness check with an empty payload.
    Ping,
    /// A pong.
    Pong,
    /// A close frame; `None` when it carried no code.
    Close(Option<CloseFrame>),
}

/// The code and reason of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseFrame {
    /// The close code.
    pub code: u16,
    /// The reason text (at most 123 bytes on the wire).
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with this code and reason.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Why a transport could not read or write, in the terms the protocol answers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebSocketError {
    /// An inbound message or frame was larger than the configured limit (close 1009).
    #[error("message larger than the size limit")]
    TooBig,
    /// An inbound text message was not valid UTF-8 (close 4400).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// The connection is closed (after a close handshake, or used after it).
    #[error("connection closed")]
    Closed,
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// Anything else the transport reports (a WebSocket protocol error, for example).
    #[error("transport error: {0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// A WebSocket as subscope drives it: [`Message`]s in, [`Message`]s out.
///
/// Implemented for every type with the right `Stream` and `Sink` impls; see the module
/// docs for what a transport must do on its own.
pub trait WebSocket:
    Stream<Item = Result<Message, WebSocketError>>
    + Sink<Message, Error = WebSocketError>
    + Unpin
    + Send
{
}

impl<T> WebSocket for T where
    T: Stream<Item = Result<Message, WebSocketError>>
        + Sink<Message, Error = WebSocketError>
        + Unpin
        + Send
{
}

/// An async-tungstenite WebSocket as a [`WebSocket`].
///
/// ```
/// use futures_io::{AsyncRead, AsyncWrite};
/// use subscope_core::async_tungstenite::WebSocketStream;
/// use subscope_core::websocket::{WebSocket, Tungstenite};
///
/// fn transport<S>(ws: WebSocketStream<S>) -> impl WebSocket
/// where
///     S: AsyncRead + AsyncWrite + Unpin + Send,
/// {
///     Tungstenite::from(ws)
/// }
/// ```
#[derive(Debug)]
pub struct Tungstenite<S>(WebSocketStream<S>);

impl<S> Tungstenite<S> {
    /// The WebSocket back.
    pub fn into_inner(self) -> WebSocketStream<S> {
        self.0
    }

    /// The WebSocket.
    pub fn get_ref(&self) -> &WebSocketStream<S> {
        &self.0
    }
}

impl<S> From<WebSocketStream<S>> for Tungstenite<S> {
    fn from(ws: WebSocketStream<S>) -> Self {
        Self(ws)
    }
}

/// tungstenite's error in the protocol's terms.
impl From<WsError> for WebSocketError {
    fn from(err: WsError) -> Self {
        match err {
            WsError::Capacity(_) => Self::TooBig,
            WsError::Utf8(_) => Self::InvalidUtf8,
            WsError::ConnectionClosed | WsError::AlreadyClosed => Self::Closed,
            #[cfg(feature = "deflate")]
            WsError::Io(err) => match subscope_deflate::DeflateError::from_io(&err) {
                // An inbound compressed message over the limit, found while inflating it.
                Some(subscope_deflate::DeflateError::TooBig) => Self::TooBig,
                Some(other) => Self::Other(Box::new(other)),
                None => Self::Io(err),
            },
            #[cfg(not(feature = "deflate"))]
            WsError::Io(err) => Self::Io(err),
            other => Self::Other(Box::new(other)),
        }
    }
}

impl From<WsMessage> for Message {
    fn from(message: WsMessage) -> Self {
        match message {
            WsMessage::Text(text) => Self::Text(text.as_str().to_owned()),
            WsMessage::Binary(_) => Self::Binary,
            WsMessage::Ping(_) => Self::Ping,
            // A raw frame is never yielded by a reading socket; count it as a sign of life.
            WsMessage::Pong(_) | WsMessage::Frame(_) => Self::Pong,
            WsMessage::Close(frame) => {
                Self::Close(frame.map(|f| CloseFrame::new(u16::from(f.code), f.reason.as_str())))
            }
        }
    }
}

impl From<Message> for WsMessage {
    fn from(message: Message) -> Self {
        match message {
            Message::Text(text) => Self::text(text),
            Message::Binary => Self::Binary(Default::default()),
            Message::Ping => Self::Ping(Default::default()),
            Message::Pong => Self::Pong(Default::default()),
            Message::Close(frame) => Self::Close(frame.map(|f| WsCloseFrame {
                code: f.code.into(),
                reason: f.reason.into(),
            })),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for Tungstenite<S> {
    type Item = Result<Message, WebSocketError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map(Message::from).map_err(WebSocketError::from)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for Tungstenite<S> {
    type Error = WebSocketError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_ready(cx).map_err(Into::into)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        Pin::new(&mut self.0)
            .start_send(item.into())
            .map_err(Into::into)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_flush(cx).map_err(Into::into)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_close(cx).map_err(Into::into)
    }
}

/// The tungstenite settings the standalone server uses for `config`: its message size
/// limit, a small initial read buffer, and a write buffer bounded by
/// [`Config::max_response_size`](crate::Config::max_response_size). Use them when you
/// upgrade with tungstenite yourself and hand the socket to
/// [`Server::serve_websocket`](crate::Server::serve_websocket).
pub fn websocket_config(config: &crate::Config) -> WebSocketConfig {
    let max = config.max_message_size;
    // The operation policy refuses any result above `max_response_size` (the operation
    // ends with an error), so one frame of that size, in its envelope, always fits behind
    // a full write batch.
    let largest_frame = crate::bounds::largest_outbound_frame(
        config.protocol.max_response_size,
        config.protocol.max_id_length,
    );
    WebSocketConfig::default()
        // tungstenite allocates its read buffer eagerly (128 KiB by default) for every
        // socket; subscription clients send small messages, and a larger one still fits
        // (the buffer grows for it), so idle connections stay cheap.
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        // Bounded outbound memory: what tungstenite may buffer beyond one batch.
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER.saturating_add(largest_frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_tungstenite::tungstenite::error::CapacityError;

    #[test]
    fn tungstenite_errors_map_to_protocol_terms() {
        let too_big = WsError::Capacity(CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        });
        assert!(matches!(
            WebSocketError::from(too_big),
            WebSocketError::TooBig
        ));
        assert!(matches!(
            WebSocketError::from(WsError::Utf8("bad".into())),
            WebSocketError::InvalidUtf8
        ));
        assert!(matches!(
            WebSocketError::from(WsError::ConnectionClosed),
            WebSocketError::Closed
        ));
        assert!(matches!(
            WebSocketError::from(WsError::Io(io::ErrorKind::BrokenPipe.into())),
            WebSocketError::Io(_)
        ));
    }

    #[test]
    fn messages_round_trip_through_tungstenite() {
        for message in [
            Message::Text("{}".into()),
            Message::Ping,
            Message::Pong,
            Message::Close(Some(CloseFrame::new(4400, "Invalid message received"))),
            Message::Close(None),
        ] {
            assert_eq!(Message::from(WsMessage::from(message.clone())), message);
        }
    }
}
