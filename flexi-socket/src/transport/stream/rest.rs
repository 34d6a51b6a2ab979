//! Resting: the task of a quiet connection ends, and the connection waits
//! without one. What it keeps ([`Rested`]: its stream and queue, and its
//! decoder only where a new one would differ; and [`Rests`]: its place
//! under the limits, its count in the server's tasks, its span) sits
//! behind the waker it leaves with its socket's readiness, its outbound
//! queue and its close signal; the first of them to fire spawns its task
//! again, which reads, writes or closes as if it had only waited.
//!
//! So an idle connection holds no task, no future, no buffer and no timer
//! (the endpoint's sweeper keeps its deadlines): its memory is the
//! connection's shared state, the socket's, and this. A connection rests
//! when everything waits after its first read, or after a read that came
//! one to two seconds or more after the one before (`Activity::read`, on
//! the deadline clock); a busy peer's connection keeps its task, as coming
//! back costs a task's spawn, until the deadline sweeper finds the peer
//! quiet (or silent since it connected) and wakes the task to rest.

use std::mem;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Instrument;

use super::driver::{Driver, Rested};
use super::io::Stream;
use super::{Lifelong, Task};
use crate::sync;

/// What the task of a connection that may rest holds as long as the
/// connection lives, and takes along when it rests (`None` in the task that
/// just rested).
pub(super) struct Rests<H>(Option<Held<H>>);

struct Held<H> {
    /// The connection's count in its server's tasks, resting or not.
    _count: TaskTrackerToken,
    /// What it holds till it ends (its place under the limits).
    _held: H,
    /// The span its tasks run in, when enabled.
    span: Option<Box<tracing::Span>>,
}

impl<H> Rests<H> {
    pub(super) fn new(held: H, tasks: &TaskTracker, span: &tracing::Span) -> Self {
        Self(Some(Held {
            _count: tasks.token(),
            _held: held,
            span: (!span.is_disabled()).then(|| Box::new(span.clone())),
        }))
    }
}

impl<S: Stream + 'static, H: Send + Unpin + 'static> Lifelong<S> for Rests<H> {
    const MAY_REST: bool = S::CAN_REST;

    /// Rests the connection if nothing is ready meanwhile: its task then
    /// ends (`true`). Otherwise (`false`) the driver goes on, and its next
    /// poll puts its task's waker back where this left the resting one.
    // Kept out of the task's poll, which runs at every message: resting is
    // the exception.
    #[cold]
    #[inline(never)]
    fn rest(&mut self, driver: &mut Option<Driver<S>>) -> bool {
        let Some(waiting) = driver.as_mut() else {
            return false;
        };
        let resting = Arc::new(Resting {
            state: Mutex::new(State::Settling),
        });
        let waker = Waker::from(Arc::clone(&resting));
        if !waiting.settle(&mut Context::from_waker(&waker)) {
            return false;
        }
        let (Some(driver), Some(held)) = (driver.take(), self.0.take()) else {
            unreachable!("a task rests once, with its driver");
        };
        let driver = driver.into_rest();
        // In this task, on the runtime: known to be there when it wakes.
        driver
            .connection()
            .endpoint()
            .runtime
            .get_or_init(Handle::current);
        resting.fall_asleep(Asleep { driver, held });
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
    driver: Rested<S>,
    held: Held<H>,
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
            .driver
            .connection()
            .endpoint()
            .runtime
            .get()
            .expect("set before the connection rested")
            .clone();
        let span = self.held.span.as_deref().cloned();
        let task = Task {
            driver: Some(Driver::resumed(self.driver)),
            lifelong: Rests(Some(self.held)),
        };
        // A runtime shutting down drops the task unpolled, and with it the
        // connection's socket.
        match span {
            None => drop(runtime.spawn(task)),
            Some(span) => drop(runtime.spawn(task.instrument(span))),
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
    /// the `Arc`'s two counts): 104 bytes, a 112-byte block with glibc's
    /// header and rounding (a 160-byte block while it kept every decoder,
    /// 176 while each kept its runtime's handle). Small enough for most of the free
    /// pieces (32 to 144 bytes) that tokio's 128-aligned blocks leave in
    /// glibc's heap, which these blocks then fill (`idle_bytes
    /// --malloc-info`; BENCHMARKS.md, fourteenth session).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_resting_connection_stays_small() {
        let size = size_of::<Resting<SharedTcpStream, Place>>() + 16;
        eprintln!("resting connection {size} bytes");
        assert!(size <= 104, "a resting connection grew to {size} bytes");
    }
}
