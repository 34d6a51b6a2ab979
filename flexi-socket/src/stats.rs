//! Server-wide counters, readable through [`Server::stats`](crate::Server::stats),
//! and the same events exported as metrics (feature `metrics`; see [`metric`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::client_type::ClientType;
use crate::error::Error;
use crate::metric::{self, Label};

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
    /// Connections refused by a limit: the per-IP cap, or the places kept
    /// for other addresses.
    pub connections_refused: u64,
    /// UDP: datagrams dropped unhandled, from new peers while the session
    /// table is full (or their IP at its cap), for a session whose queue
    /// was full, or left in the queue of a session that ended before it
    /// could handle them (a panic in a handler, the classifier or
    /// on_connect; the client type's framing failing to start).
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

/// Each kind's name, as in [`ErrorCounts`]: the `kind` label of
/// `flexi_socket_errors_total`.
const ERROR_KIND_NAMES: [&str; ERROR_KINDS] = [
    "frame_too_large",
    "frame_truncated",
    "invalid_utf8",
    "unrouted",
    "handler_failed",
    "handler_panicked",
    "send_refused",
    "io",
    "other",
];

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

/// One event counted for [`ServerStats`] and, on a server with the
/// `metrics` feature, exported as a counter too.
#[derive(Debug)]
pub(crate) struct Tally {
    count: AtomicU64,
    exported: metric::Counter,
}

impl Tally {
    fn new(export: bool, name: &'static str, labels: &[Label<'_>]) -> Self {
        Self {
            count: AtomicU64::new(0),
            exported: metric::Counter::new(export, name, labels),
        }
    }

    pub(crate) fn add(&self, amount: u64) {
        self.count.fetch_add(amount, Ordering::Relaxed);
        self.exported.increment(amount);
    }

    fn load(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The exported counters of one client type's traffic (the byte counters
/// are the endpoint's, unlabelled, cloned in): what a connection records
/// each message into, resolved once when it is classified.
#[derive(Clone, Debug, Default)]
// Connections record into it with the `metrics` feature only.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Traffic {
    messages_received: metric::Counter,
    bytes_received: metric::Counter,
    messages_sent: metric::Counter,
    bytes_sent: metric::Counter,
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
impl Traffic {
    #[inline]
    pub(crate) fn received(&self, bytes: usize) {
        self.messages_received.increment(1);
        self.bytes_received.increment(bytes as u64);
    }

    #[inline]
    pub(crate) fn sent(&self, bytes: usize) {
        self.messages_sent.increment(1);
        self.bytes_sent.increment(bytes as u64);
    }
}

/// The live counters behind [`ServerStats`], and the exported metrics of
/// the same events.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) connections_total: Tally,
    pub(crate) connections_refused: Tally,
    pub(crate) datagrams_dropped: Tally,
    pub(crate) tls_handshakes_failed: Tally,
    pub(crate) proxy_rejected: Tally,
    pub(crate) proxy_health_checks: Tally,
    /// Traffic of closed connections (open ones count their own, see `absorb`).
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    errors: [Tally; ERROR_KINDS],
    /// Exported only: [`ServerStats::connections_open`] is the list's length.
    pub(crate) connections_open: metric::Gauge,
    /// Whether this endpoint exports metrics (a server's does, a client's not).
    export: bool,
    /// Traffic counters of the client types known at start-up, and of
    /// unclassified connections.
    traffic: HashMap<ClientType, Traffic>,
    unclassified: Traffic,
}

impl Counters {
    /// Counters that are exported as metrics too if `export`, with traffic
    /// series for each of `client_types` (those the classifier names, if
    /// it does) ready from the start.
    pub(crate) fn new(export: bool, client_types: &[ClientType]) -> Self {
        if export {
            metric::describe();
        }
        let tally = |name| Tally::new(export, name, &[]);
        let bytes_received = metric::Counter::new(export, metric::name::BYTES_RECEIVED, &[]);
        let bytes_sent = metric::Counter::new(export, metric::name::BYTES_SENT, &[]);
        let traffic_of = |client_type: &ClientType| {
            let label = [("client_type", client_type.as_str())];
            Traffic {
                messages_received: metric::Counter::new(
                    export,
                    metric::name::MESSAGES_RECEIVED,
                    &label,
                ),
                bytes_received: bytes_received.clone(),
                messages_sent: metric::Counter::new(export, metric::name::MESSAGES_SENT, &label),
                bytes_sent: bytes_sent.clone(),
            }
        };
        let traffic = client_types
            .iter()
            .map(|client_type| (client_type.clone(), traffic_of(client_type)))
            .collect();
        let unclassified = traffic_of(&ClientType::DEFAULT);
        Self {
            connections_total: tally(metric::name::CONNECTIONS_TOTAL),
            connections_refused: tally(metric::name::CONNECTIONS_REFUSED),
            datagrams_dropped: tally(metric::name::DATAGRAMS_DROPPED),
            tls_handshakes_failed: tally(metric::name::TLS_HANDSHAKES_FAILED),
            proxy_rejected: tally(metric::name::PROXY_REJECTED),
            proxy_health_checks: tally(metric::name::PROXY_HEALTH_CHECKS),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            errors: ERROR_KIND_NAMES
                .map(|kind| Tally::new(export, metric::name::ERRORS, &[("kind", kind)])),
            connections_open: metric::Gauge::new(export, metric::name::CONNECTIONS_OPEN),
            export,
            traffic,
            unclassified,
        }
    }

    /// The traffic counters of connections of `client_type`; `None` for
    /// unclassified ones. A type the classifier did not name at start-up
    /// (a hand-written classifier's) is registered here, once a connection.
    pub(crate) fn traffic(&self, client_type: Option<&ClientType>) -> Traffic {
        let Some(client_type) = client_type else {
            return self.unclassified.clone();
        };
        if let Some(known) = self.traffic.get(client_type) {
            return known.clone();
        }
        let label = [("client_type", client_type.as_str())];
        Traffic {
            messages_received: metric::Counter::new(
                self.export,
                metric::name::MESSAGES_RECEIVED,
                &label,
            ),
            messages_sent: metric::Counter::new(self.export, metric::name::MESSAGES_SENT, &label),
            ..self.unclassified.clone()
        }
    }

    /// The traffic counters of unclassified connections.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn unclassified(&self) -> &Traffic {
        &self.unclassified
    }

    /// Adds a closed connection's traffic to the totals.
    pub(crate) fn absorb(&self, closed: &ConnectionStats) {
        let add = |counter: &AtomicU64, amount| counter.fetch_add(amount, Ordering::Relaxed);
        add(&self.messages_in, closed.messages_in);
        add(&self.messages_out, closed.messages_out);
        add(&self.bytes_in, closed.bytes_in);
        add(&self.bytes_out, closed.bytes_out);
    }

    pub(crate) fn count_error(&self, error: &Error) {
        self.errors[error_kind(error)].add(1);
    }

    pub(crate) fn snapshot(&self) -> ServerStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let error = |slot: usize| self.errors[slot].load();
        ServerStats {
            connections_open: 0,
            connections_total: self.connections_total.load(),
            connections_refused: self.connections_refused.load(),
            datagrams_dropped: self.datagrams_dropped.load(),
            tls_handshakes_failed: self.tls_handshakes_failed.load(),
            proxy_rejected: self.proxy_rejected.load(),
            proxy_health_checks: self.proxy_health_checks.load(),
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
