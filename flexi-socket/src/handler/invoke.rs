//! Running one handler: panics caught, failures named, time bounded,
//! blocking handlers kept off the async workers; errors reported.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::{EventContext, Handler, HandlerError, HandlerOutput, HandlerSlot};
use crate::connection::Connection;
use crate::error::{Error, panic_message};
use crate::future::BoxFuture;
use crate::message::Message;
use crate::metric::Stopwatch;

/// Runs `handler` for `connection`, turning its failure, panic or timeout
/// into an [`Error`] that names it. The handler's future lives in `slot`,
/// which a caller that calls handlers often keeps from one call to the next.
///
/// A plain function returning a small hand-written future, not an `async
/// fn`: it runs for every message, and every future that awaits it embeds it.
/// Always inlined: the invocation is then built in its caller's place.
#[inline(always)]
pub(crate) fn invoke<'a>(
    connection: &Connection,
    handler: &'a Handler,
    context: EventContext,
    slot: &'a mut HandlerSlot,
) -> Invocation<'a> {
    let stopwatch = Stopwatch::start(&handler.duration);
    // Nothing runs yet: the first poll starts the handler.
    if runs_in_slot(connection, handler) {
        return Invocation {
            handler,
            call: Call::starting(slot, context),
            stopwatch,
        };
    }
    let call = if handler.blocking {
        Call::Elsewhere(Box::pin(run_blocking(handler, context)))
    } else {
        Call::starting(slot, context)
    };
    let call = match connection.endpoint().limits.handler_timeout {
        Some(after) => Call::Elsewhere(Box::pin(within(after, handler, call))),
        None => call,
    };
    Invocation {
        handler,
        call,
        stopwatch,
    }
}

/// Whether [`invoke`] keeps a call of `handler` on `connection` in the slot
/// it is given, so that [`start_in_slot`] may start it: not blocking, no
/// timeout.
pub(crate) fn runs_in_slot(connection: &Connection, handler: &Handler) -> bool {
    !handler.blocking && connection.endpoint().limits.handler_timeout.is_none()
}

/// A handler call in progress; see [`invoke`].
pub(crate) struct Invocation<'a> {
    handler: &'a Handler,
    call: Call<'a>,
    /// Since the call started, for the handler's duration histogram.
    stopwatch: Stopwatch,
}

impl<'a> Invocation<'a> {
    /// Goes on with the call of `handler` whose future is in `slot`, which
    /// [`start_in_slot`] started (at `stopwatch`) and which waited.
    pub(crate) fn resume(
        handler: &'a Handler,
        slot: &'a mut HandlerSlot,
        stopwatch: Stopwatch,
    ) -> Self {
        Self {
            handler,
            call: Call::Here { slot, start: None },
            stopwatch,
        }
    }
}

enum Call<'a> {
    /// The future in this slot, polled on this task, panics caught at every
    /// poll; `start` holds the event until the first poll starts it.
    Here {
        slot: &'a mut HandlerSlot,
        start: Option<EventContext>,
    },
    /// On the blocking pool, or under the handler timeout.
    Elsewhere(BoxFuture<'a, Result<HandlerOutput, Error>>),
}

impl<'a> Call<'a> {
    fn starting(slot: &'a mut HandlerSlot, context: EventContext) -> Self {
        Call::Here {
            slot,
            start: Some(context),
        }
    }

    /// The call will not be polled again: a future in its slot is dropped
    /// now, so a slot only ever gives a finished future's allocation to
    /// its thread (see [`HandlerSlot::release`]).
    fn abandon(&mut self) {
        if let Call::Here { slot, .. } = self {
            slot.clear();
        }
    }

    // Always inlined, like `Invocation::poll`: a delivery's poll then
    // reaches the handler's erased call through `catch_unwind` alone.
    #[inline(always)]
    fn poll_call(
        &mut self,
        handler: &Handler,
        cx: &mut Context<'_>,
    ) -> Poll<Result<HandlerOutput, Error>> {
        match self {
            Call::Here { slot, start } => match start.take() {
                Some(context) => start_call(handler, context, slot, cx),
                None => caught(handler, catch_unwind(AssertUnwindSafe(|| slot.poll(cx)))),
            },
            Call::Elsewhere(future) => future.as_mut().poll(cx),
        }
    }
}

