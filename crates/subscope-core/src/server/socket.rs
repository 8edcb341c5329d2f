//! The accepted socket below HTTP: in the clear or under TLS ([`Conn`]), and the choice
//! between HTTP/1.1 and HTTP/2 (ALPN, or the cleartext HTTP/2 preface).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::AsyncReadExt;

/// The HTTP/2 connection preface (RFC 9113 3.4): a cleartext client that knows the server
/// speaks HTTP/2 ("prior knowledge") starts with it.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the first bytes either diverge from the HTTP/2 preface (HTTP/1: decided at
/// the first byte for any real request) or complete it. Returns the bytes read, to be
/// served again, and whether they are the preface. An EOF before either is HTTP/1 (hyper
/// then sees the short request and the end).
pub(crate) async fn sniff_preface<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<(Vec<u8>, bool)> {
    let mut buf = [0u8; PREFACE.len()];
    let mut len = 0;
    while len < PREFACE.len() {
        let n = io.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len] != PREFACE[..len] {
            return Ok((buf[..len].to_vec(), false));
        }
    }
    Ok((buf[..len].to_vec(), len == PREFACE.len()))
}

/// An accepted socket, in the clear or under TLS: one type for the layers above.
pub(crate) enum Conn<S> {
    /// No TLS configured.
    Plain(S),
    /// After a completed handshake.
    #[cfg(feature = "tls")]
    Tls(Box<futures_rustls::server::TlsStream<S>>),
}

impl<S> Conn<S> {
    /// Whether the client chose HTTP/2 by ALPN.
    pub(crate) fn alpn_h2(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            #[cfg(feature = "tls")]
            Self::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Self::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            #[cfg(feature = "tls")]
            Self::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_close(cx),
            #[cfg(feature = "tls")]
            Self::Tls(io) => Pin::new(io.as_mut()).poll_close(cx),
        }
    }
}
