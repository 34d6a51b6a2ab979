//! Resting: the task of a quiet connection ends, and the connection waits
//! without one. What it keeps ([`Rested`]: its stream, decoder and queue;
//! its place under the limits; its count in the server's tasks) sits
//! behind the waker it leaves with its socket's readiness, its outbound
//! queue and its close signal; the first of them to fire spawns its task
//! again, which reads, writes or closes as if it had only waited.
//!
//! So an idle connection holds no task, no future, no buffer and no timer
//! (the endpoint's sweeper keeps its deadlines): its memory is the
//! connection's shared state, the socket's, and this. A connection rests
//! when everything waits after a read that came after a quiet while
//! (`Activity::read`), or before its first: a busy one keeps its task, as
//! coming back costs a task's spawn.

use std::mem;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Instrument;

use super::driver::{Driver, Rested};
use super::io::Stream;
use super::{Rests, Task};
use crate::sync;

/// What a connection's task that may rest holds, and takes along when it
/// does: the connection's count in its server's tasks, and what the task
/// holds till the connection ends (its place under the limits).
pub(super) struct Comeback<H> {
    /// Dropped when the connection ends, like `_held`.
    _count: TaskTrackerToken,
    _held: H,
}

impl<H> Comeback<H> {
    pub(super) fn new(tasks: &TaskTracker, held: H) -> Self {
        Self {
            _count: tasks.token(),
            _held: held,
        }
    }
}

impl<S: Stream + 'static, H: Send + Unpin + 'static> Rests<S> for Comeback<H> {
    /// Rests the connection of `task` if nothing is ready meanwhile: its
    /// task then ends (`true`). Otherwise (`false`) the driver goes on, and
    /// its next poll puts its task's waker back where this left the
    /// resting one.
    fn rest<U>(task: &mut Task<S, U, Self>) -> bool {
        let Some(driver) = task.driver.as_mut() else {
            return false;
        };
        let resting = Arc::new(Resting {
            state: Mutex::new(State::Settling),
        });
        let waker = Waker::from(Arc::clone(&resting));
        if !driver.settle(&mut Context::from_waker(&waker)) {
            return false;
        }
        let (Some(driver), Some(comeback)) = (task.driver.take(), task.comeback.take()) else {
            unreachable!("a task that may rest has its driver and its comeback");
        };
        let span = tracing::Span::current();
        let rested = driver.into_rest();
        // In this task, on the runtime: known to be there when it wakes.
        rested
            .connection()
            .endpoint()
            .runtime
            .get_or_init(Handle::current);
        resting.fall_asleep(Asleep {
            rested,
            comeback,
            span: (!span.is_disabled()).then(|| Box::new(span)),
        });
        true
    }
}

/// A resting connection: its waker.
struct Resting<S, H> {
    state: Mutex<State<S, H>>,
}

enum State<S, H> {
    /// Its task registers the waker, then hands over what the connection
    /// keeps.
    Settling,
    /// Woken before the hand-over: the connection comes back at once.
    WokenEarly,
    Asleep(Asleep<S, H>),
    /// Woken: the connection's task runs again (further wakes are stale).
    Awake,
}

/// What a resting connection keeps.
struct Asleep<S, H> {
    rested: Rested<S>,
    comeback: Comeback<H>,
    /// The connection's span, when enabled.
    span: Option<Box<tracing::Span>>,
}

impl<S: Stream + 'static, H: Send + Unpin + 'static> Resting<S, H> {
    fn fall_asleep(&self, asleep: Asleep<S, H>) {
        let mut state = sync::lock(&self.state);
        if matches!(*state, State::Settling) {
            *state = State::Asleep(asleep);
            return;
        }
        *state = State::Awake;
        drop(state);
        asleep.wake_up();
    }
}

impl<S: Stream + 'static, H: Send + Unpin + 'static> Wake for Resting<S, H> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let asleep = {
            let mut state = sync::lock(&self.state);
            match mem::replace(&mut *state, State::Awake) {
                State::Asleep(asleep) => Some(asleep),
                State::Settling => {
                    *state = State::WokenEarly;
                    None
                }
                State::WokenEarly | State::Awake => None,
            }
        };
        if let Some(asleep) = asleep {
            asleep.wake_up();
        }
    }
}

impl<S: Stream + 'static, H: Send + Unpin + 'static> Asleep<S, H> {
    /// Spawns the connection's task again.
    fn wake_up(self) {
        // Not `Handle::current()`: the waker may fire outside the runtime (a
        // close from another thread).
        let runtime = self
            .rested
            .connection()
            .endpoint()
            .runtime
            .get()
            .expect("set before the connection rested")
            .clone();
        let task = Task {
            driver: Some(Driver::resumed(self.rested)),
            _held: (),
            comeback: Some(self.comeback),
        };
        // A runtime shutting down drops the task unpolled, and with it the
        // connection's socket.
        match self.span {
            None => drop(runtime.spawn(task)),
            Some(span) => drop(runtime.spawn(task.instrument(*span))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::transport::stream::tcp::SharedTcpStream;

    /// What a server's connection holds: its place under the limits, a
    /// pointer and an address (see admission.rs's
    /// `a_place_is_a_pointer_and_an_address`).
    type Place = (Arc<()>, Ipv6Addr);

    /// A resting connection holds this block in place of its task (with
    /// the `Arc`'s two counts): 144 bytes, a 160-byte block with glibc's
    /// header and rounding (176 while each kept its runtime's handle).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_resting_connection_stays_small() {
        let size = size_of::<Resting<SharedTcpStream, Place>>() + 16;
        eprintln!("resting connection {size} bytes");
        assert!(size <= 144, "a resting connection grew to {size} bytes");
    }
}
