//! TLS for a TCP client (feature `tls`): the builder's settings. The
//! handshake itself runs on each (re)connection (`connect.rs`).

use std::time::Duration;

use super::ClientBuilder;
use crate::transport::tls::TlsClientConfig;

impl ClientBuilder {
    /// Speaks TLS: every (re)connection does a TLS handshake, in the client's
    /// own task under [`tls_handshake_timeout`](Self::tls_handshake_timeout),
    /// before `on_connect`, the handshake message and the outbox. A failed
    /// handshake counts as a failed attempt under the
    /// [`Reconnect`](crate::Reconnect) policy, and
    /// [`Error::GaveUp`](crate::Error::GaveUp) names the TLS problem (untrusted certificate, wrong
    /// server name, ...).
    ///
    /// A server that closes without TLS's close_notify ends the connection as
    /// it does on a TLS server: an ordinary EOF where the framing delimits its
    /// frames, an I/O error under `eof`, `raw` and `idle_gap` framings.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use flexi_socket::{FlexiSocket, TlsClientConfig};
    ///
    /// # async fn run() -> flexi_socket::Result<()> {
    /// let tls = TlsClientConfig::from_root_pem_file("ca.crt")?; // the server's CA
    /// let client = FlexiSocket::client("panel.example:8443")
    ///     .tls(tls)                                              // checks "panel.example"
    ///     .tls_handshake_timeout(Duration::from_secs(5))
    ///     .connect()
    ///     .await?;
    /// client.send("hello over TLS").await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn tls(mut self, config: TlsClientConfig) -> Self {
        self.tls.config = Some(config);
        self
    }

    /// How long the TLS handshake of each (re)connection may take (default
    /// 10 s); one that takes longer counts as a failed attempt.
    #[must_use]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.tls.handshake_timeout = timeout;
        self
    }
}
