//! Reporting a connection's errors: the endpoint's error counters, tracing,
//! and the connection's `on_error` handler. Every error of a connection,
//! whichever layer finds it, is told here.

use super::Connection;
use crate::error::Error;
use crate::handler::{BoxFuture, EventContext, HandlerSlot, invoke};

/// Tells tracing, the server's error counters and the connection's `on_error`
/// handler about `error`.
///
/// Boxed: errors are rare, and an inline future would make every caller's
/// future (the per-message ones among them) as large as this one.
pub(crate) fn report(connection: &Connection, error: Error) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        connection.endpoint().counters.count_error(&error);
        tracing::warn!(
            connection = connection.id(),
            peer = %connection.peer_addr(),
            client_type = connection.client_type().map(|t| t.as_str()),
            %error,
            "connection error"
        );
        let Some(on_error) = connection.routes().on_error.clone() else {
            return;
        };
        let context = EventContext::new(connection.clone()).with_error(error);
        let mut slot = HandlerSlot::default();
        if let Err(failure) = invoke(connection, &on_error, context, &mut slot).await {
            tracing::error!(connection = connection.id(), error = %failure, "on_error handler failed");
        }
    })
}
