//! Server-wide counters, readable through [`Server::stats`](crate::Server::stats).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Messages received (frames decoded, before `after_receive`).
    pub messages_in: u64,
    /// Messages queued for sending (after `before_send`).
    pub messages_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Bytes queued for sending, framing included.
    pub bytes_out: u64,
}

/// A snapshot of a server's counters.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections refused by a limit (per-IP cap).
    pub connections_refused: u64,
    /// UDP: datagrams dropped unhandled, from new peers while the session
    /// table is full (or their IP at its cap) or for a session whose queue
    /// was full.
    pub datagrams_dropped: u64,
    /// TLS handshakes that failed or timed out; those connections never
    /// opened (always 0 without the `tls` feature).
    pub tls_handshakes_failed: u64,
    /// Connections closed without events because their PROXY protocol
    /// header was missing or invalid, or came from an untrusted network
    /// (see [`ServerBuilder::proxy_protocol`](crate::ServerBuilder::proxy_protocol)).
    pub proxy_rejected: u64,
    /// Connections whose PROXY v2 header was LOCAL: the balancer's own
    /// health checks, closed without events. (v1 `UNKNOWN` connections are
    /// served, with the balancer's address.)
    pub proxy_health_checks: u64,
    /// Messages received (decoded frames).
    pub messages_in: u64,
    /// Messages queued for sending.
    pub messages_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Bytes queued for sending, framing included.
    pub bytes_out: u64,
    /// Frames queued on some connection and not yet written.
    pub queued_messages: u64,
    /// Errors, by kind.
    pub errors: ErrorCounts,
}

/// Errors counted by kind.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Frames over the framing's limit, and datagrams over `max_datagram`.
    pub frame_too_large: u64,
    /// Frames cut by EOF or by the end of their datagram, and bytes outside any frame.
    pub frame_truncated: u64,
    /// Messages that were not UTF-8 for a text handler.
    pub invalid_utf8: u64,
    /// Messages no handler matched.
    pub unrouted: u64,
    /// Handlers that returned `Err` or timed out.
    pub handler_failed: u64,
    /// Handlers that panicked.
    pub handler_panicked: u64,
    /// Sends refused by the slow-consumer policy.
    pub send_refused: u64,
    /// Socket errors.
    pub io: u64,
    /// Anything else.
    pub other: u64,
}

/// How many kinds [`ErrorCounts`] tells apart.
pub(crate) const ERROR_KINDS: usize = 9;

/// Which of [`ErrorCounts`]' kinds `error` is, as an index.
pub(crate) fn error_kind(error: &Error) -> usize {
    match error {
        Error::FrameTooLarge { .. } | Error::DatagramTooLarge { .. } => 0,
        Error::FrameTruncated { .. } | Error::DatagramTruncated { .. } | Error::Unframed { .. } => {
            1
        }
        Error::InvalidUtf8 { .. } => 2,
        Error::Unrouted { .. } => 3,
        Error::Handler { .. } | Error::HandlerTimeout { .. } => 4,
        Error::HandlerPanicked { .. } => 5,
        Error::QueueFull { .. } | Error::SendTimeout { .. } => 6,
        Error::Io(_) => 7,
        _ => 8,
    }
}

/// The live counters behind [`ServerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) datagrams_dropped: AtomicU64,
    pub(crate) tls_handshakes_failed: AtomicU64,
    pub(crate) proxy_rejected: AtomicU64,
    pub(crate) proxy_health_checks: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    errors: [AtomicU64; ERROR_KINDS],
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Adds a closed connection's traffic to the totals.
    pub(crate) fn absorb(&self, closed: &ConnectionStats) {
        Self::add(&self.messages_in, closed.messages_in);
        Self::add(&self.messages_out, closed.messages_out);
        Self::add(&self.bytes_in, closed.bytes_in);
        Self::add(&self.bytes_out, closed.bytes_out);
    }

    pub(crate) fn count_error(&self, error: &Error) {
        self.errors[error_kind(error)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ServerStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let error = |slot: usize| load(&self.errors[slot]);
        ServerStats {
            connections_open: load(&self.connections_open),
            connections_total: load(&self.connections_total),
            connections_refused: load(&self.connections_refused),
            datagrams_dropped: load(&self.datagrams_dropped),
            tls_handshakes_failed: load(&self.tls_handshakes_failed),
            proxy_rejected: load(&self.proxy_rejected),
            proxy_health_checks: load(&self.proxy_health_checks),
            messages_in: load(&self.messages_in),
            messages_out: load(&self.messages_out),
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
            queued_messages: 0,
            errors: ErrorCounts {
                frame_too_large: error(0),
                frame_truncated: error(1),
                invalid_utf8: error(2),
                unrouted: error(3),
                handler_failed: error(4),
                handler_panicked: error(5),
                send_refused: error(6),
                io: error(7),
                other: error(8),
            },
        }
    }
}
