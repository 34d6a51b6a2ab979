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
pub(crate) fn invoke<'a>(
    connection: &Connection,
    handler: &'a Handler,
    context: EventContext,
    slot: &'a mut HandlerSlot,
) -> Invocation<'a> {
    let stopwatch = Stopwatch::start(&handler.duration);
    if runs_in_slot(connection, handler) {
        let call = start(handler, context, slot);
        return Invocation {
            handler,
            call,
            stopwatch,
        };
    }
    let call = if handler.blocking {
        Call::Elsewhere(Box::pin(run_blocking(handler, context)))
    } else {
        start(handler, context, slot)
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
/// it is given ([`Invocation::lives_in_slot`]): not blocking, no timeout.
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
    /// Whether all of the call's state is in its slot (and this value can
    /// be dropped and [`resume`](Self::resume)d), rather than in a future
    /// of its own.
    pub(crate) fn lives_in_slot(&self) -> bool {
        matches!(self.call, Call::Here(_))
    }

    /// When the call started: what a caller that drops this invocation
    /// keeps for [`resume`](Self::resume).
    pub(crate) fn stopwatch(&self) -> Stopwatch {
        self.stopwatch
    }

    /// Goes on with the call of `handler` whose future is in `slot`, after
    /// the invocation that started it (at `stopwatch`) was dropped while it
    /// [`lives_in_slot`](Self::lives_in_slot).
    pub(crate) fn resume(
        handler: &'a Handler,
        slot: &'a mut HandlerSlot,
        stopwatch: Stopwatch,
    ) -> Self {
        Self {
            handler,
            call: Call::Here(slot),
            stopwatch,
        }
    }
}

enum Call<'a> {
    /// The future in this slot, polled on this task, panics caught at every poll.
    Here(&'a mut HandlerSlot),
    /// On the blocking pool, or under the handler timeout.
    Elsewhere(BoxFuture<'a, Result<HandlerOutput, Error>>),
    /// Starting the handler panicked; taken once polled (boxed: rare, and
    /// this type is in every message's future).
    Failed(Option<Box<Error>>),
}

/// Starts the handler's future in `slot`. That runs user code too: a
/// hand-written closure may panic before returning its future.
fn start<'a>(handler: &Handler, context: EventContext, slot: &'a mut HandlerSlot) -> Call<'a> {
    match call_caught(handler, context, slot) {
        Ok(()) => Call::Here(slot),
        Err(error) => Call::Failed(Some(Box::new(error))),
    }
}

/// Puts the handler's future in `slot`, its panic caught.
fn call_caught(
    handler: &Handler,
    context: EventContext,
    slot: &mut HandlerSlot,
) -> Result<(), Error> {
    catch_unwind(AssertUnwindSafe(|| handler.call(context, slot)))
        .map_err(|payload| panicked(handler, &*payload))
}

impl Call<'_> {
    fn poll_call(
        &mut self,
        handler: &Handler,
        cx: &mut Context<'_>,
    ) -> Poll<Result<HandlerOutput, Error>> {
        match self {
            Call::Here(slot) => match catch_unwind(AssertUnwindSafe(|| {
                slot.future()
                    .expect("a started handler has a future")
                    .poll(cx)
            })) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
                Err(payload) => Poll::Ready(Err(panicked(handler, &*payload))),
            },
            Call::Elsewhere(future) => future.as_mut().poll(cx),
            Call::Failed(error) => Poll::Ready(Err(*error
                .take()
                .expect("a handler call is not polled after it completed"))),
        }
    }
}

impl Future for Invocation<'_> {
    type Output = Result<Option<Message>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let handler = this.handler;
        let outcome = ready!(this.call.poll_call(handler, cx));
        this.stopwatch.stop(&handler.duration);
        Poll::Ready(outcome?.map_err(|error| match error {
            HandlerError::Argument(error) => error,
            HandlerError::Failed(message) => Error::Handler {
                handler: handler.name,
                message,
            },
        }))
    }
}

/// Runs `call` for at most `after` (the handler timeout).
async fn within(
    after: std::time::Duration,
    handler: &Handler,
    mut call: Call<'_>,
) -> Result<HandlerOutput, Error> {
    let run = std::future::poll_fn(|cx| call.poll_call(handler, cx));
    tokio::time::timeout(after, run)
        .await
        .map_err(|_elapsed| Error::HandlerTimeout {
            handler: handler.name,
            after,
        })?
}

fn panicked(handler: &Handler, payload: &(dyn std::any::Any + Send)) -> Error {
    Error::HandlerPanicked {
        handler: handler.name,
        message: panic_message(payload),
    }
}

/// Runs a handler marked `blocking` on tokio's blocking pool, so a handler
/// that blocks its thread stalls no other connection.
async fn run_blocking(handler: &Handler, context: EventContext) -> Result<HandlerOutput, Error> {
    let mut slot = HandlerSlot::default();
    call_caught(handler, context, &mut slot)?;
    let future = slot.take().expect("a started handler has a future");
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(future))
        .await
        .map_err(|join_error| match join_error.try_into_panic() {
            Ok(payload) => panicked(handler, &*payload),
            Err(join_error) => Error::Handler {
                handler: handler.name,
                message: join_error.to_string(),
            },
        })
}
