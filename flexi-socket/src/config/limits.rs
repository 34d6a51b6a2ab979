//! The protective limits of a server: every knob, its default, and why.

use std::collections::HashMap;
use std::time::Duration;

use super::KeyPolicy;
use crate::client_type::ClientType;

/// What `send` does when a connection's outbound queue is full, which happens
/// when the peer reads more slowly than the server writes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// `send` waits for room, at most this long, then fails with
    /// [`Error::SendTimeout`](crate::Error::SendTimeout). The default, with 30 s:
    /// a briefly slow peer is tolerated, a stuck one cannot hold a handler forever.
    Wait(Duration),
    /// `send` fails at once with [`Error::QueueFull`](crate::Error::QueueFull);
    /// the connection stays open.
    Fail,
    /// The connection is closed (reason
    /// [`DisconnectReason::SlowConsumer`](crate::DisconnectReason::SlowConsumer))
    /// and `send` fails with `QueueFull`.
    Disconnect,
}

/// What happens to a connection whose handler panicked.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PanicPolicy {
    /// Close the connection (the default): its state may be inconsistent.
    #[default]
    Close,
    /// Report the panic and go on with the next message.
    Continue,
}

/// The node name of a server that was given none.
pub(crate) const DEFAULT_NODE_NAME: &str = "local";

/// Every limit of a server, set through [`ServerBuilder`](crate::ServerBuilder).
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: Option<usize>,
    /// The last free places one address cannot take once it holds as many;
    /// `None`: a tenth of `max_connections`.
    pub(crate) reserved_for_others: Option<usize>,
    pub(crate) first_message_timeout: Option<Duration>,
    pub(crate) first_message_max_length: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) frame_timeout: Option<Duration>,
    pub(crate) tcp_keepalive: Option<Duration>,
    pub(crate) outbound_messages: usize,
    pub(crate) outbound_bytes: usize,
    pub(crate) slow_consumer: SlowConsumerPolicy,
    pub(crate) slow_consumer_by_type: HashMap<ClientType, SlowConsumerPolicy>,
    pub(crate) on_panic: PanicPolicy,
    pub(crate) handler_timeout: Option<Duration>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) linger: Duration,
    /// How much room each read of a byte stream asks for.
    pub(crate) read_buffer: usize,
    /// The message history each connection keeps, if any.
    pub(crate) history: Option<HistoryLimits>,
    /// The history of connections of these client types, from their
    /// classification on (overriding `history`).
    pub(crate) history_by_type: HashMap<ClientType, HistoryLimits>,
    /// Who keeps a key two connections claim (server-wide: the first
    /// listener's builder decides).
    pub(crate) key_policy: KeyPolicy,
    /// The name locate and send outcomes give this node (server-wide, as
    /// `key_policy`).
    pub(crate) node_name: std::sync::Arc<str>,
}

/// How much message history a connection keeps (see `connection/history.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryLimits {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

impl HistoryLimits {
    /// # Panics
    ///
    /// If either is 0.
    #[track_caller]
    pub(crate) fn new(messages: usize, bytes: usize) -> Self {
        assert!(
            messages > 0 && bytes > 0,
            "history needs room for at least one message and one byte"
        );
        Self { messages, bytes }
    }
}

/// The range `read_buffer_size` accepts: below it a read costs a system
/// call per few bytes; above it every busy connection pins that much.
pub(crate) const READ_BUFFER_RANGE: std::ops::RangeInclusive<usize> = 512..=16 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: None,
            reserved_for_others: None,
            first_message_timeout: Some(Duration::from_secs(10)),
            first_message_max_length: 64 * 1024,
            idle_timeout: Some(Duration::from_secs(300)),
            frame_timeout: Some(Duration::from_secs(30)),
            tcp_keepalive: Some(Duration::from_secs(60)),
            outbound_messages: 1024,
            outbound_bytes: 4 * 1024 * 1024,
            slow_consumer: SlowConsumerPolicy::Wait(Duration::from_secs(30)),
            slow_consumer_by_type: HashMap::new(),
            on_panic: PanicPolicy::Close,
            handler_timeout: None,
            shutdown_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(2),
            read_buffer: 8 * 1024,
            history: None,
            history_by_type: HashMap::new(),
            key_policy: KeyPolicy::default(),
            node_name: std::sync::Arc::from(DEFAULT_NODE_NAME),
        }
    }
}

