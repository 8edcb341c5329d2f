//! permessage-deflate when the `deflate` feature is on; a pass-through socket otherwise,
//! so the WebSocket stack has one shape either way.

#[cfg(feature = "deflate")]
pub(crate) use subscope_deflate::{Agreed, Deflated};

#[cfg(not(feature = "deflate"))]
pub(crate) use off::{Agreed, Deflated};

#[cfg(not(feature = "deflate"))]
mod off {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_io::{AsyncRead, AsyncWrite};

    /// Never negotiated without the feature: no value exists.
    #[derive(Debug, Clone)]
    pub(crate) enum Agreed {}

    /// The socket itself.
    #[derive(Debug)]
    pub(crate) struct Deflated<S>(S);

    impl<S> Deflated<S> {
        pub(crate) fn plain(io: S) -> Self {
            Self(io)
        }

        pub(crate) fn into_inner(self) -> S {
            self.0
        }
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Deflated<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Deflated<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_close(cx)
        }
    }
}
