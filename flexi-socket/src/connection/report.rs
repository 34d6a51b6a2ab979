//! Reporting a connection's errors: the endpoint's error counters, tracing,
//! and the connection's `on_error` handler. Every error of a connection,
//! whichever layer finds it, is told here. One that nobody would see (no
//! `on_error` handler, no tracing subscriber) is printed to stderr anyway,
//! the first of each kind, with a hint: failures are never silent. A flood
//! of one kind is logged within a budget ([`log_budget`](super::log_budget)).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Connection;
use crate::error::Error;
use crate::future::BoxFuture;
use crate::handler::{EventContext, HandlerSlot, invoke};
use crate::log_rate::LogVerdict;
use crate::stats::{ERROR_KINDS, error_kind};

/// The kinds of error printed to stderr so far, process-wide.
static UNSEEN: Unseen = Unseen::new();

/// Tells tracing, the endpoint's error counters and the connection's `on_error`
/// handler about `error`.
///
/// Boxed: errors are rare, and an inline future would make every caller's
/// future (the per-message ones among them) as large as this one.
pub(crate) fn report(connection: &Connection, error: Error) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let endpoint = connection.endpoint();
        endpoint.counters.count_error(&error);
        let kind = error_kind(&error);
        let first = connection.first_error_of_kind(kind);
        if let LogVerdict::Log { suppressed } = endpoint.log_budget.admit(kind, first) {
            if suppressed > 0 {
                tracing::warn!(
                    suppressed,
                    "{suppressed} more connection errors like the next were not logged in the last second (all are counted in stats)"
                );
            }
            tracing::warn!(
                connection = connection.id(),
                peer = %connection.peer_addr(),
                client_type = connection.client_type().map(|t| t.as_str()),
                %error,
                "connection error"
            );
        }
        let Some(on_error) = connection.routes().on_error.clone() else {
            if !tracing::enabled!(tracing::Level::WARN) {
                UNSEEN.print(&mut std::io::stderr().lock(), connection, &error);
            }
            return;
        };
        let context = EventContext::new(connection.clone()).with_error(error);
        let mut slot = HandlerSlot::default();
        if let Err(failure) = invoke(connection, &on_error, context, &mut slot).await {
            tracing::error!(connection = connection.id(), error = %failure, "on_error handler failed");
        }
    })
}

/// Which kinds of error were printed for want of anyone to tell.
struct Unseen {
    printed: [AtomicBool; ERROR_KINDS],
}

impl Unseen {
    const fn new() -> Self {
        Self {
            printed: [const { AtomicBool::new(false) }; ERROR_KINDS],
        }
    }

    /// Writes `error` to `out` if it is the first of its kind.
    fn print(&self, out: &mut impl Write, connection: &Connection, error: &Error) {
        if self.printed[error_kind(error)].swap(true, Ordering::Relaxed) {
            return;
        }
        let client_type = connection
            .client_type()
            .map_or(String::new(), |t| format!(", client type {t}"));
        let _ = writeln!(
            out,
            "flexi-socket: connection {} (peer {}{client_type}): {error}\n  \
             (no #[on_error] handler and no tracing subscriber: later errors of this kind \
             are not printed; add an #[on_error] handler, or `tracing_subscriber::fmt().init();` \
             at the start of main)",
            connection.id(),
            connection.peer_addr(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_type::ClientType;
    use crate::connection::Endpoint;

    #[test]
    fn the_first_error_of_each_kind_is_printed_with_the_hint() {
        let unseen = Unseen::new();
        let connection = Endpoint::connection_for_tests();
        let mut out = Vec::new();
        let unrouted = || Error::Unrouted {
            client_type: ClientType::DEFAULT,
        };
        unseen.print(&mut out, &connection, &unrouted());
        unseen.print(&mut out, &connection, &unrouted());
        unseen.print(
            &mut out,
            &connection,
            &Error::InvalidUtf8 { valid_up_to: 2 },
        );
        let printed = String::from_utf8(out).unwrap();
        assert_eq!(
            printed.matches("flexi-socket: connection").count(),
            2,
            "{printed}"
        );
        assert!(printed.contains("127.0.0.1:9"), "{printed}");
        assert!(printed.contains("#[on_error]"), "{printed}");
        assert!(
            printed.contains("tracing_subscriber::fmt().init()"),
            "{printed}"
        );
    }
}
