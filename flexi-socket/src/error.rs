//! The one error type of the crate.

use std::io;

use crate::client_type::ClientType;
use crate::handler_kind::HandlerKind;

/// A `Result` whose error is [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in flexi-socket.
///
/// Errors that concern one connection reach the `#[on_error]` handler of that
/// connection's client type (and `tracing`); start-up errors are returned by
/// `serve()`.
#[non_exhaustive]
#[derive(thiserror::Error)]
pub enum Error {
    /// An address has none of the forms the builder takes (no port, no host,
    /// a port that is not a number, ...). Reported by `bind`, `spawn` or
    /// `connect` before anything is opened.
    #[error("invalid address `{addr}`: {reason} (expected {expected})")]
    InvalidAddress {
        /// The address that was given.
        addr: String,
        /// What is wrong with it.
        reason: String,
        /// The forms this builder takes.
        expected: &'static str,
    },

    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}{hint}", hint = bind_hint(.addr, .source))]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// What the operating system said.
        source: io::Error,
    },

    /// Reading from or writing to a socket failed. A stream connection ends;
    /// a UDP session reports it and goes on.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// An inbound frame was longer than the framing allows. It was discarded and
    /// the connection goes on with the next frame.
    #[error(
        "discarded an inbound frame of {length} bytes: the limit is {max} bytes \
         (raise the framing's limit with `.max_length(n)` if such frames are legitimate)"
    )]
    FrameTooLarge {
        /// How many bytes the frame had (at least), when known.
        length: usize,
        /// The configured maximum.
        max: usize,
    },

    /// Bytes that did not make a complete frame were discarded: the peer
    /// closed in the middle of a frame, or (start/end framing) started a new
    /// frame before ending this one.
    #[error(
        "discarded an incomplete frame: {bytes} bytes were not delivered \
         (the peer closed in the middle of a frame, or started a new one before ending it)"
    )]
    FrameTruncated {
        /// How many bytes of the unfinished frame were buffered.
        bytes: usize,
    },

    /// Start/end framing: bytes outside any frame (before a start sequence)
    /// were discarded. Reported once per run of such bytes.
    #[error(
        "discarded {bytes} bytes outside any frame: a frame begins with its start sequence \
         (line noise, or a peer that does not speak this framing?)"
    )]
    Unframed {
        /// How many bytes were discarded.
        bytes: usize,
    },

    /// A datagram was longer than the server's `max_datagram`. It was dropped
    /// whole, never delivered cut, and the session goes on.
    #[error(
        "discarded a datagram of {length} bytes: the limit is {max} bytes \
         (raise it with `.max_datagram(n)` if such datagrams are legitimate)"
    )]
    DatagramTooLarge {
        /// How many bytes the datagram had.
        length: usize,
        /// The configured maximum.
        max: usize,
    },

    /// With a framing over UDP, a datagram ended in the middle of a frame; the
    /// partial frame was not delivered.
    #[error(
        "a datagram ended in the middle of a frame; {bytes} bytes were not delivered \
         (each datagram is decoded on its own, so a frame cannot span datagrams)"
    )]
    DatagramTruncated {
        /// How many bytes of the unfinished frame the datagram held.
        bytes: usize,
    },

    /// Datagrams from this peer were dropped because its session's queue was
    /// full: its handlers are slower than it sends.
    #[error(
        "dropped {count} datagrams from this peer: its session's queue ({capacity} datagrams) \
         was full; make the handlers faster or raise `.udp_session_queue(n)`"
    )]
    DatagramsDropped {
        /// How many datagrams were dropped since the last report.
        count: u64,
        /// The queue's capacity.
        capacity: usize,
    },

    /// A message could not be framed for sending (for example, longer than a
    /// fixed-length frame).
    #[error("cannot frame the outbound message: {reason}")]
    Encode {
        /// Why the framing refused the message.
        reason: String,
    },

    /// A custom codec failed; the connection ends because its stream position is lost.
    #[error("framing failed: {0}")]
    Framing(String),

    /// A text handler (`String` or `&str`) received bytes that are not UTF-8.
    /// The message is not delivered; the connection goes on.
    #[error(
        "message is not valid UTF-8 (first bad byte at offset {valid_up_to}); \
         take `Bytes`, `Vec<u8>` or `&[u8]` in the handler to receive binary data"
    )]
    InvalidUtf8 {
        /// Length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },

    /// No `on_message` handler matches the connection's client type and there
    /// is no default handler.
    #[error(
        "no on_message handler for client type {client_type} and no default handler; \
         add `#[on_message]` without client_type to catch the rest"
    )]
    Unrouted {
        /// The client type the connection was classified as (`default` when unclassified).
        client_type: ClientType,
    },

    /// A handler returned `Err`.
    #[error("handler `{handler}` failed: {message}")]
    Handler {
        /// The handler's name (module path and function name).
        handler: &'static str,
        /// The error's `Display` text.
        message: String,
    },

    /// A handler panicked. The panic was caught; the connection is closed.
    #[error("handler `{handler}` panicked: {message}")]
    HandlerPanicked {
        /// The handler's name (module path and function name).
        handler: &'static str,
        /// The panic payload, if it was a string.
        message: String,
    },

    /// Two handlers are registered for the same event and client type.
    #[error(
        "two {kind} handlers for client type {client_type}: `{first}` and `{second}`; \
         remove one or give it another client_type"
    )]
    DuplicateHandler {
        /// The event both handle.
        kind: HandlerKind,
        /// The client type both claim (`default` for none).
        client_type: ClientType,
        /// One handler.
        first: &'static str,
        /// The other handler.
        second: &'static str,
    },

    /// A handler names a client type that the classifier can never produce.
    #[error(
        "handler `{handler}` is for client type {client_type}, which the classifier never \
         produces (it produces: {known}); fix the client_type or the classifier"
    )]
    UnknownClientType {
        /// The handler's name.
        handler: &'static str,
        /// The client type it asks for.
        client_type: ClientType,
        /// The client types the classifier can produce, comma separated.
        known: String,
    },

    /// A client type the classifier can produce has no `on_message` handler
    /// and there is no default one: every message of that type would go
    /// unrouted. [`allow_unhandled`](crate::ServerBuilder::allow_unhandled)
    /// says it is intended.
    #[error(
        "client type {client_type} has no on_message handler and there is no default one, so \
         every message of that type would go unrouted (the classifier produces: {known}); add \
         `#[on_message(client_type = \"{client_type}\")]` or a default `#[on_message]`, or call \
         `.allow_unhandled(\"{client_type}\")` on the builder if that is intended"
    )]
    UnhandledClientType {
        /// The client type without a handler.
        client_type: ClientType,
        /// The client types the classifier can produce, comma separated.
        known: String,
    },

    /// Handlers are registered for client types but no classifier was configured.
    #[error(
        "handler `{handler}` is for client type {client_type} but no classifier is set; \
         call `.classifier::<YourEnum>()` on the builder"
    )]
    NoClassifier {
        /// The handler's name.
        handler: &'static str,
        /// The client type it asks for.
        client_type: ClientType,
    },

    /// `classify_raw` or `framing_for` was set on a builder without a classifier.
    #[error(
        "`.{method}(..)` decides by client type, but no classifier is set; \
         call `.classifier::<YourClassifier>()` on the builder"
    )]
    NoClassifierFor {
        /// The builder method that needs one.
        method: &'static str,
    },

    /// `framing_for` names a client type that the classifier can never produce.
    #[error(
        "`.framing_for({client_type:?}, ..)` names a client type the classifier never produces \
         (it produces: {known}); fix the client type or the classifier"
    )]
    UnknownFramingClientType {
        /// The client type given to `framing_for`.
        client_type: ClientType,
        /// The client types the classifier can produce, comma separated.
        known: String,
    },

    /// The first unit of `classify_raw` may be longer than a first message may be.
    #[error(
        "the first unit may be {unit} bytes but a first message at most {cap}, so a long unit \
         would close the connection before it classifies; lower `FirstUnit::max_length` or \
         raise `.first_message_max_length(..)`"
    )]
    FirstUnitOverCap {
        /// `FirstUnit::max_length`.
        unit: usize,
        /// The server's first-message cap.
        cap: usize,
    },

    /// No handler at all was found.
    #[error(
        "no handlers are registered: mark async fns with #[on_message] (and friends) or pass \
         a Router; if the handlers live in another crate, add `use that_crate as _;` so the \
         linker keeps them"
    )]
    NoHandlers,

    /// A handler takes `State<T>` but the server was given no state of type `T`.
    #[error(
        "a handler takes State<{type_name}> but no such state was given; call `.state(value)` on the builder"
    )]
    MissingState {
        /// The type that was asked for.
        type_name: &'static str,
    },

    /// A handler ran longer than the server's handler timeout and was cancelled.
    #[error(
        "handler `{handler}` did not finish within {after:?} and was cancelled; make it faster or raise `.handler_timeout(..)`"
    )]
    HandlerTimeout {
        /// The handler's name.
        handler: &'static str,
        /// The timeout.
        after: std::time::Duration,
    },

    /// The connection's outbound queue is full: the peer reads more slowly
    /// than the server writes (slow-consumer policy `Fail` or `Disconnect`).
    #[error("the outbound queue of connection {id} is full: the peer is not reading fast enough")]
    QueueFull {
        /// The connection's id.
        id: u64,
    },

    /// The outbound queue stayed full for the whole wait of the slow-consumer
    /// policy `Wait`.
    #[error(
        "sending to connection {id} waited {waited:?} for room in its outbound queue: the peer is not reading"
    )]
    SendTimeout {
        /// The connection's id.
        id: u64,
        /// How long `send` waited.
        waited: std::time::Duration,
    },

    /// A handler asked for an argument its event does not carry (`Error`
    /// outside on_error, `DisconnectReason` outside on_disconnect).
    #[error(
        "a handler takes `{argument}`, which this event does not carry; only on_error gets an Error and only on_disconnect a DisconnectReason"
    )]
    NotInThisEvent {
        /// The argument's type.
        argument: &'static str,
    },

    /// `start()` was called inside a tokio runtime, where it cannot block.
    #[error(
        "start() blocks the thread and cannot run inside a tokio runtime; in async code call `.serve().await` instead"
    )]
    InsideRuntime,

    /// A network given to `ProxyProtocol::trust` is not a CIDR block or an address.
    #[error(
        "`{network}` is not a network: write a CIDR block such as \"10.0.0.0/8\" or an address such as \"192.0.2.9\""
    )]
    InvalidNetwork {
        /// What was given.
        network: String,
    },

    /// A client gave up connecting, as its reconnect policy says.
    #[error("gave up connecting to {addr}: {reason}")]
    GaveUp {
        /// The server's address.
        addr: String,
        /// The last failure.
        reason: String,
    },

    /// A client is disconnected and its outbox is full.
    #[error(
        "not connected to {addr} and the outbox is full; raise `.outbox(n)` or wait for `connected()`"
    )]
    NotConnected {
        /// The server's address.
        addr: String,
    },

    /// The client was closed.
    #[error("the client is closed")]
    ClientClosed,

    /// No attribute handler belongs to the builder's handler scope (or, with
    /// none named, every attribute handler has a scope).
    #[error(
        "no attribute handlers have {}; {}",
        scope.as_deref().map_or_else(|| "no scope".to_owned(), |s| format!("scope = {s:?}")),
        known_scopes(known)
    )]
    NoHandlersInScope {
        /// The scope the builder named, if any.
        scope: Option<String>,
        /// The scopes attribute handlers have.
        known: Vec<String>,
    },

    /// A listener added with `ServerBuilder::listener` set handlers, a
    /// classifier or state of its own: a server's listeners share the
    /// first builder's.
    #[error(
        "the listener for {addr} sets its own router, classifier or state; a server's \
         listeners share the first builder's: set them there"
    )]
    ListenerHandlers {
        /// The added listener's address.
        addr: String,
    },

    /// No reply came within the request's timeout.
    #[error("no reply within {after:?}{}", owed_hint(*owed_before))]
    RequestTimeout {
        /// The timeout.
        after: std::time::Duration,
        /// Under [`ReplyOrder::EveryMessage`](crate::ReplyOrder::EveryMessage),
        /// how many replies to earlier messages were still owed when the
        /// request was sent: with a server that does not answer every
        /// message, one of those took the request's reply.
        owed_before: usize,
    },

    /// A TLS certificate, key or CA could not be used (feature `tls`).
    #[error("TLS configuration: {reason}")]
    Tls {
        /// What is wrong and what to do about it.
        reason: String,
    },

    /// A TLS handshake failed or timed out; the connection never opened.
    #[error("TLS handshake with {peer} failed: {reason}")]
    TlsHandshake {
        /// The peer's address.
        peer: crate::PeerAddr,
        /// Why, with the likely cause when it is a common one.
        reason: String,
    },

    /// The connection is closed; nothing more can be sent on it.
    #[error("connection {id} is closed")]
    ConnectionClosed {
        /// The connection's id.
        id: u64,
    },

    /// No open connection has this id.
    #[error("no open connection has id {id}")]
    UnknownConnection {
        /// The id that was asked for.
        id: u64,
    },

    /// `Connection::set_key` under `KeyPolicy::OldestWins`: another open
    /// connection holds the key and keeps it.
    #[error(
        "key `{key}` is held by another connection, which keeps it (KeyPolicy::OldestWins; \
         KeyPolicy::NewestWins hands it over and closes the other)"
    )]
    KeyTaken {
        /// The key asked for.
        key: String,
    },

    /// No open connection holds this key (a request to a key).
    #[error("no open connection holds key `{key}`")]
    KeyOffline {
        /// The key asked for.
        key: String,
    },

    /// A request to a connection was made from one of that connection's own
    /// handlers, which run in the task that reads its replies: the reply could
    /// never be read before the handler returns.
    #[error(
        "a request to connection {id} was made from one of its own handlers, where its reply \
         cannot arrive; make it from another task (tokio::spawn) or another connection's handler"
    )]
    RequestInOwnTask {
        /// The connection asked.
        id: u64,
    },

    /// The cluster configuration is wrong, or a cluster operation failed
    /// for a reason that is not an outcome (a message too large for NATS,
    /// an answer this node cannot read).
    #[error("cluster: {reason}")]
    Cluster {
        /// What went wrong.
        reason: String,
    },
}

