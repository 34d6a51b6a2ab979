//! [`HandlerKind`]: the events a handler can be for. A leaf, so errors can
//! name a handler's event without reaching into the handler layer.

use std::fmt;

/// The event a handler is for.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HandlerKind {
    /// A connection was opened (`#[on_connect]`).
    Connect,
    /// An inbound message, after `after_receive` (`#[on_message]`).
    Message,
    /// Rewrites or drops an inbound message (`#[after_receive]`).
    AfterReceive,
    /// Rewrites or drops an outbound message (`#[before_send]`).
    BeforeSend,
    /// Something went wrong on a connection (`#[on_error]`).
    Error,
    /// A connection ended, whatever the reason (`#[on_disconnect]`).
    Disconnect,
}

impl HandlerKind {
    /// The attribute's name, e.g. `on_message`.
    pub fn attribute(self) -> &'static str {
        match self {
            HandlerKind::Connect => "on_connect",
            HandlerKind::Message => "on_message",
            HandlerKind::AfterReceive => "after_receive",
            HandlerKind::BeforeSend => "before_send",
            HandlerKind::Error => "on_error",
            HandlerKind::Disconnect => "on_disconnect",
        }
    }
}

impl fmt::Display for HandlerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attribute())
    }
}
