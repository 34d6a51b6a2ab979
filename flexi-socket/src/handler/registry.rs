//! The only file that touches `inventory`: attribute macros submit a
//! [`Registration`] each; [`registered`] collects them at start-up.

use std::task::{Context, Poll};

use crate::client_type::ClientType;
use crate::handler::{EventContext, HandlerOutput, HandlerSlot};
use crate::handler_kind::HandlerKind;

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
    /// The erased call: starts the handler's future in the slot and polls it once.
    pub call: fn(&mut EventContext, &mut HandlerSlot, &mut Context<'_>) -> Poll<HandlerOutput>,
    /// Whether to run it on the blocking pool.
    pub blocking: bool,
    /// The handler scope it belongs to (`scope = "..."`), or `None`: the
    /// servers and clients that name no scope.
    pub scope: Option<&'static str>,
}

inventory::collect!(Registration);

/// Every registration linked into this binary, in a stable order.
pub(crate) fn registered() -> Vec<&'static Registration> {
    let mut all: Vec<&'static Registration> = inventory::iter::<Registration>.into_iter().collect();
    // inventory's order depends on link order; sort so logs and errors are reproducible.
    all.sort_by_key(|r| (r.kind, r.name));
    all
}

/// The scopes attribute handlers name, sorted, each once.
pub(crate) fn scopes() -> Vec<&'static str> {
    let mut scopes: Vec<&'static str> = registered().iter().filter_map(|r| r.scope).collect();
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}