/// Starts the call of `handler` for `context` in `slot` and polls it once.
/// Starting runs user code too (a hand-written closure may panic before
/// returning its future): one guard covers the start and the first poll,
/// so a handler that finishes at once costs one erased call.
#[inline(always)]
fn start_call(
    handler: &Handler,
    mut context: EventContext,
    slot: &mut HandlerSlot,
    cx: &mut Context<'_>,
) -> Poll<Result<HandlerOutput, Error>> {
    let polled = catch_unwind(AssertUnwindSafe(|| handler.call(&mut context, slot, cx)));
    context.release();
    caught(handler, polled)
}

/// A poll of `handler`'s future, its panic (if it panicked) named.
#[inline(always)]
fn caught(
    handler: &Handler,
    polled: std::thread::Result<Poll<HandlerOutput>>,
) -> Poll<Result<HandlerOutput, Error>> {
    match polled {
        Ok(Poll::Pending) => Poll::Pending,
        // What most handlers end with, in an arm of its own: written as
        // tags, not the output moved whole (as in `SendFuture::poll`).
        Ok(Poll::Ready(Ok(None))) => Poll::Ready(Ok(Ok(None))),
        Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
        Err(payload) => Poll::Ready(Err(panicked(handler, &*payload))),
    }
}

/// What a finished call of `handler` gives its caller: the handler's
/// message, or its failure as an [`Error`] that names it.
#[inline(always)]
fn finished(
    handler: &Handler,
    outcome: Result<HandlerOutput, Error>,
) -> Result<Option<Message>, Error> {
    // The usual end on its own, as in `caught`.
    if let Ok(Ok(None)) = outcome {
        return Ok(None);
    }
    outcome?.map_err(|error| match error {
        HandlerError::Argument(error) => *error,
        HandlerError::Failed(message) => Error::Handler {
            handler: handler.name,
            message,
        },
    })
}

/// What [`start_in_slot`] gives back.
#[must_use = "a call that waits must be resumed"]
pub(crate) enum Started {
    /// The call finished in its first poll with nothing to give: the usual
    /// end, a tag alone, not a result written whole (callgrind).
    Done,
    /// The call finished in its first poll and gave something: a message,
    /// or its failure.
    Gave(Result<Option<Message>, Error>),
    /// The call waits, its future in the slot, since the stopwatch started:
    /// it goes on with [`Invocation::resume`].
    Running(Stopwatch),
}

/// Starts `handler`'s call for `message` on `connection` in `slot` and
/// polls it once, right here: the eager [`invoke`] for a handler that
/// [`runs_in_slot`] on its connection, for a caller that polls the call at
/// once (a read's loop, UDP's receive loop). It builds no [`Invocation`]
/// that holds the event until its first poll: moving the event through
/// that and its caller's future cost about a hundred instructions a
/// message (callgrind, a pipelined echo). The event is made here, where
/// the call borrows it, not moved in.
#[inline(always)]
pub(crate) fn start_in_slot(
    handler: &Handler,
    connection: &Connection,
    message: Message,
    slot: &mut HandlerSlot,
    cx: &mut Context<'_>,
) -> Started {
    let stopwatch = Stopwatch::start(&handler.duration);
    let mut context = EventContext::for_message(connection.clone(), message);
    // The call's output (40 bytes today; usually `Ok(None)`, written as
    // tags) is looked at here, inside the guard, where the call left it,
    // not moved out whole through `catch_unwind`'s result: that move reads
    // the output back in wider pieces than its narrow stores, which the CPU
    // cannot forward to the loads, so they wait for the stores to reach the
    // cache. It was the costliest instruction of a message's way in the
    // time profile (bench/time_profile.sh), which instruction counts miss.
    // The other polls (`start_call`, a waiting handler's) still move it:
    // they are off the way most messages take.
    let mut set_aside = None;
    let first = catch_unwind(AssertUnwindSafe(|| {
        // Written only once the call has returned: a panic leaves it `None`.
        match handler.call(&mut context, slot, cx) {
            Poll::Ready(Ok(None)) => FirstPoll::Done,
            Poll::Pending => FirstPoll::Waits,
            Poll::Ready(output) => {
                set_aside = Some(output);
                FirstPoll::SetAside
            }
        }
    }));
    context.release();
    let started = match first {
        Ok(FirstPoll::Done) => Started::Done,
        Ok(FirstPoll::Waits) => return Started::Running(stopwatch),
        other => Started::Gave(ended_otherwise(handler, other.map(drop), set_aside)),
    };
    stopwatch.stop(&handler.duration);
    started
}

