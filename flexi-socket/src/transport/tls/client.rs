//! The client side: the root store that decides which servers are trusted,
//! the name the server's certificate must carry, an optional client
//! certificate, and the handshake on each (re)connection.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, AlertDescription, CertificateError, ClientConfig, RootCertStore};

use super::{
    HANDSHAKE_TIMEOUT, Identity, identity_error, parse_roots, provider, rustls_error,
    unsupported_versions,
};
use crate::error::{Error, Result};

/// Which servers a TLS client trusts (a root store of CA certificates), the
/// name the server's certificate must carry, and optionally the client's own
/// certificate for servers that require one; give it to
/// [`ClientBuilder::tls`](crate::ClientBuilder::tls).
///
/// ```no_run
/// use flexi_socket::TlsClientConfig;
///
/// # fn demo() -> flexi_socket::Result<()> {
/// let tls = TlsClientConfig::from_root_pem_file("ca.crt")?
///     .server_name("device.example")? // default: the host of the client's address
///     .client_cert_pem(std::fs::read("client.crt")?, std::fs::read("client.key")?)?; // optional
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsClientConfig {
    config: Arc<ClientConfig>,
    /// Kept to rebuild `config` with a client certificate; `None` for [`from_rustls`](Self::from_rustls).
    roots: Option<Arc<RootCertStore>>,
    /// `None`: the host of the client's address.
    server_name: Option<ServerName<'static>>,
    client_cert: bool,
}

impl TlsClientConfig {
    /// Trusts the CA certificates in `roots_pem` (one or more
    /// `-----BEGIN CERTIFICATE-----` sections); for a server with a
    /// self-signed certificate, that certificate itself.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if the PEM holds no usable certificate.
    pub fn with_root_pem(roots_pem: impl AsRef<[u8]>) -> Result<Self> {
        Self::from_roots(parse_roots(roots_pem.as_ref(), "the root CA PEM")?)
    }

    /// Like [`with_root_pem`](Self::with_root_pem), reading the PEM from a file.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if the file cannot be read or holds no usable certificate.
    pub fn from_root_pem_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|error| Error::Tls {
            reason: format!("cannot read the root CA file {}: {error}", path.display()),
        })?;
        Self::from_roots(parse_roots(
            &pem,
            &format!("the root CA file {}", path.display()),
        )?)
    }

    /// Uses a ready rustls configuration as it is (its own verifier, client
    /// certificate resolver, ALPN, protocol versions), connecting to the
    /// server as `server_name`. It is a rustls 0.23 `ClientConfig` (add
    /// `rustls = "0.23"` to your dependencies).
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if `server_name` is neither a DNS name nor an IP address.
    pub fn from_rustls(config: Arc<ClientConfig>, server_name: impl Into<String>) -> Result<Self> {
        Ok(Self {
            config,
            roots: None,
            server_name: Some(parse_server_name(server_name.into())?),
            client_cert: false,
        })
    }

    /// The name the server's certificate must be issued for, also sent as
    /// SNI: a DNS name (`"device.example"`) or an IP address. Default: the
    /// host part of the address given to
    /// [`FlexiSocket::client`](crate::FlexiSocket::client).
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if `name` is neither a DNS name nor an IP address.
    pub fn server_name(mut self, name: impl Into<String>) -> Result<Self> {
        self.server_name = Some(parse_server_name(name.into())?);
        Ok(self)
    }

    /// Presents this certificate chain (leaf first) and private key to
    /// servers that ask for a client certificate (mutual TLS).
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if the PEM holds no certificate or no key, the key does
    /// not belong to the certificate, or this configuration came from
    /// [`from_rustls`](Self::from_rustls) (set the client certificate on the
    /// rustls `ClientConfig` there).
    pub fn client_cert_pem(
        mut self,
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<Self> {
        let Some(roots) = self.roots.clone() else {
            return Err(Error::Tls {
                reason: "client_cert_pem cannot change a configuration given by from_rustls; \
                         build the rustls ClientConfig with `with_client_auth_cert(..)` instead"
                    .into(),
            });
        };
        let identity = Identity::from_pem(
            cert_pem.as_ref(),
            "the client certificate PEM",
            key_pem.as_ref(),
            "the client key PEM",
        )?;
        self.config = Arc::new(client_config(roots, Some(&identity))?);
        self.client_cert = true;
        Ok(self)
    }

    fn from_roots(roots: RootCertStore) -> Result<Self> {
        let roots = Arc::new(roots);
        Ok(Self {
            config: Arc::new(client_config(Arc::clone(&roots), None)?),
            roots: Some(roots),
            server_name: None,
            client_cert: false,
        })
    }
}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("from_rustls", &self.roots.is_none())
            .field("server_name", &self.server_name)
            .field("client_cert", &self.client_cert)
            .finish_non_exhaustive()
    }
}

