//! Running one handler: panics caught, failures named, errors reported.

use std::future::poll_fn;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;

use crate::connection::Connection;
use crate::error::Error;
use crate::handler::{EventContext, Handler, HandlerError, panic_message};
use crate::message::Message;

/// Runs `handler`, turning its failure or panic into an [`Error`] that names it.
pub(crate) async fn invoke(
    handler: &Handler,
    context: EventContext,
) -> Result<Option<Message>, Error> {
    let panicked = |payload: Box<dyn std::any::Any + Send>| Error::HandlerPanicked {
        handler: handler.name,
        message: panic_message(&*payload),
    };
    // Building the future runs user code too (argument extraction is inside it,
    // but a hand-written closure may panic before returning its future).
    let mut future = catch_unwind(AssertUnwindSafe(|| handler.call(context))).map_err(panicked)?;
    let outcome = poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        },
    )
    .await
    .map_err(panicked)?;
    outcome.map_err(|error| match error {
        HandlerError::Argument(error) => error,
        HandlerError::Failed(message) => Error::Handler {
            handler: handler.name,
            message,
        },
    })
}

/// Tells tracing and the connection's `on_error` handler about `error`.
pub(crate) async fn report(connection: &Connection, error: Error) {
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
    if let Err(failure) = invoke(&on_error, context).await {
        tracing::error!(connection = connection.id(), error = %failure, "on_error handler failed");
    }
}
