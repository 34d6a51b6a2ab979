//! [`ClientType`], the key handlers are routed by, and the [`Classifier`]
//! contract that produces one. A leaf: errors, limits and the routing table
//! all name a client type; how classification runs lives in `classify/`.

use std::borrow::Cow;
use std::fmt;

/// The key handlers are routed by, such as `"001"`.
///
/// Cheap to clone; a classifier derive produces `'static` keys without allocating.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientType(Cow<'static, str>);

impl ClientType {
    /// Stands for "no client type" in errors and logs: the default handlers'
    /// slot, and connections that are not classified. Shown as `(default)`, so
    /// it never reads like a real key such as `"default"`.
    pub const DEFAULT: ClientType = ClientType(Cow::Borrowed("(default)"));

    /// A client type from a static string, usable in `const` context.
    pub const fn from_static(key: &'static str) -> Self {
        Self(Cow::Borrowed(key))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&'static str> for ClientType {
    fn from(key: &'static str) -> Self {
        Self::from_static(key)
    }
}

impl From<String> for ClientType {
    fn from(key: String) -> Self {
        Self(Cow::Owned(key))
    }
}

impl PartialEq<str> for ClientType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ClientType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl ClientType {
    /// The client type of a classifier's value, e.g. `ClientType::of(&Panel::Alarm)`.
    pub fn of<C: Classifier>(value: &C) -> Self {
        value.client_type()
    }
}

/// Decides a connection's client type from its first inbound frame.
///
/// Usually derived (`#[derive(Classifier)]` on an enum, see the crate docs); a
/// hand-written implementation may use any logic.
///
/// ```
/// use flexi_socket::{Classifier, ClientType};
///
/// struct ByLength(usize);
///
/// impl Classifier for ByLength {
///     fn classify(first_frame: &[u8]) -> Self {
///         ByLength(first_frame.len())
///     }
///     fn client_type(&self) -> ClientType {
///         if self.0 > 10 { "long".into() } else { "short".into() }
///     }
///     fn client_types() -> Option<Vec<ClientType>> {
///         Some(vec!["long".into(), "short".into()])
///     }
/// }
/// assert_eq!(ByLength::classify(b"hi").client_type(), "short");
/// ```
pub trait Classifier: Send + Sync + 'static {
    /// Classifies a connection by the first frame it sent, as decoded by the
    /// framing and before `after_receive`.
    fn classify(first_frame: &[u8]) -> Self
    where
        Self: Sized;

    /// Decides on the bytes of the first frame (or raw first unit) seen so
    /// far, before it is complete, when they already settle the type; `None`
    /// ("not yet", the default) waits for the whole frame as before.
    ///
    /// Called while the connection is not classified and its first frame is
    /// still incomplete, each time more bytes arrive, with the frame's bytes
    /// so far as the framing would deliver them (no delimiter, never empty);
    /// with [`classify_raw`](crate::ServerBuilder::classify_raw), the raw
    /// bytes of the unfinished unit. It is shown at most the first 512
    /// bytes: once that many have arrived it gets one last look, then the
    /// whole frame decides (so a peer trickling a long first frame a byte at
    /// a time cannot make the server re-read it all on every read). A
    /// decision must be the one
    /// [`classify`](Self::classify) gives **every** frame that starts with
    /// `first_bytes` (the bytes themselves included): then deciding early
    /// changes when the connection is classified, never how, as long as
    /// that frame is delivered. A decision stands if the frame is then
    /// dropped (over the framing's limit) or never completed (a datagram
    /// that ends inside it): the next frame is not classified again. Such
    /// a decision classifies the connection at once: its client type's routes and
    /// framing apply from then on, and the first frame, once complete, goes
    /// to that type's on_message. Give a type that should be answered at
    /// once its own [`Framing::raw`](crate::Framing::raw) (with
    /// [`framing_for`](crate::ServerBuilder::framing_for)): the bytes already
    /// read are then delivered right away, and its on_message can
    /// [`close`](crate::Connection::close) a stranger without waiting for a
    /// frame it may never finish.
    ///
    /// Framings whose frames are not the stream's leading bytes
    /// (`delimited`, `length_prefixed`, custom codecs) give no bytes to
    /// decide on early; an unframed datagram is a whole frame when it arrives.
    /// `#[derive(Classifier)]` generates this method from its rules.
    ///
    /// ```
    /// use flexi_socket::{Classifier, ClientType};
    ///
    /// /// Text commands start with a letter; anything else is refused.
    /// enum Peer { Command, Stranger }
    ///
    /// impl Classifier for Peer {
    ///     fn classify(first_frame: &[u8]) -> Self {
    ///         match first_frame.first() {
    ///             Some(byte) if byte.is_ascii_alphabetic() => Peer::Command,
    ///             _ => Peer::Stranger,
    ///         }
    ///     }
    ///     // The first byte settles it: no need to wait for the line's end.
    ///     fn classify_early(first_bytes: &[u8]) -> Option<Self> {
    ///         Some(Self::classify(first_bytes))
    ///     }
    ///     fn client_type(&self) -> ClientType {
    ///         match self { Peer::Command => "command".into(), Peer::Stranger => "stranger".into() }
    ///     }
    /// }
    /// assert!(matches!(Peer::classify_early(b"\x16\x03\x01"), Some(Peer::Stranger)));
    /// ```
    fn classify_early(first_bytes: &[u8]) -> Option<Self>
    where
        Self: Sized,
    {
        let _ = first_bytes;
        None
    }

    /// The routing key of this value.
    fn client_type(&self) -> ClientType;

    /// Every client type this classifier can produce, used at start-up to reject
    /// handlers for a client type that can never occur. `None` skips that check.
    fn client_types() -> Option<Vec<ClientType>>
    where
        Self: Sized,
    {
        None
    }
}
