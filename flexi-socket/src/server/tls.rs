//! TLS for a TCP server (feature `tls`): the builder's settings, and the
//! handshake in each accepted connection's own task (never in the accept
//! loop), after which the connection runs on the stream driver like any
//! other.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::builder::{ServerBuilder, Tcp};
use crate::connection::Connection;
use crate::connection::outbound::OutboundReceiver;
use crate::error::Error;
use crate::transport::stream;
use crate::transport::tls::{self, TlsServer, TlsServerConfig};

impl ServerBuilder<Tcp> {
    /// Serves TLS: every connection does a TLS handshake before anything else.
    /// It runs in the connection's own task (never in the accept loop) and
    /// only a connection whose handshake succeeded opens: until then it fires
    /// no event and is not listed in [`Connections`](crate::Connections).
    /// A failed handshake (timeout, plaintext client, missing client
    /// certificate) is logged and counted in
    /// [`ServerStats::tls_handshakes_failed`](crate::ServerStats::tls_handshakes_failed).
    ///
    /// A peer that closes without TLS's close_notify ends with an ordinary EOF
    /// where the framing delimits its frames (a cut frame is reported as
    /// usual), and with an I/O error under `eof`, `raw` and `idle_gap`
    /// framings, where the stream may have been truncated by an attacker.
    ///
    /// TLS runs over TCP only (there is no DTLS): a UDP server's builder has
    /// no such method.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use flexi_socket::{FlexiSocket, TlsServerConfig};
    ///
    /// # async fn run() -> flexi_socket::Result<()> {
    /// let tls = TlsServerConfig::from_pem_files("server.crt", "server.key")?;
    /// FlexiSocket::server("0.0.0.0:8443")
    ///     .tls(tls)
    ///     .tls_handshake_timeout(Duration::from_secs(5))
    ///     .serve()
    ///     .await
    /// # }
    /// ```
    #[must_use]
    pub fn tls(mut self, config: TlsServerConfig) -> Self {
        self.transport.tls.config = Some(config);
        self
    }

    /// How long a TLS handshake may take (default 10 s). Until its handshake
    /// is done a connection holds a place under
    /// [`max_connections`](Self::max_connections), so peers that connect and
    /// stay silent (scanners, plaintext clients waiting for a banner) must not
    /// keep it for long; 10 s still lets a slow mobile or satellite link finish
    /// the handshake's round trips.
    #[must_use]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.transport.tls.handshake_timeout = timeout;
        self
    }
}

/// Serves a TLS connection in its own task: the handshake, then, if it
/// succeeded and the server is not shutting down, the connection is listed
/// and runs; otherwise it is dropped without events, and a failed handshake
/// is counted.
pub(super) async fn serve(
    tls: &TlsServer,
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    connection: Connection,
    queue: OutboundReceiver,
) {
    let endpoint = std::sync::Arc::clone(connection.endpoint());
    let outcome = tokio::select! {
        biased;
        () = endpoint.shutdown.begun() => {
            tracing::debug!("server shutting down during the TLS handshake; connection dropped");
            return;
        }
        outcome = tls.handshake(stream) => outcome,
    };
    let reason = match outcome {
        // A connection that would be told to close at once is not opened.
        Ok(_) if endpoint.shutdown.has_begun() => return,
        Ok(stream) => {
            endpoint.register(&connection);
            let stream = tls::driven(stream, &endpoint.framing);
            stream::run(stream, connection, queue, ()).await;
            return;
        }
        Err(reason) => reason,
    };
    endpoint.counters.tls_handshakes_failed.add(1);
    let error = Error::TlsHandshake {
        peer: connection.peer_addr(),
        reason,
    };
    tracing::info!(%error, "connection dropped");
}
