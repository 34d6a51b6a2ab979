//! The stream driver: one task per connection over any byte [`Stream`]
//! (TCP, TLS, Unix, in-memory pipes; a new stream transport is a
//! constructor, not a copy of this).
//!
//! The per-connection task: read → decode → classify once → after_receive →
//! route → handler, one event at a time; beside it, in the same task, a
//! writer fed by the bounded outbound queue that writes all ready frames in
//! one write. Closing is "stop reading, handle what was read, flush, FIN,
//! drain the peer's leftovers, close", so neither side loses what was accepted.
//!
//! Every wake-up of every connection runs through here, and every idle
//! connection holds this task's state, so both stay small: the waits are
//! hand-written polls (readiness, the close signal, the outbound queue)
//! with no timer (the endpoint's deadline sweeper closes connections that
//! time out), and the state of an activity is boxed only while it runs.

mod driver;
mod io;
mod reading;
mod tcp;
mod writing;

pub(crate) use io::Stream;
pub(crate) use tcp::shared as shared_tcp;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::connection::Connection;
use crate::connection::outbound::OutboundReceiver;
use crate::events::finished;

/// Serves one accepted connection until it ends; fires on_disconnect exactly
/// once, even when the shutdown deadline cuts the connection short. `held`
/// (a place under the connection limits, say) is dropped at the very end.
pub(crate) fn run(
    stream: impl Stream,
    connection: Connection,
    outbound: OutboundReceiver,
    held: impl Send + Unpin,
) -> impl Future<Output = ()> + Send {
    Task {
        driver: Some(driver::Driver::new(stream, connection, outbound)),
        _held: held,
    }
}

/// A connection's task: its driver, then the connection's end, in this
/// order: the driver (socket and writer) is dropped, the connection leaves
/// the endpoint's list, and `held` goes with the task. So a connection missing
/// from the list has its socket closed, and a place under the limits is
/// free only once the connection that held it is no longer listed (the
/// list never shows more connections than the limits allow).
struct Task<D, H> {
    driver: Option<D>,
    _held: H,
}

impl<D: Future<Output = driver::Ended> + Unpin, H: Unpin> Future for Task<D, H> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = self.driver.as_mut() else {
            return Poll::Ready(());
        };
        let ended = ready!(Pin::new(driver).poll(cx));
        self.driver = None;
        finished(&ended.connection, ended.aborted);
        // `held` is dropped with the task, right after this returns.
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests;
