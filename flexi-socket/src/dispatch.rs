//! Running one handler: panics caught, failures named, time bounded,
//! blocking handlers kept off the async workers; errors reported.

use std::future::poll_fn;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;

use crate::connection::Connection;
use crate::error::Error;
use crate::handler::{EventContext, Handler, HandlerError, HandlerOutput, panic_message};
use crate::message::Message;

/// Runs `handler` for `connection`, turning its failure, panic or timeout
/// into an [`Error`] that names it.
pub(crate) async fn invoke(
    connection: &Connection,
    handler: &Handler,
    context: EventContext,
) -> Result<Option<Message>, Error> {
    let run = async {
        if handler.blocking {
            run_blocking(handler, context).await
        } else {
            run_here(handler, context).await
        }
    };
    let outcome = match connection.server().limits.handler_timeout {
        // Boxed: the timer would otherwise sit in every handler call's future.
        Some(after) => Box::pin(tokio::time::timeout(after, run))
            .await
            .map_err(|_elapsed| Error::HandlerTimeout {
                handler: handler.name,
                after,
            })??,
        None => run.await?,
    };
    outcome.map_err(|error| match error {
        HandlerError::Argument(error) => error,
        HandlerError::Failed(message) => Error::Handler {
            handler: handler.name,
            message,
        },
    })
}

fn panicked(handler: &Handler, payload: &(dyn std::any::Any + Send)) -> Error {
    Error::HandlerPanicked {
        handler: handler.name,
        message: panic_message(payload),
    }
}

/// Polls the handler on this task, catching panics at every poll.
async fn run_here(handler: &Handler, context: EventContext) -> Result<HandlerOutput, Error> {
    // Building the future runs user code too: a hand-written closure may
    // panic before returning its future.
    let mut future = catch_unwind(AssertUnwindSafe(|| handler.call(context)))
        .map_err(|payload| panicked(handler, &*payload))?;
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(panicked(handler, &*payload))),
        },
    )
    .await
}

/// Runs a handler marked `blocking` on tokio's blocking pool, so a handler
/// that blocks its thread stalls no other connection.
async fn run_blocking(handler: &Handler, context: EventContext) -> Result<HandlerOutput, Error> {
    let future = handler.call(context);
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

/// Tells tracing, the server's error counters and the connection's `on_error`
/// handler about `error`.
pub(crate) async fn report(connection: &Connection, error: Error) {
    connection.server().counters.count_error(&error);
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
    if let Err(failure) = invoke(connection, &on_error, context).await {
        tracing::error!(connection = connection.id(), error = %failure, "on_error handler failed");
    }
}
