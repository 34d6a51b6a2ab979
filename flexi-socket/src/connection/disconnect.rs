//! [`DisconnectReason`]: why a connection ended, as `on_disconnect` handlers
//! and the logs see it.

use std::fmt;

/// Why a connection ended; `on_disconnect` handlers can take it as an argument.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer closed its side (EOF).
    PeerClosed,
    /// Reading or writing failed (connection reset, broken pipe, ...).
    Reset(String),
    /// This side closed it: [`Connection::close`](crate::Connection::close), `Client::close` or
    /// `UdpClient::close` was called.
    Closed,
    /// A handler panicked.
    HandlerPanicked,
    /// The framing could not go on (a custom codec failed).
    FramingFailed,
    /// The server is shutting down.
    Shutdown,
    /// Nothing arrived for the idle timeout.
    IdleTimeout,
    /// A frame was started but not finished within the frame timeout (slowloris).
    FrameTimeout,
    /// No complete first message arrived within the first-message timeout, so
    /// the connection could not be classified.
    FirstMessageTimeout,
    /// The peer did not read what the server sent (slow-consumer policy `Disconnect`).
    SlowConsumer,
    /// A limit was hit; the text says which.
    Limit(String),
    /// Another connection took this one's key
    /// ([`Connection::set_key`](crate::Connection::set_key) under [`KeyPolicy::NewestWins`](crate::KeyPolicy::NewestWins)).
    Replaced,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::PeerClosed => f.write_str("peer closed the connection"),
            DisconnectReason::Reset(why) => write!(f, "connection failed: {why}"),
            DisconnectReason::Closed => f.write_str("closed by the application"),
            DisconnectReason::HandlerPanicked => f.write_str("a handler panicked"),
            DisconnectReason::FramingFailed => f.write_str("framing failed"),
            DisconnectReason::Shutdown => f.write_str("server shutdown"),
            DisconnectReason::IdleTimeout => f.write_str("idle timeout"),
            DisconnectReason::FrameTimeout => f.write_str("frame not finished in time"),
            DisconnectReason::FirstMessageTimeout => f.write_str("no first message in time"),
            DisconnectReason::SlowConsumer => f.write_str("peer does not read (slow consumer)"),
            DisconnectReason::Limit(which) => write!(f, "limit: {which}"),
            DisconnectReason::Replaced => {
                f.write_str("replaced by a newer connection with its key")
            }
        }
    }
}