/// `Debug` shows the same sentence as `Display`: `fn main() -> Result<()>`
/// prints errors with `Debug`, and the sentence says what to do.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// What a failed bind most likely means, as a parenthesis after the system's
/// words; empty when the error speaks for itself.
fn bind_hint(addr: &str, error: &io::Error) -> &'static str {
    let unix = addr.starts_with(crate::peer_addr::UNIX_PREFIX);
    let privileged_port = addr
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .is_some_and(|port| port != 0 && port < 1024);
    match error.kind() {
        io::ErrorKind::AddrInUse if unix => " (another server listens on this socket file)",
        io::ErrorKind::AddrInUse => {
            " (another socket is bound to this port: another process, or another server in this \
             one; stop it, pick another port, or share it with `.reuse_port(true)` on both)"
        }
        io::ErrorKind::PermissionDenied if privileged_port => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; pick a port from 1024 up)"
        }
        io::ErrorKind::PermissionDenied if unix => {
            " (this user may not create the socket file in that directory)"
        }
        io::ErrorKind::AddrNotAvailable => {
            " (no interface of this machine has that address: listen on 0.0.0.0, [::], \
             or one of its own addresses)"
        }
        _ => "",
    }
}

/// Text of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The scopes handlers have, and how to pick one.
fn known_scopes(known: &[String]) -> String {
    if known.is_empty() {
        return "no attribute handler has a scope: remove `.handler_scope(..)`, or add \
                `scope = \"...\"` to the handlers meant for it"
            .to_owned();
    }
    let list: Vec<String> = known.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "handlers have these scopes: {}; name one with `.handler_scope(..)`",
        list.join(", ")
    )
}

