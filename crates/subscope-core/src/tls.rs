//! TLS for the standalone server (feature `tls`): rustls with the ring provider, on any
//! runtime (the handshake runs over the futures-io socket an adapter accepted).
//!
//! [`Tls`] is the only type a user touches: a certificate chain and key from PEM, handed
//! to [`Config::tls`](crate::Config::tls). ALPN offers `h2` then `http/1.1`, so browsers
//! and `curl` get HTTP/2 on the same port as WebSocket over HTTP/1.1.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_io::{AsyncRead, AsyncWrite};

use crate::server::socket::Conn;
use futures_rustls::rustls;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocol ids, in the server's order of preference.
pub(crate) const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A server certificate chain and its private key, ready to accept TLS connections.
///
/// Cheap to clone (the rustls configuration is shared).
///
/// ```no_run
/// # fn main() -> Result<(), subscope_core::tls::TlsError> {
/// use subscope_core::{Config, tls::Tls};
/// let config = Config::default().tls(Tls::from_pem_files("cert.pem", "key.pem")?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("alpn", &["h2", "http/1.1"])
            .finish_non_exhaustive()
    }
}

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The certificate PEM holds no `CERTIFICATE` block, or a malformed one.
    #[error("no valid certificate in the certificate PEM: {0}")]
    Certificate(String),
    /// The key PEM holds no private key (PKCS#8, PKCS#1 or SEC1), or a malformed one.
    #[error("no valid private key in the key PEM: {0}")]
    Key(String),
    /// rustls refused the pair (a key that does not match the certificate, an
    /// unsupported key type).
    #[error("the certificate and key were refused: {0}")]
    Refused(String),
}

impl Tls {
    /// A certificate chain (leaf first) and its private key, both PEM.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::Certificate("no CERTIFICATE block".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Key(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Refused(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Refused(e.to_string()))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// [`Tls::from_pem`] from two files (they may be the same file).
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Self::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
    }

    /// Runs the server side of a handshake on `io`. A failure has already sent the
    /// client its alert when the socket allowed it.
    pub(crate) async fn accept<S>(&self, io: S) -> io::Result<Conn<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = futures_rustls::TlsAcceptor::from(Arc::clone(&self.config));
        let stream = acceptor.accept(io).await?;
        Ok(Conn::Tls(Box::new(stream)))
    }
}
