//! A session's failed sends, on their way from its writer to its handling
//! side, which reports them to on_error in order with the other events.
//! Both sides run in the session's one task, joined: the writer yields
//! after it records a failure, so the task's next turn polls the handling
//! side, which then finds it. That is all the waking there is; the handling
//! side's check is one atomic load per look (it looks twice per datagram).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use crate::connection::Connection;
use crate::error::Error;

/// Failed sends waiting to be reported to on_error; beyond that they are
/// only counted and logged.
const KEPT: usize = 16;

#[derive(Debug, Default)]
pub(super) struct FailedSends {
    state: Mutex<State>,
    /// Whether `state` holds an error: what the handling side looks at.
    any: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    errors: VecDeque<io::Error>,
    /// The handling side reports no more: later failures are only logged.
    closed: bool,
}

impl FailedSends {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic elsewhere cannot poison it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `error` for on_error, or, beyond what is kept or once closed,
    /// counts and logs it. `true` when kept: the caller, the writer, then
    /// yields (see the module's comment).
    pub(super) fn record(&self, connection: &Connection, error: io::Error) -> bool {
        let unkept = {
            let mut state = self.lock();
            if state.closed || state.errors.len() >= KEPT {
                Some(error)
            } else {
                state.errors.push_back(error);
                self.any.store(true, Ordering::Release);
                None
            }
        };
        match unkept {
            Some(error) => {
                tracing::warn!(%error, "sending a datagram failed");
                connection.server().counters.count_error(&Error::Io(error));
                false
            }
            None => true,
        }
    }

    /// The oldest failure not yet reported.
    pub(super) fn take(&self) -> Option<io::Error> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.lock();
        let error = state.errors.pop_front();
        if state.errors.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        error
    }

    /// Resolves with the next failure. Registers no waker: the writer,
    /// in the same task, yields after recording one, which polls this again.
    pub(super) async fn next(&self) -> io::Error {
        poll_fn(|_| self.take().map_or(Poll::Pending, Poll::Ready)).await
    }

    /// Keeps no more failures; those kept can still be taken.
    pub(super) fn close(&self) {
        self.lock().closed = true;
    }
}