impl Limits {
    /// The history a new connection keeps until it is classified: the
    /// default one, or, if only some client types keep one, a recorder
    /// sized as the largest of theirs (it shrinks or stops at classification).
    pub(crate) fn history_at_start(&self) -> Option<HistoryLimits> {
        self.history.or_else(|| {
            let messages = self.history_by_type.values().map(|l| l.messages).max()?;
            let bytes = self.history_by_type.values().map(|l| l.bytes).max()?;
            Some(HistoryLimits { messages, bytes })
        })
    }

    /// The history a connection keeps from its opening: with a classifier
    /// as [`history_at_start`](Self::history_at_start) says; without one
    /// there will be no client type, so only the default history counts.
    pub(crate) fn history_at_open(&self, classifies: bool) -> Option<HistoryLimits> {
        if classifies {
            self.history_at_start()
        } else {
            self.history
        }
    }

    /// The history a connection of `client_type` keeps (none: zero limits;
    /// `ClientType::DEFAULT`, an unclassified one, keeps the default).
    pub(crate) fn history_for(&self, client_type: &ClientType) -> HistoryLimits {
        self.history_by_type
            .get(client_type)
            .copied()
            .or(self.history)
            .unwrap_or(HistoryLimits {
                messages: 0,
                bytes: 0,
            })
    }

    /// Sets how much room each read asks for.
    ///
    /// # Panics
    ///
    /// If `bytes` is outside [`READ_BUFFER_RANGE`].
    #[track_caller]
    pub(crate) fn set_read_buffer(&mut self, bytes: usize) {
        assert!(
            READ_BUFFER_RANGE.contains(&bytes),
            "read_buffer_size must be from {} bytes to {} MiB, not {bytes}",
            READ_BUFFER_RANGE.start(),
            READ_BUFFER_RANGE.end() / (1024 * 1024)
        );
        self.read_buffer = bytes;
    }

    /// These limits for datagram sessions: a frame never spans datagrams and
    /// the first datagram opens the session, so the stream deadlines do not
    /// apply; the only deadline is the session's `idle` one.
    pub(crate) fn for_datagrams(self, idle: Option<Duration>) -> Self {
        Self {
            first_message_timeout: None,
            frame_timeout: None,
            idle_timeout: idle,
            ..self
        }
    }
}

/// `history(messages, bytes)`, written once for every builder that has a
/// `limits: Limits` field (servers, TCP and UDP clients).
macro_rules! history_method {
    () => {
        /// Keeps each connection's last `messages` messages, in and out, within
        /// `bytes` (raw and processed forms counted), for
        /// [`Connection::history`](crate::Connection::history): what a device
        /// said before it went quiet, readable in handlers and in
        /// `on_disconnect`. Off by default, and free when off.
        ///
        /// # Panics
        ///
        /// If `messages` or `bytes` is 0.
        #[must_use]
        #[track_caller]
        pub fn history(mut self, messages: usize, bytes: usize) -> Self {
            self.limits.history = Some(crate::config::HistoryLimits::new(messages, bytes));
            self
        }
    };
}
pub(crate) use history_method;

/// `read_buffer_size(bytes)`, written once for the stream builders (TCP
/// server and client).
macro_rules! read_buffer_method {
    () => {
        /// How much room each read of a connection's stream asks for (default
        /// 8 KiB; from 512 bytes to 16 MiB). Larger reads mean fewer system calls
        /// per byte for peers that send much at once; the buffer goes back to a
        /// per-thread spare whenever nothing is pending, so an idle connection
        /// holds none either way, and a busy one holds about this much.
        ///
        /// # Panics
        ///
        /// If `bytes` is outside that range.
        #[must_use]
        #[track_caller]
        pub fn read_buffer_size(mut self, bytes: usize) -> Self {
            self.limits.set_read_buffer(bytes);
            self
        }
    };
}
pub(crate) use read_buffer_method;
