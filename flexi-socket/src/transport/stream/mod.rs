//! The stream driver: a task per connection over any byte [`Stream`]
//! (TCP, TLS, Unix, in-memory pipes; a new stream transport is a
//! constructor, not a copy of this).
//!
//! The per-connection task: read → decode → classify once → after_receive →
//! route → handler, one event at a time; beside it, in the same task, a
//! writer fed by the bounded outbound queue that writes all ready frames in
//! one write. Closing is "stop reading, handle what was read, flush, FIN,
//! drain the peer's leftovers, close", so neither side loses what was accepted.
//!
//! Every wake-up of every connection runs through here, so it stays small:
//! the waits are hand-written polls (readiness, the close signal, the
//! outbound queue) with no timer (the endpoint's deadline sweeper closes
//! connections that time out), and the state of an activity is boxed only
//! while it runs. A server's quiet TCP or Unix connection holds no task at
//! all: its task ends and the connection rests until its socket, its queue
//! or its close wakes it ([`rest`]); a busy one keeps its task.

mod driver;
mod io;
mod reading;
mod rest;
mod tcp;
mod writing;

pub(crate) use io::Stream;
pub(crate) use tcp::shared as shared_tcp;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::task::TaskTracker;

use crate::connection::Connection;
use crate::connection::outbound::OutboundReceiver;
use crate::events::finished;
use driver::Driver;
use rest::Rests;

/// Serves one connection until it ends; fires on_disconnect exactly once,
/// even when the shutdown deadline cuts the connection short. `held` (a
/// place under the connection limits, say) is dropped at the very end. The
/// future runs the connection from start to end (a client's, or a TLS
/// connection's after its handshake, awaited inside another future).
pub(crate) fn run(
    stream: impl Stream,
    connection: Connection,
    outbound: OutboundReceiver,
    held: impl Send + Unpin,
) -> impl Future<Output = ()> + Send {
    Task {
        driver: Some(Driver::new(stream, connection, outbound)),
        lifelong: Stays(held),
    }
}

/// As [`run`], for a task of its own: while the connection is quiet, the
/// task may end and the connection rest, to come back in a new task (in
/// `span`) when its socket, its queue or its close wakes it (see [`rest`]).
/// `tasks` counts the connection all the while, resting or not.
pub(crate) fn run_resting<S: Stream + 'static, H: Send + Unpin + 'static>(
    stream: S,
    connection: Connection,
    outbound: OutboundReceiver,
    held: H,
    tasks: &TaskTracker,
    span: &tracing::Span,
) -> impl Future<Output = ()> + Send + 'static {
    if S::CAN_REST {
        connection.activity().allow_rest();
    }
    Task {
        driver: Some(Driver::new(stream, connection, outbound)),
        lifelong: Rests::new(held, tasks, span),
    }
}

/// A connection's task: its driver, then the connection's end, in this
/// order: the driver (socket and writer) is dropped, the connection leaves
/// the endpoint's list, and what the task holds for the connection's life
/// goes with the task. So a connection missing from the list has its socket
/// closed, and a place under the limits is free only once the connection
/// that held it is no longer listed (the list never shows more connections
/// than the limits allow).
struct Task<S, L> {
    driver: Option<Driver<S>>,
    /// What the connection holds as long as it lives: [`Stays`] or
    /// [`Rests`], which a resting connection takes along.
    lifelong: L,
}

/// What a connection's task holds as long as the connection lives, and
/// whether (and how) the connection rests (see [`rest`]).
trait Lifelong<S>: Sized {
    /// Whether the connection may rest: a task that never rests does not
    /// ask its driver.
    const MAY_REST: bool;

    /// Rests the connection whose driver is in `driver`, taking it and what
    /// `self` holds along (its task then ends: `true`), unless something is
    /// ready meanwhile.
    fn rest(&mut self, driver: &mut Option<Driver<S>>) -> bool;
}

/// What the task of a connection that never rests holds till the
/// connection ends: it runs inside another future (a client's, a TLS
/// handshake's), which goes on once it ends.
struct Stays<H>(H);

impl<S, H> Lifelong<S> for Stays<H> {
    const MAY_REST: bool = false;

    fn rest(&mut self, _: &mut Option<Driver<S>>) -> bool {
        false
    }
}

impl<S: Stream, L: Lifelong<S> + Unpin> Future for Task<S, L> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // Resting is tried once a poll: what it finds ready (and the driver
        // then handles) is seldom ready again at once.
        let mut may_rest = L::MAY_REST;
        loop {
            let Some(driver) = this.driver.as_mut() else {
                return Poll::Ready(());
            };
            let Poll::Ready(ended) = Pin::new(&mut *driver).poll(cx) else {
                if may_rest && driver.may_rest() {
                    if this.lifelong.rest(&mut this.driver) {
                        return Poll::Ready(());
                    }
                    // Something came meanwhile. The driver's next poll
                    // handles it, and registers this task's waker again
                    // wherever `Driver::settle` left the resting one.
                    may_rest = false;
                    continue;
                }
                // The driver registered this task's waker.
                return Poll::Pending;
            };
            this.driver = None;
            finished(&ended.connection, ended.aborted);
            // What the connection held for its life (a place under the
            // limits) is dropped with the task, right after this returns.
            return Poll::Ready(());
        }
    }
}

#[cfg(test)]
mod tests;
