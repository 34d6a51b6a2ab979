//! What receiving on a UDP socket needs, server or client: the options,
//! the buffer size that sees every datagram whole, and what a receive error
//! means.

use std::io;
use std::time::Duration;

use super::session::SessionConfig;
use crate::config::Limits;
use crate::connection::Endpoint;
use crate::error::Error;
use crate::framing::Framing;

/// The largest UDP payload there is (the length field's limit); receiving
/// into a buffer longer than this sees every datagram whole.
pub(crate) const LARGEST_DATAGRAM: usize = 65_535;

/// The UDP settings of a server or a client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UdpOptions {
    pub(crate) session_idle: Duration,
    pub(crate) max_datagram: usize,
    pub(crate) session_queue: usize,
    /// Whether the user chose a framing, which then applies inside datagrams.
    pub(crate) framed: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(60),
            max_datagram: 8 * 1024,
            session_queue: 64,
            framed: false,
        }
    }
}

impl UdpOptions {
    /// The framing the connections use: the user's, or none (a datagram is
    /// a message, and a reply is sent as is).
    pub(crate) fn framing(&self, chosen: Framing) -> Framing {
        if self.framed { chosen } else { Framing::raw() }
    }

    /// The server's limits as its sessions apply them: idle after
    /// `udp_session_idle`, no stream deadlines.
    pub(crate) fn limits(&self, limits: Limits) -> Limits {
        limits.for_datagrams(Some(self.session_idle))
    }

    /// How a session is served; `in_place`: a server's (see `SessionConfig`).
    pub(crate) fn session(&self, in_place: bool) -> SessionConfig {
        SessionConfig {
            inbox: self.session_queue,
            framed: self.framed,
            in_place,
        }
    }
}

/// Receive errors never end the loop. An ICMP refusal (the port an earlier
/// reply went to was closed; reported by some systems) concerns a datagram
/// already gone; anything else pauses the loop briefly so a persistent
/// error cannot spin it.
#[derive(Debug, Default)]
pub(crate) struct ReceiveErrors {
    streak: bool,
}

impl ReceiveErrors {
    pub(crate) const PAUSE: Duration = Duration::from_millis(10);

    pub(crate) fn reset(&mut self) {
        self.streak = false;
    }

    pub(crate) async fn note(&mut self, endpoint: &Endpoint, error: io::Error) {
        let refused = is_refusal(&error);
        if refused {
            tracing::debug!(%error, "an earlier datagram was refused by its peer");
        } else if !self.streak {
            tracing::warn!(%error, "receiving a datagram failed; receiving on");
        }
        endpoint.counters.count_error(&Error::Io(error));
        if !refused {
            self.streak = true;
            tokio::time::sleep(Self::PAUSE).await;
        }
    }
}

/// Whether `error` is a peer's ICMP refusal of an earlier datagram, which
/// the socket reports on a later call (as a refusal on Linux, a reset on
/// Windows): it says nothing about the call that returned it.
pub(crate) fn is_refusal(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}
