//! The server side: certificate and key, the client-certificate policy, and
//! the handshake in each accepted connection's task.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

use super::{
    HANDSHAKE_TIMEOUT, Identity, identity_error, parse_roots, provider, rustls_error,
    unsupported_versions,
};
use crate::error::{Error, Result};

/// A TLS server's identity (certificate chain and private key) and its
/// client-certificate policy; give it to [`ServerBuilder::tls`](crate::ServerBuilder::tls).
///
/// ```no_run
/// use flexi_socket::TlsServerConfig;
///
/// # fn demo() -> flexi_socket::Result<()> {
/// let tls = TlsServerConfig::from_pem_files("server.crt", "server.key")?
///     .require_client_certs(std::fs::read("clients-ca.crt")?)?; // optional: mutual TLS
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsServerConfig {
    config: Arc<ServerConfig>,
    /// Kept to rebuild `config` with client verification; `None` for [`from_rustls`](Self::from_rustls).
    identity: Option<Arc<Identity>>,
    client_certs_required: bool,
}

impl TlsServerConfig {
    /// Reads the certificate chain (leaf first, then intermediates) and the
    /// private key (PKCS#8, PKCS#1 or SEC1) from PEM files.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if a file cannot be read, holds no certificate or no
    /// key, or the key does not belong to the certificate.
    pub fn from_pem_files(cert_path: impl AsRef<Path>, key_path: impl AsRef<Path>) -> Result<Self> {
        let (cert_path, key_path) = (cert_path.as_ref(), key_path.as_ref());
        let read = |path: &Path, what: &str| {
            std::fs::read(path).map_err(|error| Error::Tls {
                reason: format!("cannot read the {what} file {}: {error}", path.display()),
            })
        };
        Self::from_identity(Identity::from_pem(
            &read(cert_path, "certificate")?,
            &format!("certificate file {}", cert_path.display()),
            &read(key_path, "private key")?,
            &format!("key file {}", key_path.display()),
        )?)
    }

    /// Takes the certificate chain and the private key as PEM text in memory
    /// (e.g. from a secret store).
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if the PEM holds no certificate or no key, or the key
    /// does not belong to the certificate.
    pub fn from_pem(cert_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Result<Self> {
        Self::from_identity(Identity::from_pem(
            cert_pem.as_ref(),
            "the certificate PEM",
            key_pem.as_ref(),
            "the key PEM",
        )?)
    }

    /// Uses a ready rustls configuration as it is: certificate resolvers,
    /// client verification, ALPN, protocol versions, all yours. It is a
    /// rustls 0.23 `ServerConfig` (add `rustls = "0.23"` to your dependencies).
    pub fn from_rustls(config: Arc<ServerConfig>) -> Self {
        Self {
            config,
            identity: None,
            client_certs_required: false,
        }
    }

    /// Requires every client to present a certificate issued by one of the
    /// CA certificates in `roots_pem` (mutual TLS). A client without one, or
    /// with one from another issuer, fails the handshake and never reaches a
    /// handler.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if `roots_pem` holds no usable CA certificate, or if
    /// this configuration came from [`from_rustls`](Self::from_rustls) (set the
    /// client verifier on the rustls `ServerConfig` there).
    pub fn require_client_certs(mut self, roots_pem: impl AsRef<[u8]>) -> Result<Self> {
        let Some(identity) = self.identity.clone() else {
            return Err(Error::Tls {
                reason: "require_client_certs cannot change a configuration given by from_rustls; \
                         build the rustls ServerConfig with `with_client_cert_verifier(..)` instead"
                    .into(),
            });
        };
        let roots = parse_roots(roots_pem.as_ref(), "the client CA PEM")?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|error| Error::Tls {
                reason: format!("cannot verify client certificates with these CAs: {error}"),
            })?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(unsupported_versions)?
            .with_client_cert_verifier(verifier);
        self.config = Arc::new(with_identity(config, &identity)?);
        self.client_certs_required = true;
        Ok(self)
    }

    fn from_identity(identity: Identity) -> Result<Self> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(unsupported_versions)?
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(with_identity(config, &identity)?),
            identity: Some(Arc::new(identity)),
            client_certs_required: false,
        })
    }
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfig")
            .field("from_rustls", &self.identity.is_none())
            .field("client_certs_required", &self.client_certs_required)
            .finish_non_exhaustive()
    }
}

fn with_identity(
    builder: rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>,
    identity: &Identity,
) -> Result<ServerConfig> {
    builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|error| identity_error(&error))
}

/// What a [`ServerBuilder`](crate::ServerBuilder) holds for TLS until `bind`.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    pub(crate) config: Option<TlsServerConfig>,
    pub(crate) handshake_timeout: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            config: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

impl TlsSettings {
    /// The server's TLS side, if TLS was configured.
    pub(crate) fn into_server(self) -> Option<TlsServer> {
        self.config.map(|config| TlsServer {
            acceptor: TlsAcceptor::from(config.config),
            handshake_timeout: self.handshake_timeout,
        })
    }
}

/// A server's TLS side, shared by its connections.
#[derive(Clone)]
pub(crate) struct TlsServer {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl TlsServer {
    /// Runs the handshake on `stream`, at most the handshake timeout; the
    /// error is why it failed, in words, with the likely cause.
    pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> std::result::Result<TlsStream<S>, String> {
        let handshake = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream));
        match handshake.await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(handshake_failure(&error)),
            Err(_elapsed) => Err(format!(
                "no complete handshake within {:?} (a client that sends nothing, or a \
                 plaintext client waiting for the server to speak first)",
                self.handshake_timeout
            )),
        }
    }
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// The handshake error in words, with the likely cause for the common ones.
fn handshake_failure(error: &io::Error) -> String {
    match rustls_error(error) {
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
            format!("{error}: the client does not speak TLS (plaintext on a TLS port?)")
        }
        Some(rustls::Error::NoCertificatesPresented) => {
            format!("{error}: this server requires a client certificate")
        }
        _ => error.to_string(),
    }
}