/// How the first poll of a call went, as [`start_in_slot`] reads it.
enum FirstPoll {
    /// It finished with `Ok(None)`.
    Done,
    /// It waits.
    Waits,
    /// It finished with another output, set aside for [`ended_otherwise`].
    SetAside,
}

/// What a call that did not end with `Ok(None)` or wait gives its caller:
/// the output it finished with, `set_aside` (`returned`), or its panic.
/// Out of line: a message or a failure, rare on the way a read's frames
/// take.
#[inline(never)]
#[cold]
fn ended_otherwise(
    handler: &Handler,
    returned: std::thread::Result<()>,
    set_aside: Option<HandlerOutput>,
) -> Result<Option<Message>, Error> {
    match returned {
        Ok(()) => {
            let output = set_aside.expect("a call that finished otherwise set its output aside");
            finished(handler, Ok(output))
        }
        Err(payload) => Err(panicked(handler, &*payload)),
    }
}

impl Future for Invocation<'_> {
    type Output = Result<Option<Message>, Error>;

    // Always inlined, like `poll_call`: into the delivery's poll.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let handler = this.handler;
        let outcome = ready!(this.call.poll_call(handler, cx));
        this.stopwatch.stop(&handler.duration);
        Poll::Ready(finished(handler, outcome))
    }
}

/// Runs `call` for at most `after` (the handler timeout).
async fn within(
    after: std::time::Duration,
    handler: &Handler,
    mut call: Call<'_>,
) -> Result<HandlerOutput, Error> {
    let run = std::future::poll_fn(|cx| call.poll_call(handler, cx));
    let outcome = tokio::time::timeout(after, run).await;
    outcome.map_err(|_elapsed| {
        call.abandon();
        Error::HandlerTimeout {
            handler: handler.name,
            after,
        }
    })?
}

fn panicked(handler: &Handler, payload: &(dyn std::any::Any + Send)) -> Error {
    Error::HandlerPanicked {
        handler: handler.name,
        message: panic_message(payload),
    }
}

/// Runs a handler marked `blocking` on tokio's blocking pool, so a handler
/// that blocks its thread stalls no other connection. Its start runs there
/// too: a hand-written closure may block before returning its future.
async fn run_blocking(handler: &Handler, context: EventContext) -> Result<HandlerOutput, Error> {
    let runtime = tokio::runtime::Handle::current();
    let on_pool = handler.clone();
    tokio::task::spawn_blocking(move || {
        let mut slot = HandlerSlot::default();
        let mut call = Call::starting(&mut slot, context);
        runtime.block_on(std::future::poll_fn(|cx| call.poll_call(&on_pool, cx)))
    })
    .await
    .map_err(|join_error| match join_error.try_into_panic() {
        Ok(payload) => panicked(handler, &*payload),
        Err(join_error) => Error::Handler {
            handler: handler.name,
            message: join_error.to_string(),
        },
    })?
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::oneshot::{self, error::TryRecvError};

    use super::*;
    use crate::connection::Endpoint;
    use crate::sync;

    #[tokio::test(start_paused = true)]
    async fn a_call_cut_at_its_timeout_lets_go_of_its_future_at_once() {
        let (held, dropped) = oneshot::channel::<()>();
        let held = Mutex::new(Some(held));
        let handler = Handler::new("hangs", move |_context, slot, cx| {
            let held = sync::lock(&held).take();
            slot.run(
                async move {
                    let _held = held;
                    std::future::pending::<HandlerOutput>().await
                },
                cx,
            )
        });
        let mut slot = HandlerSlot::default();
        let call = Call::starting(
            &mut slot,
            EventContext::new(Endpoint::connection_for_tests()),
        );
        let outcome = within(Duration::from_secs(1), &handler, call).await;
        assert!(matches!(outcome, Err(Error::HandlerTimeout { .. })));
        // Not kept in the slot, where its thread could be given it as if finished.
        let mut dropped = dropped;
        assert_eq!(dropped.try_recv(), Err(TryRecvError::Closed));
    }
}