/// What a request timeout adds when earlier messages were never answered.
fn owed_hint(owed_before: usize) -> String {
    match owed_before {
        0 => String::new(),
        owed => format!(
            " ({owed} earlier message(s) were still owed a reply; if the server does not \
             answer every message, use `reply_order(ReplyOrder::RequestsOnly)` or `request_matching`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_error(addr: &str, kind: io::ErrorKind) -> String {
        let source = io::Error::new(kind, "os says no");
        Error::Bind {
            addr: addr.to_owned(),
            source,
        }
        .to_string()
    }

    #[test]
    fn a_bind_error_names_what_happened() {
        let in_use = bind_error("0.0.0.0:8081", io::ErrorKind::AddrInUse);
        assert!(in_use.contains("another socket is bound"), "{in_use}");
        let low_port = bind_error("0.0.0.0:80", io::ErrorKind::PermissionDenied);
        assert!(low_port.contains("below 1024"), "{low_port}");
        let high_port = bind_error("0.0.0.0:8081", io::ErrorKind::PermissionDenied);
        assert_eq!(high_port, "cannot listen on 0.0.0.0:8081: os says no");
        let unix = bind_error("unix:/run/x.sock", io::ErrorKind::PermissionDenied);
        assert!(unix.contains("socket file"), "{unix}");
        let absent = bind_error("192.0.2.1:8081", io::ErrorKind::AddrNotAvailable);
        assert!(absent.contains("no interface"), "{absent}");
        let other = bind_error("0.0.0.0:8081", io::ErrorKind::InvalidInput);
        assert!(!other.contains('('), "{other}");
    }
}
