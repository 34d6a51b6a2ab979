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
use std::task::{Context, Poll, ready};

use tokio_util::task::TaskTracker;

use crate::connection::Connection;
use crate::connection::outbound::OutboundReceiver;
use crate::events::finished;
use driver::{Driver, Stop};
use rest::Comeback;

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
    Task::<_, _, Stays> {
        driver: Some(Driver::new(stream, connection, outbound)),
        _held: held,
        comeback: None,
    }
}

/// As [`run`], for a task of its own: while the connection is quiet, the
/// task may end and the connection rest, to come back in a task of its own
/// when its socket, its queue or its close wakes it (see [`rest`]). `tasks`
/// counts the connection all the while, resting or not.
pub(crate) fn run_resting<S: Stream + 'static, H: Send + Unpin + 'static>(
    stream: S,
    connection: Connection,
    outbound: OutboundReceiver,
    held: H,
    tasks: &TaskTracker,
) -> impl Future<Output = ()> + Send + 'static {
    Task {
        driver: Some(Driver::new(stream, connection, outbound)),
        _held: (),
        comeback: Some(Comeback::new(tasks, held)),
    }
}

/// A connection's task: its driver, then the connection's end, in this
/// order: the driver (socket and writer) is dropped, the connection leaves
/// the endpoint's list, and `held` goes with the task. So a connection missing
/// from the list has its socket closed, and a place under the limits is
/// free only once the connection that held it is no longer listed (the
/// list never shows more connections than the limits allow).
struct Task<S, H, C> {
    driver: Option<Driver<S>>,
    /// Dropped with the task.
    _held: H,
    /// What brings the connection back once it rested, taken along then
    /// ([`Comeback`], which holds what the task would); `None` (and
    /// [`Stays`]): the task cannot end before the connection does.
    comeback: Option<C>,
}

/// How a connection's task rests (see [`rest`]).
trait Rests<S>: Sized {
    /// Rests the connection of `task` (its task ends) unless something is
    /// ready meanwhile.
    fn rest<H>(task: &mut Task<S, H, Self>) -> bool;
}

/// The task of a connection that never rests: it runs inside another
/// future, which goes on once it ends.
enum Stays {}

impl<S> Rests<S> for Stays {
    fn rest<H>(_: &mut Task<S, H, Self>) -> bool {
        false
    }
}

impl<S: Stream, H: Unpin, C: Rests<S> + Unpin> Future for Task<S, H, C> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // Resting is tried once a poll: what it finds ready (and the driver
        // then handles) is seldom ready again at once.
        let mut may_rest = this.comeback.is_some();
        loop {
            let Some(driver) = this.driver.as_mut() else {
                return Poll::Ready(());
            };
            match ready!(Pin::new(driver).poll(cx)) {
                Stop::Ended(ended) => {
                    this.driver = None;
                    finished(&ended.connection, ended.aborted);
                    // `held` is dropped with the task, right after this returns.
                    return Poll::Ready(());
                }
                Stop::Quiet if may_rest => {
                    if C::rest(this) {
                        return Poll::Ready(());
                    }
                    may_rest = false;
                }
                // The driver registered this task's waker.
                Stop::Quiet => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests;
