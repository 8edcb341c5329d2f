//! TLS and HTTP/2 for the load generator: a client socket that is TCP or TLS (by the URL's
//! scheme, `wss://`/`https://`), and graphql-sse subscribers as streams of one HTTP/2
//! connection (ALPN `h2` under TLS, prior knowledge in the clear).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// The trusted certificate (`--ca PEM`), set once at start.
static ROOTS: OnceLock<RootCertStore> = OnceLock::new();

/// Trusts the certificate(s) in `pem` for every TLS connection of this process.
pub fn trust(pem: &[u8]) {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem).flatten() {
        let _ = roots.add(cert);
    }
    let _ = ROOTS.set(roots);
}

fn connector(alpn: &[u8]) -> TlsConnector {
    let roots = ROOTS.get().cloned().unwrap_or_else(RootCertStore::empty);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// `--spread true`: bind each client socket to a loopback source address of its own.
static SPREAD: AtomicBool = AtomicBool::new(false);

/// The next source address's last octet (cycles through 2..=250).
static NEXT_SOURCE: AtomicU32 = AtomicU32::new(0);

/// Spreads this process's client sockets across source addresses 127.0.0.2 to
/// 127.0.0.250 (bind to `127.0.0.X:0` before connecting), so tens of thousands of
/// connections to one server port never run out of ephemeral ports (each source address
/// has the whole range). Only for a loopback IPv4 server.
pub fn spread_sources(on: bool) {
    SPREAD.store(on, Ordering::Relaxed);
}

/// A TCP connection to `host` (`IP:PORT`), from a spread source address when
/// [`spread_sources`] is on and the server is on loopback IPv4.
pub async fn tcp_connect(host: &str) -> io::Result<TcpStream> {
    match host.parse::<SocketAddr>() {
        Ok(addr @ SocketAddr::V4(v4))
            if SPREAD.load(Ordering::Relaxed) && v4.ip().is_loopback() =>
        {
            let x = 2 + NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % 249;
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, x as u8), 0)))?;
            socket.connect(addr).await
        }
        _ => TcpStream::connect(host).await,
    }
}

/// Whether `url` asks for TLS.
pub fn is_tls(url: &str) -> bool {
    url.starts_with("wss://") || url.starts_with("https://")
}

/// `host:port` of a `scheme://host:port/path` URL.
pub fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// A client socket: TCP, or TLS over it.
#[derive(Debug)]
pub enum Conn {
    /// In the clear.
    Plain(TcpStream),
    /// After the handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// Connects to `url`'s authority, under TLS for `wss://`/`https://` offering `alpn`
    /// (`http/1.1` for WebSocket and HTTP/1.1, `h2` for HTTP/2).
    pub async fn open(url: &str, alpn: &[u8]) -> Self {
        let host = authority(url);
        let tcp = tokio::time::timeout(std::time::Duration::from_secs(30), tcp_connect(&host))
            .await
            .expect("connected in time")
            .expect("connect");
        let _ = tcp.set_nodelay(true);
        if !is_tls(url) {
            return Self::Plain(tcp);
        }
        let ip = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let name = rustls_pki_types::ServerName::try_from(ip.to_owned()).expect("server name");
        let tls = connector(alpn)
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        Self::Tls(Box::new(tls))
    }

    /// The TCP socket below (to reset it).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One HTTP/2 connection to `url`'s server (its driver runs on a task of its own).
pub async fn h2_connect(url: &str) -> h2::client::SendRequest<Bytes> {
    let conn = Conn::open(url, b"h2").await;
    let (send, connection) = h2::client::Builder::new()
        // Wide windows: the client is not what is measured.
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake(conn)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send.ready().await.expect("HTTP/2 ready")
}

/// Opens one distinct-connection SSE subscription as a stream of `send`'s connection.
pub async fn h2_sse(
    send: &mut h2::client::SendRequest<Bytes>,
    url: &str,
    query: &str,
) -> h2::RecvStream {
    let scheme = if is_tls(url) { "https" } else { "http" };
    let request = http::Request::post(format!("{scheme}://{}/graphql", authority(url)))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(())
        .expect("request");
    let body = serde_json::json!({ "query": query }).to_string();
    let ready = send.clone().ready().await.expect("a stream slot");
    *send = ready;
    let (response, mut stream) = send.send_request(request, false).expect("send request");
    stream
        .send_data(Bytes::from(body), true)
        .expect("send body");
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200, "SSE over HTTP/2 refused");
    response.into_body()
}

/// The next DATA chunk of `body` (its window released), or `None` at the end.
pub async fn h2_next(body: &mut h2::RecvStream) -> Option<Bytes> {
    let chunk = body.data().await?.ok()?;
    let _ = body.flow_control().release_capacity(chunk.len());
    Some(chunk)
}
