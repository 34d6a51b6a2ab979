//! Handler scopes: which attribute-registered handlers a server or client
//! runs. Handlers without a `scope` serve every server and client that
//! names none, today's form for a program with one of them; a program with
//! a server and a client (a gateway, a test) gives each its own scope, or
//! the client would run the server's handlers on its connection too.

use std::sync::atomic::{AtomicU8, Ordering};

use super::Router;
use super::registry;
use crate::connection::Side;
use crate::error::Error;

/// Which sides run the handlers without a scope, process-wide.
static UNSCOPED_USERS: AtomicU8 = AtomicU8::new(0);
const SERVER: u8 = 1;
const CLIENT: u8 = 2;

/// The attribute handlers of `scope` for a `side`: an error when the scope
/// names no handlers (a typo, or handlers in another crate not linked), or
/// when a server names no scope and every handler has one. The first time a
/// server and a client both run the handlers without a scope, says so: each
/// then runs the other's handlers too.
pub(crate) fn attribute_router(scope: Option<&str>, side: Side) -> Result<Router, Error> {
    let router = match scope {
        Some(scope) => Router::registered_in(scope),
        None => Router::registered(),
    };
    if router.is_empty() {
        let known = registry::scopes();
        // A client may run no handlers at all (requests only); a server
        // that names no scope while every handler has one was meant to.
        if scope.is_some() || (side == Side::Server && !known.is_empty()) {
            return Err(Error::NoHandlersInScope {
                scope: scope.map(str::to_owned),
                known: known.into_iter().map(str::to_owned).collect(),
            });
        }
        return Ok(router);
    }
    if scope.is_none() {
        let bit = match side {
            Side::Server => SERVER,
            Side::Client => CLIENT,
        };
        let before = UNSCOPED_USERS.fetch_or(bit, Ordering::Relaxed);
        if before != SERVER | CLIENT && before | bit == SERVER | CLIENT {
            tracing::warn!(
                "a server and a client in this process both run the attribute handlers without a \
                 scope, so each runs the other's handlers on its connections; give the client's \
                 handlers their own scope (`#[on_message(scope = \"uplink\")]` and \
                 `.handler_scope(\"uplink\")`), or build one of them with `.router(..)`"
            );
        }
    }
    Ok(router)
}