fn client_config(roots: Arc<RootCertStore>, identity: Option<&Identity>) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(unsupported_versions)?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|error| identity_error(&error)),
    }
}

fn parse_server_name(name: String) -> Result<ServerName<'static>> {
    ServerName::try_from(name.clone()).map_err(|error| Error::Tls {
        reason: format!(
            "`{name}` is not a TLS server name ({error}); give the DNS name the server's \
             certificate is issued for (e.g. `device.example`) or its IP address"
        ),
    })
}

/// The host of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    if let Some(bracketed) = addr.strip_prefix('[') {
        return bracketed
            .split_once(']')
            .map_or(bracketed, |(host, _)| host);
    }
    addr.rsplit_once(':').map_or(addr, |(host, _)| host)
}

/// What a [`ClientBuilder`](crate::ClientBuilder) holds for TLS until `spawn`.
#[derive(Debug, Clone)]
pub(crate) struct TlsClientSettings {
    pub(crate) config: Option<TlsClientConfig>,
    pub(crate) handshake_timeout: Duration,
}

impl Default for TlsClientSettings {
    fn default() -> Self {
        Self {
            config: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

impl TlsClientSettings {
    /// The client's TLS side for a server at `addr`, if TLS was configured.
    pub(crate) fn into_client(self, addr: &str) -> Result<Option<TlsClient>> {
        let Some(config) = self.config else {
            return Ok(None);
        };
        if addr.starts_with(crate::peer_addr::UNIX_PREFIX) {
            return Err(Error::Tls {
                reason: format!("TLS clients connect over TCP; `{addr}` is a Unix socket"),
            });
        }
        let server_name = match config.server_name {
            Some(name) => name,
            None => parse_server_name(host_of(addr).to_owned()).map_err(|_| Error::Tls {
                reason: format!(
                    "cannot take a TLS server name from the address `{addr}`; name the server \
                     with `TlsClientConfig::server_name(..)`"
                ),
            })?,
        };
        Ok(Some(TlsClient {
            connector: TlsConnector::from(config.config),
            server_name,
            handshake_timeout: self.handshake_timeout,
        }))
    }
}

/// A client's TLS side: what each (re)connection's handshake needs.
pub(crate) struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    handshake_timeout: Duration,
}

impl TlsClient {
    /// Runs the handshake on a fresh TCP connection; the error is the
    /// sentence for the reconnect log and [`Error::GaveUp`].
    pub(crate) async fn handshake(
        &self,
        stream: TcpStream,
    ) -> std::result::Result<TlsStream<TcpStream>, String> {
        let peer = stream
            .peer_addr()
            .map_err(|error| format!("the connection failed before the TLS handshake: {error}"))?;
        let handshake = self.connector.connect(self.server_name.clone(), stream);
        let reason = match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => handshake_failure(&error),
            Err(_elapsed) => format!(
                "no complete handshake within {:?} (does the server speak TLS on this port?)",
                self.handshake_timeout
            ),
        };
        Err(Error::TlsHandshake {
            peer: peer.into(),
            reason,
        }
        .to_string())
    }
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// The handshake error in words, with what to change for the common ones.
fn handshake_failure(error: &io::Error) -> String {
    let hint = match rustls_error(error) {
        // BadSignature: a root has the issuer's name but not its key.
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => {
            "the server's certificate is not issued by a CA in the root store; give its CA \
             (for a self-signed server, its certificate) to `TlsClientConfig::with_root_pem`"
        }
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => {
            "connect with a name the certificate is valid for through \
             `TlsClientConfig::server_name(..)`"
        }
        Some(rustls::Error::InvalidMessage(_)) => {
            "the server does not speak TLS (a plaintext port?)"
        }
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
        )) => {
            "the server may require a client certificate; add one with \
             `TlsClientConfig::client_cert_pem`"
        }
        _ => return error.to_string(),
    };
    format!("{error}: {hint}")
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_an_address() {
        assert_eq!(host_of("localhost:8443"), "localhost");
        assert_eq!(host_of("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("device.example"), "device.example");
    }
}
