//! The only file that touches `inventory`: attribute macros submit a
//! [`Registration`] each; [`registered`] collects them at start-up.

use std::fmt;

use crate::classifier::ClientType;
use crate::handler::{EventContext, HandlerSlot};

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

/// One handler submitted by an attribute macro. Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct Registration {
    /// The event.
    pub kind: HandlerKind,
    /// The client type, or `None` for the default handler.
    pub client_type: Option<fn() -> ClientType>,
    /// `module::function`.
    pub name: &'static str,
    /// The erased call: starts the handler's future in the slot.
    pub call: fn(EventContext, &mut HandlerSlot),
    /// Whether to run it on the blocking pool.
    pub blocking: bool,
}

inventory::collect!(Registration);

/// Every registration linked into this binary, in a stable order.
pub(crate) fn registered() -> Vec<&'static Registration> {
    let mut all: Vec<&'static Registration> = inventory::iter::<Registration>.into_iter().collect();
    // inventory's order depends on link order; sort so logs and errors are reproducible.
    all.sort_by_key(|r| (r.kind, r.name));
    all
}
