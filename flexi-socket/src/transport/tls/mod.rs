//! TLS (feature `tls`) for servers and clients: the configurations users
//! build, and the handshake that runs in each connection's own task under a
//! timeout (a server's accept loop and a client's caller never wait on it).
//! Both sides share PEM parsing, the crypto provider and how a TLS stream is
//! read once the handshake is done.

mod client;
mod server;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::{self, RootCertStore};

pub use client::TlsClientConfig;
pub(crate) use client::{TlsClient, TlsClientSettings};
pub use server::TlsServerConfig;
pub(crate) use server::{TlsServer, TlsSettings};

use crate::error::{Error, Result};
use crate::framing::Framing;
use crate::transport::stream::Stream;

/// The default of both sides' `tls_handshake_timeout`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One provider, named explicitly: no dependence on a process-wide default
/// that another crate in the binary may or may not have installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn unsupported_versions(error: rustls::Error) -> Error {
    Error::Tls {
        reason: format!("the ring provider supports no safe TLS version: {error}"),
    }
}

/// A certificate chain and its private key: a server's identity, or a
/// client's certificate for mutual TLS.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    fn from_pem(
        cert_pem: &[u8],
        cert_source: &str,
        key_pem: &[u8],
        key_source: &str,
    ) -> Result<Self> {
        Ok(Self {
            chain: parse_chain(cert_pem, cert_source)?,
            key: parse_key(key_pem, key_source)?,
        })
    }
}

/// Why rustls refused a certificate and key, and what to do about it.
fn identity_error(error: &rustls::Error) -> Error {
    let hint = match error {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not fit the certificate; pass the key that was \
             generated with this certificate"
        }
        _ => "ring supports RSA, ECDSA (P-256, P-384) and Ed25519 keys",
    };
    Error::Tls {
        reason: format!("cannot use this certificate and key ({error}): {hint}"),
    }
}

fn parse_chain(pem: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| Error::Tls {
            reason: format!("{source} is not valid PEM: {error}"),
        })?;
    if chain.is_empty() {
        let swapped = if PrivateKeyDer::from_pem_slice(pem).is_ok() {
            " but a private key: are the certificate and the key swapped?"
        } else {
            "; expected `-----BEGIN CERTIFICATE-----` sections"
        };
        return Err(Error::Tls {
            reason: format!("{source} holds no certificate{swapped}"),
        });
    }
    Ok(chain)
}

fn parse_key(pem: &[u8], source: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| {
        let hint = if CertificateDer::pem_slice_iter(pem).any(|cert| cert.is_ok()) {
            "it holds a certificate: are the certificate and the key swapped?".to_owned()
        } else {
            format!(
                "expected `-----BEGIN PRIVATE KEY-----` (PKCS#8), `RSA PRIVATE KEY` or \
                 `EC PRIVATE KEY` ({error})"
            )
        };
        Error::Tls {
            reason: format!("{source} holds no private key: {hint}"),
        }
    })
}

/// The CA certificates in `pem` as trust anchors.
fn parse_roots(pem: &[u8], source: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in parse_chain(pem, source)? {
        roots.add(cert).map_err(|error| Error::Tls {
            reason: format!("a certificate in {source} is not usable as a trust anchor: {error}"),
        })?;
    }
    Ok(roots)
}

/// The rustls error inside a failed handshake's I/O error, if there is one.
fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The stream a connection task runs on over a stream whose handshake is
/// done, read as [`UnnotifiedClose`] says.
pub(crate) fn driven<S>(stream: S, framing: &Framing) -> impl Stream
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    UnnotifiedClose {
        inner: stream,
        is_eof: framing.frame_deadline_applies(),
    }
}

/// A TLS stream, written as it is and read as follows. A peer that closes without TLS's close_notify (many
/// do: killed processes, embedded stacks) could be an attacker truncating the
/// stream. Where the framing itself reports a cut frame (lines, separator,
/// fixed, length prefix, custom codecs) that is harmless and counts as an
/// ordinary EOF; where pending bytes at EOF become a message (eof, raw,
/// idle_gap) it stays an error.
struct UnnotifiedClose<S> {
    inner: S,
    is_eof: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for UnnotifiedClose<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let is_eof = self.is_eof;
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Err(error)) if is_eof && error.kind() == io::ErrorKind::UnexpectedEof => {
                tracing::debug!(%error, "peer closed without close_notify; taken as EOF");
                Poll::Ready(Ok(()))
            }
            polled => polled,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for UnnotifiedClose<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads with a buffer ready: TLS cannot wait for bytes without reading them.
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for UnnotifiedClose<S> {}
